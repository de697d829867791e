package k8s

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// targets are the binary's service targets, one Deployment each.
var targets = []string{"identity", "memory", "embedding", "policy", "webhooks", "usage", "gateway"}

// objects is a render decoded into Kubernetes API types, keyed by kind and name.
type objects struct {
	docs        []Doc
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	accounts    map[string]*corev1.ServiceAccount
	jobs        map[string]*batchv1.Job
	pdbs        map[string]*policyv1.PodDisruptionBudget
	hpas        map[string]*autoscalingv2.HorizontalPodAutoscaler
	ingresses   map[string]*networkingv1.Ingress
	netpols     map[string]*networkingv1.NetworkPolicy
	other       map[string]map[string]any // kind/name of kinds without Go types here
	hookKinds   []string
}

// render renders the chart with values and decodes every object strictly: a
// field the Kubernetes API type does not have fails the test, which catches
// misspelt or misplaced fields in the templates.
func render(t *testing.T, values map[string]any) *objects {
	t.Helper()
	r, err := Render(ChartDir, values)
	require.NoError(t, err)

	o := &objects{
		deployments: map[string]*appsv1.Deployment{},
		services:    map[string]*corev1.Service{},
		configMaps:  map[string]*corev1.ConfigMap{},
		secrets:     map[string]*corev1.Secret{},
		accounts:    map[string]*corev1.ServiceAccount{},
		jobs:        map[string]*batchv1.Job{},
		pdbs:        map[string]*policyv1.PodDisruptionBudget{},
		hpas:        map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		ingresses:   map[string]*networkingv1.Ingress{},
		netpols:     map[string]*networkingv1.NetworkPolicy{},
		other:       map[string]map[string]any{},
	}
	for _, h := range r.Hooks {
		o.hookKinds = append(o.hookKinds, h.Kind+"/"+h.Name)
	}
	seen := map[string]bool{}
	for _, d := range r.All() {
		o.docs = append(o.docs, d)
		var generic map[string]any
		require.NoError(t, yaml.Unmarshal([]byte(d.Content), &generic), "%s: not YAML:\n%s", d.Source, d.Content)
		require.NotEmpty(t, generic["apiVersion"], "%s: no apiVersion", d.Source)
		require.NotEmpty(t, generic["kind"], "%s: no kind", d.Source)
		meta, _ := generic["metadata"].(map[string]any)
		require.NotNil(t, meta, "%s: no metadata", d.Source)
		name, _ := meta["name"].(string)
		require.NotEmpty(t, name, "%s: no metadata.name", d.Source)
		require.LessOrEqual(t, len(name), 63, "%s: name %q is longer than a DNS label", d.Source, name)
		require.Equal(t, d.Name, name)
		require.NotContains(t, meta, "namespace", "%s: the release namespace is set by helm/kubectl, not the templates", d.Source)
		key := d.Kind + "/" + name
		require.False(t, seen[key], "%s rendered twice", key)
		seen[key] = true

		into := func(v any) {
			require.NoError(t, yaml.UnmarshalStrict([]byte(d.Content), v), "%s %s does not match the API type", d.Kind, name)
		}
		switch d.Kind {
		case "Deployment":
			v := &appsv1.Deployment{}
			into(v)
			o.deployments[name] = v
		case "Service":
			v := &corev1.Service{}
			into(v)
			o.services[name] = v
		case "ConfigMap":
			v := &corev1.ConfigMap{}
			into(v)
			o.configMaps[name] = v
		case "Secret":
			v := &corev1.Secret{}
			into(v)
			o.secrets[name] = v
		case "ServiceAccount":
			v := &corev1.ServiceAccount{}
			into(v)
			o.accounts[name] = v
		case "Job":
			v := &batchv1.Job{}
			into(v)
			o.jobs[name] = v
		case "PodDisruptionBudget":
			v := &policyv1.PodDisruptionBudget{}
			into(v)
			o.pdbs[name] = v
		case "HorizontalPodAutoscaler":
			v := &autoscalingv2.HorizontalPodAutoscaler{}
			into(v)
			o.hpas[name] = v
		case "Ingress":
			v := &networkingv1.Ingress{}
			into(v)
			o.ingresses[name] = v
		case "NetworkPolicy":
			v := &networkingv1.NetworkPolicy{}
			into(v)
			o.netpols[name] = v
		default:
			o.other[key] = generic
		}
	}
	return o
}

func container(t *testing.T, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	require.Len(t, d.Spec.Template.Spec.Containers, 1, d.Name)
	return d.Spec.Template.Spec.Containers[0]
}

func envValue(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

func port(t *testing.T, ports []corev1.ContainerPort, name string) int32 {
	t.Helper()
	for _, p := range ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("no %s port", name)
	return 0
}

func TestDefaultsValidateAgainstSchema(t *testing.T) {
	t.Parallel()
	ch, err := loader.Load(ChartDir)
	require.NoError(t, err)
	require.NotNil(t, ch.Schema, "values.schema.json is missing")
	require.Equal(t, "v2", ch.Metadata.APIVersion)
	require.NoError(t, chartutil.ValidateAgainstSchema(ch, ch.Values))
}

func TestDefaultRender(t *testing.T) {
	t.Parallel()
	o := render(t, nil)

	require.Len(t, o.deployments, len(targets))
	require.Len(t, o.services, len(targets))
	require.Len(t, o.pdbs, len(targets), "every target has a PodDisruptionBudget by default")
	require.Empty(t, o.hpas)
	require.Empty(t, o.ingresses)
	require.Empty(t, o.netpols)
	require.Empty(t, o.secrets, "secrets come from an existing Secret by default")
	require.Contains(t, o.accounts, "manushya")
	require.Equal(t, []string{"Job/manushya-migrate"}, o.hookKinds)

	cm := o.configMaps["manushya"]
	require.NotNil(t, cm)
	require.Equal(t, "0.0.0.0:9090", cm.Data["MANUSHYA_GRPC_ADDR"])
	require.Equal(t, "0.0.0.0:8080", cm.Data["MANUSHYA_HTTP_ADDR"])
	require.Equal(t, "nats://nats:4222", cm.Data["MANUSHYA_NATS_URL"])
	require.Equal(t, "20s", cm.Data["MANUSHYA_HTTP_SHUTDOWN_TIMEOUT"])
	for k := range cm.Data {
		require.NotContains(t, []string{"MANUSHYA_DATABASE_URL", "MANUSHYA_DATABASE_MIGRATE_URL", "MANUSHYA_REDIS_URL", "MANUSHYA_AUTH_API_KEY_PEPPER"}, k, "secret in the ConfigMap")
	}

	for _, name := range targets {
		full := "manushya-" + name
		d := o.deployments[full]
		require.NotNil(t, d, "no Deployment for %s", name)
		svc := o.services[full]
		require.NotNil(t, svc, "no Service for %s", name)

		// The Service selects exactly this target's pods.
		require.Equal(t, d.Spec.Selector.MatchLabels, svc.Spec.Selector)
		require.Equal(t, name, svc.Spec.Selector["app.kubernetes.io/component"])
		for k, v := range d.Spec.Selector.MatchLabels {
			require.Equal(t, v, d.Spec.Template.Labels[k], "%s: pod label %s", name, k)
		}

		// Other targets reach it through its Service name (not the gateway: none dials it).
		if name != "gateway" {
			key := "MANUSHYA_SERVICES_" + strings.ToUpper(name) + "_ADDR"
			require.Equal(t, full+":9090", cm.Data[key])
			require.Equal(t, int32(9090), svc.Spec.Ports[0].Port)
		}

		spec := d.Spec.Template.Spec
		c := container(t, d)
		require.Equal(t, []string{"serve", "-target=" + name}, c.Args)
		require.Equal(t, int32(9090), port(t, c.Ports, "grpc"))
		require.Equal(t, int32(8080), port(t, c.Ports, "http"))
		require.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
		require.Equal(t, "http", c.LivenessProbe.HTTPGet.Port.String())
		require.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
		require.Equal(t, "http", c.ReadinessProbe.HTTPGet.Port.String())
		require.NotNil(t, c.StartupProbe)
		require.Equal(t, int32(2), *d.Spec.Replicas)

		// Shutdown: the preStop sleep plus the server's drain fit in the grace period.
		require.NotNil(t, c.Lifecycle.PreStop.Sleep, name)
		require.Positive(t, c.Lifecycle.PreStop.Sleep.Seconds)
		require.Greater(t, *spec.TerminationGracePeriodSeconds, c.Lifecycle.PreStop.Sleep.Seconds+20)

		// Hardening.
		sc := c.SecurityContext
		require.True(t, *sc.RunAsNonRoot)
		require.True(t, *sc.ReadOnlyRootFilesystem)
		require.False(t, *sc.AllowPrivilegeEscalation)
		require.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
		require.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, sc.SeccompProfile.Type)
		require.True(t, *spec.SecurityContext.RunAsNonRoot)
		require.False(t, *spec.AutomountServiceAccountToken)
		require.False(t, *spec.EnableServiceLinks)
		require.Equal(t, "manushya", spec.ServiceAccountName)

		// Metrics.
		ann := d.Spec.Template.Annotations
		require.Equal(t, "true", ann["prometheus.io/scrape"])
		require.Equal(t, "8080", ann["prometheus.io/port"])
		require.Equal(t, "/metrics", ann["prometheus.io/path"])
		require.NotEmpty(t, ann["checksum/config"])

		// Configuration: the ConfigMap, secrets by reference, and its own address empty.
		require.Equal(t, "manushya", c.EnvFrom[0].ConfigMapRef.Name)
		db, ok := envValue(c, "MANUSHYA_DATABASE_URL")
		require.True(t, ok)
		require.Equal(t, "manushya", db.ValueFrom.SecretKeyRef.Name)
		_, ok = envValue(c, "MANUSHYA_AUTH_API_KEY_PEPPER")
		require.True(t, ok)
		_, ok = envValue(c, "MANUSHYA_DATABASE_MIGRATE_URL")
		require.False(t, ok, "%s: only the migration Job gets the owner's URL", name)
		if name != "gateway" {
			own, ok := envValue(c, "MANUSHYA_SERVICES_"+strings.ToUpper(name)+"_ADDR")
			require.True(t, ok)
			require.Empty(t, own.Value)
		}
		otel, _ := envValue(c, "OTEL_SERVICE_NAME")
		require.Equal(t, "manushya-"+name, otel.Value)

		pdb := o.pdbs[full]
		require.NotNil(t, pdb)
		require.Equal(t, d.Spec.Selector.MatchLabels, pdb.Spec.Selector.MatchLabels)
	}

	// Per-target overrides fall back to the defaults.
	emb := container(t, o.deployments["manushya-embedding"]).Resources.Limits[corev1.ResourceMemory]
	id := container(t, o.deployments["manushya-identity"]).Resources.Limits[corev1.ResourceMemory]
	require.Equal(t, "1Gi", emb.String())
	require.Equal(t, "512Mi", id.String())
	conns, _ := envValue(container(t, o.deployments["manushya-memory"]), "MANUSHYA_DATABASE_MAX_CONNS")
	require.Equal(t, "10", conns.Value)

	// The migration hook.
	job := o.jobs["manushya-migrate"]
	require.NotNil(t, job)
	require.Equal(t, "pre-install,pre-upgrade", job.Annotations["helm.sh/hook"])
	require.Equal(t, "before-hook-creation", job.Annotations["helm.sh/hook-delete-policy"])
	require.NotEmpty(t, job.Annotations["helm.sh/hook-weight"])
	require.NotNil(t, job.Spec.BackoffLimit)
	require.Equal(t, corev1.RestartPolicyNever, job.Spec.Template.Spec.RestartPolicy)
	jc := job.Spec.Template.Spec.Containers[0]
	require.Equal(t, []string{"migrate"}, jc.Args)
	mig, ok := envValue(jc, "MANUSHYA_DATABASE_MIGRATE_URL")
	require.True(t, ok)
	require.Equal(t, "manushya", mig.ValueFrom.SecretKeyRef.Name)
	require.Empty(t, jc.EnvFrom, "the ConfigMap does not exist yet when pre-install hooks run")
	require.True(t, *jc.SecurityContext.ReadOnlyRootFilesystem)
	require.Nil(t, job.Spec.TTLSecondsAfterFinished)

	require.Contains(t, o.docs[0].Content, "kind: Job", "hooks come first")
}

func TestOverrides(t *testing.T) {
	t.Parallel()
	pepper := strings.Repeat("p", 48)
	o := render(t, map[string]any{
		"secrets": map[string]any{
			"create": true,
			"values": map[string]any{
				"databaseUrl":        "postgres://app:pw@pg:5432/manushya?sslmode=require",
				"databaseMigrateUrl": "postgres://owner:pw@pg:5432/manushya?sslmode=require",
				"redisUrl":           "redis://:pw@redis:6379/0",
				"apiKeyPepper":       pepper,
			},
		},
		"ingress": map[string]any{
			"enabled":   true,
			"className": "nginx",
			"hosts":     []any{map[string]any{"host": "api.example.test", "paths": []any{map[string]any{"path": "/", "pathType": "Prefix"}}}},
			"tls":       []any{map[string]any{"secretName": "api-tls", "hosts": []any{"api.example.test"}}},
		},
		"networkPolicy": map[string]any{
			"enabled": true,
			"egress": map[string]any{
				"enabled": true,
				"to": []any{map[string]any{
					"to":    []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.0.5.0/24"}}},
					"ports": []any{map[string]any{"port": 5432, "protocol": "TCP"}},
				}},
			},
		},
		"metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true}},
		"otel":    map[string]any{"env": map[string]any{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, "resourceAttributes": "deployment.environment=test"},
		"config":  map[string]any{"listenHost": "::"},
		"targets": map[string]any{
			"memory":   map[string]any{"autoscaling": map[string]any{"enabled": true, "minReplicas": 3, "maxReplicas": 12, "targetCPUUtilizationPercentage": 70, "targetMemoryUtilizationPercentage": 80}},
			"gateway":  map[string]any{"replicas": 3, "podDisruptionBudget": map[string]any{"enabled": true, "minAvailable": 2}},
			"webhooks": map[string]any{"enabled": false},
			"usage":    map[string]any{"enabled": false, "externalAddress": "usage.other-ns.svc:9090"},
			"identity": map[string]any{"databaseMaxConns": 25},
			"policy":   map[string]any{"podDisruptionBudget": map[string]any{"enabled": false}, "nodeSelector": map[string]any{"pool": "policy"}},
		},
		"migrate": map[string]any{"ttlSecondsAfterFinished": 3600},
	})

	require.Len(t, o.deployments, len(targets)-2)
	require.NotContains(t, o.deployments, "manushya-webhooks")
	require.NotContains(t, o.services, "manushya-usage")

	cm := o.configMaps["manushya"]
	require.NotContains(t, cm.Data, "MANUSHYA_SERVICES_WEBHOOKS_ADDR", "a disabled target has no address")
	require.Equal(t, "usage.other-ns.svc:9090", cm.Data["MANUSHYA_SERVICES_USAGE_ADDR"])
	require.Equal(t, "[::]:9090", cm.Data["MANUSHYA_GRPC_ADDR"])
	require.Equal(t, "http://collector:4317", cm.Data["OTEL_EXPORTER_OTLP_ENDPOINT"])

	// Secrets: the release Secret for the pods, a hook Secret for the migration.
	s := o.secrets["manushya"]
	require.NotNil(t, s)
	require.Equal(t, pepper, s.StringData["MANUSHYA_AUTH_API_KEY_PEPPER"])
	require.Contains(t, s.StringData, "MANUSHYA_REDIS_URL")
	hook := o.secrets["manushya-migrate"]
	require.NotNil(t, hook)
	require.Equal(t, "pre-install,pre-upgrade", hook.Annotations["helm.sh/hook"])
	require.Equal(t, []string{"Secret/manushya-migrate", "Job/manushya-migrate"}, o.hookKinds, "the hook Secret is created before the Job")
	require.Equal(t, map[string]string{
		"MANUSHYA_DATABASE_URL":         "postgres://app:pw@pg:5432/manushya?sslmode=require",
		"MANUSHYA_DATABASE_MIGRATE_URL": "postgres://owner:pw@pg:5432/manushya?sslmode=require",
	}, hook.StringData, "the hook Secret holds only the database URLs")
	job := o.jobs["manushya-migrate"]
	mig, _ := envValue(job.Spec.Template.Spec.Containers[0], "MANUSHYA_DATABASE_MIGRATE_URL")
	require.Equal(t, "manushya-migrate", mig.ValueFrom.SecretKeyRef.Name)
	require.Equal(t, int32(3600), *job.Spec.TTLSecondsAfterFinished)
	require.NotEmpty(t, o.deployments["manushya-identity"].Spec.Template.Annotations["checksum/secret"])

	// Per-target settings.
	mem := o.deployments["manushya-memory"]
	require.Nil(t, mem.Spec.Replicas, "replicas are left to the HPA")
	hpa := o.hpas["manushya-memory"]
	require.NotNil(t, hpa)
	require.Equal(t, "manushya-memory", hpa.Spec.ScaleTargetRef.Name)
	require.Equal(t, int32(3), *hpa.Spec.MinReplicas)
	require.Equal(t, int32(12), hpa.Spec.MaxReplicas)
	require.Len(t, hpa.Spec.Metrics, 2)
	require.Len(t, o.hpas, 1)
	require.Equal(t, int32(3), *o.deployments["manushya-gateway"].Spec.Replicas)
	require.Equal(t, int32(2), *o.deployments["manushya-identity"].Spec.Replicas)
	conns, _ := envValue(container(t, o.deployments["manushya-identity"]), "MANUSHYA_DATABASE_MAX_CONNS")
	require.Equal(t, "25", conns.Value)
	require.Equal(t, 2, o.pdbs["manushya-gateway"].Spec.MinAvailable.IntValue())
	require.Nil(t, o.pdbs["manushya-gateway"].Spec.MaxUnavailable)
	require.NotContains(t, o.pdbs, "manushya-policy")
	require.Equal(t, map[string]string{"pool": "policy"}, o.deployments["manushya-policy"].Spec.Template.Spec.NodeSelector)
	require.Empty(t, o.deployments["manushya-identity"].Spec.Template.Spec.NodeSelector)
	attrs, _ := envValue(container(t, mem), "OTEL_RESOURCE_ATTRIBUTES")
	require.True(t, strings.HasSuffix(attrs.Value, ",deployment.environment=test"), attrs.Value)

	// Ingress to the gateway's HTTP port.
	ing := o.ingresses["manushya-gateway"]
	require.NotNil(t, ing)
	require.Equal(t, "nginx", *ing.Spec.IngressClassName)
	be := ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service
	require.Equal(t, "manushya-gateway", be.Name)
	require.Equal(t, "http", be.Port.Name)
	require.Contains(t, o.services, be.Name)
	require.Equal(t, "api-tls", ing.Spec.TLS[0].SecretName)
	require.Equal(t, "api.example.test", ing.Spec.Rules[0].Host)

	// Network policies: services, gateway, egress.
	require.Len(t, o.netpols, 3)
	svcPol := o.netpols["manushya-services"]
	require.NotNil(t, svcPol)
	require.ElementsMatch(t, []string{"identity", "memory", "embedding", "policy"}, svcPol.Spec.PodSelector.MatchExpressions[0].Values)
	egress := o.netpols["manushya-egress"]
	require.Len(t, egress.Spec.Egress, 3)
	require.Equal(t, "10.0.5.0/24", egress.Spec.Egress[2].To[0].IPBlock.CIDR)

	require.Contains(t, o.other, "ServiceMonitor/manushya")
}

func TestRejectsBadValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"log level", map[string]any{"config": map[string]any{"logLevel": "verbose"}}, "logLevel"},
		{"unknown top-level key", map[string]any{"replicaCount": 3}, "replicaCount"},
		{"unknown target", map[string]any{"targets": map[string]any{"search": map[string]any{"enabled": true}}}, "search"},
		{"misspelt target setting", map[string]any{"targets": map[string]any{"memory": map[string]any{"replica": 3}}}, "replica"},
		{"port range", map[string]any{"ports": map[string]any{"grpc": 70000}}, "grpc"},
		{"app role", map[string]any{"config": map[string]any{"databaseAppRole": "App-Role"}}, "databaseAppRole"},
		{"database URL scheme", map[string]any{"secrets": map[string]any{"values": map[string]any{"databaseUrl": "mysql://x"}}}, "databaseUrl"},
		{"created secret without database", map[string]any{"secrets": map[string]any{"create": true, "values": map[string]any{"apiKeyPepper": strings.Repeat("x", 32)}}}, "secrets.values.databaseUrl is required"},
		{"created secret without pepper", map[string]any{"secrets": map[string]any{"create": true, "values": map[string]any{"databaseUrl": "postgres://a@b/c"}}}, "secrets.values.apiKeyPepper is required"},
		{"short pepper", map[string]any{"secrets": map[string]any{"create": true, "values": map[string]any{"databaseUrl": "postgres://a@b/c", "apiKeyPepper": "short"}}}, "at least 32 bytes"},
		{"grace period too short", map[string]any{"targets": map[string]any{"gateway": map[string]any{"terminationGracePeriodSeconds": 25}}}, "terminationGracePeriodSeconds"},
		{"both pdb bounds", map[string]any{"defaults": map[string]any{"podDisruptionBudget": map[string]any{"enabled": true, "maxUnavailable": 1, "minAvailable": 1}}}, "only one of"},
		{"hpa without metric", map[string]any{"targets": map[string]any{"memory": map[string]any{"autoscaling": map[string]any{"enabled": true, "minReplicas": 2, "maxReplicas": 4, "targetCPUUtilizationPercentage": 0}}}}, "targetCPUUtilizationPercentage"},
		{"ingress without gateway", map[string]any{"ingress": map[string]any{"enabled": true}, "targets": map[string]any{"gateway": map[string]any{"enabled": false}}}, "targets.gateway.enabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Render(ChartDir, tc.values)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestVariants renders less common settings; render decodes every object strictly.
func TestVariants(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		values map[string]any
		check  func(t *testing.T, o *objects)
	}{
		{"exec preStop, digest, command", map[string]any{
			"lifecycle": map[string]any{"preStopMode": "exec"},
			"image":     map[string]any{"digest": "sha256:" + strings.Repeat("a", 64), "command": []any{"/usr/local/bin/manushya"}},
		}, func(t *testing.T, o *objects) {
			c := container(t, o.deployments["manushya-memory"])
			require.Equal(t, []string{"sleep", "10"}, c.Lifecycle.PreStop.Exec.Command)
			require.Equal(t, "ghcr.io/manushya-ai/manushya@sha256:"+strings.Repeat("a", 64), c.Image)
			require.Equal(t, []string{"/usr/local/bin/manushya"}, c.Command)
			require.Equal(t, c.Image, o.jobs["manushya-migrate"].Spec.Template.Spec.Containers[0].Image)
		}},
		{"no migration, no service account, no pdb", map[string]any{
			"migrate":        map[string]any{"enabled": false},
			"serviceAccount": map[string]any{"create": false},
			"defaults":       map[string]any{"podDisruptionBudget": map[string]any{"enabled": false}},
			"metrics":        map[string]any{"podAnnotations": false},
		}, func(t *testing.T, o *objects) {
			require.Empty(t, o.jobs)
			require.Empty(t, o.accounts)
			require.Empty(t, o.pdbs)
			d := o.deployments["manushya-gateway"]
			require.Equal(t, "default", d.Spec.Template.Spec.ServiceAccountName)
			require.NotContains(t, d.Spec.Template.Annotations, "prometheus.io/scrape")
		}},
		{"only the gateway, network policy", map[string]any{
			"targets": map[string]any{
				"identity":  map[string]any{"enabled": false, "externalAddress": "dns:///identity.core:9090"},
				"memory":    map[string]any{"enabled": false},
				"embedding": map[string]any{"enabled": false},
				"policy":    map[string]any{"enabled": false},
				"webhooks":  map[string]any{"enabled": false},
				"usage":     map[string]any{"enabled": false},
			},
			"networkPolicy": map[string]any{"enabled": true},
		}, func(t *testing.T, o *objects) {
			require.Len(t, o.deployments, 1)
			require.Len(t, o.netpols, 1, "no services policy without service targets")
			require.Equal(t, "dns:///identity.core:9090", o.configMaps["manushya"].Data["MANUSHYA_SERVICES_IDENTITY_ADDR"])
		}},
		{"release named differently", map[string]any{"nameOverride": "mx", "defaults": map[string]any{"topologySpread": map[string]any{"enabled": false}}}, func(t *testing.T, o *objects) {
			require.Contains(t, o.deployments, "manushya-mx-identity")
			require.Equal(t, "manushya-mx-identity:9090", o.configMaps["manushya-mx"].Data["MANUSHYA_SERVICES_IDENTITY_ADDR"])
			require.Empty(t, o.deployments["manushya-mx-identity"].Spec.Template.Spec.TopologySpreadConstraints)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.check(t, render(t, tc.values))
		})
	}
}

// TestLongNames: with a long full name every object name still fits in a DNS
// label (render checks every name's length).
func TestLongNames(t *testing.T) {
	t.Parallel()
	o := render(t, map[string]any{"fullnameOverride": strings.Repeat("a", 70)})
	require.Len(t, o.deployments, len(targets))
	for name := range o.deployments {
		require.LessOrEqual(t, len(name), 63, name)
	}
}

// TestRenderedUpToDate: rendered/manushya.yaml is what the chart renders now.
func TestRenderedUpToDate(t *testing.T) {
	t.Parallel()
	r, err := Render(ChartDir, nil)
	require.NoError(t, err)
	have, err := os.ReadFile(RenderedFile)
	require.NoError(t, err)
	require.Equal(t, string(r.YAML()), string(have), "%s is stale: run go run ./deploy/k8s/render", RenderedFile)
}

// TestNotes: NOTES.txt renders and names the gateway.
func TestNotes(t *testing.T) {
	t.Parallel()
	r, err := Render(ChartDir, nil)
	require.NoError(t, err)
	require.Contains(t, r.Notes, "svc/manushya-gateway")
	for _, name := range targets {
		require.Contains(t, r.Notes, fmt.Sprintf("- %s: manushya-%s.", name, name))
	}
}
