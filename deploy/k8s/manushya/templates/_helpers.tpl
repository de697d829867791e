{{/*
Helpers shared by the templates. Every Deployment, Service, PDB and HPA is rendered
per target, in the fixed order of "manushya.targets".
*/}}

{{/* The service targets of the binary, in a fixed order (all but "all"). */}}
{{- define "manushya.targets" -}}
identity memory embedding policy webhooks usage gateway
{{- end -}}

{{/* The chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "manushya.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every resource name. Kept to 50 characters so "<prefix>-<target>" and
"<prefix>-migrate" still fit in a DNS label.
*/}}
{{- define "manushya.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "manushya.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every resource. */}}
{{- define "manushya.labels" -}}
helm.sh/chart: {{ include "manushya.chart" . }}
{{ include "manushya.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: manushya
{{- end -}}

{{/* Labels that select this release's pods (all targets). */}}
{{- define "manushya.selectorLabels" -}}
app.kubernetes.io/name: {{ include "manushya.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one component. Call with (dict "root" $ "component" "identity"). */}}
{{- define "manushya.componentLabels" -}}
{{ include "manushya.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "manushya.componentSelectorLabels" -}}
{{ include "manushya.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
Labels of a component's pods: no chart version, so a chart upgrade that changes
nothing else does not restart them.
*/}}
{{- define "manushya.podLabels" -}}
{{ include "manushya.componentSelectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: manushya
{{- end -}}

{{/* Name of the Deployment/Service of a target. Call with (dict "root" $ "name" "identity"). */}}
{{- define "manushya.targetFullname" -}}
{{- printf "%s-%s" (include "manushya.fullname" .root) .name -}}
{{- end -}}

{{/*
Effective settings of one target: .Values.defaults, with what the target sets on
top. The chart's own setting groups (podDisruptionBudget, autoscaling,
topologySpread, service) merge key by key; any other non-empty key (Kubernetes
objects such as resources or affinity, lists, numbers) replaces the default whole.
Call with (dict "root" $ "name" "identity" "out" $dict): the result is written into
"out" (dicts are passed by reference), which avoids a YAML round trip that would
turn integers into floats.
*/}}
{{- define "manushya.targetSettings" -}}
{{- $t := index .root.Values.targets .name | default dict -}}
{{- $groups := list "podDisruptionBudget" "autoscaling" "topologySpread" "service" -}}
{{- range $k, $v := deepCopy .root.Values.defaults -}}
{{- $_ := set $.out $k $v -}}
{{- end -}}
{{- range $k, $v := $t -}}
{{- if and (has $k $groups) (kindIs "map" $v) -}}
{{- $m := index $.out $k | default dict -}}
{{- range $gk, $gv := $v -}}
{{- $_ := set $m $gk $gv -}}
{{- end -}}
{{- /* A target's PDB bound replaces the default one rather than adding to it. */ -}}
{{- if eq $k "podDisruptionBudget" -}}
{{- if and (hasKey $v "minAvailable") (not (hasKey $v "maxUnavailable")) -}}
{{- $_ := unset $m "maxUnavailable" -}}
{{- else if and (hasKey $v "maxUnavailable") (not (hasKey $v "minAvailable")) -}}
{{- $_ := unset $m "minAvailable" -}}
{{- end -}}
{{- end -}}
{{- $_ := set $.out $k $m -}}
{{- else if or (not (empty $v)) (kindIs "bool" $v) -}}
{{- $_ := set $.out $k $v -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Whether a target is enabled ("true" or ""). Call with (dict "root" $ "name" "identity"). */}}
{{- define "manushya.targetEnabled" -}}
{{- $t := index .root.Values.targets .name | default dict -}}
{{- if $t.enabled -}}true{{- end -}}
{{- end -}}

{{/*
gRPC address the other targets dial for a target: its externalAddress, else its
Service when enabled, else nothing (the binary then answers UNAVAILABLE for it).
*/}}
{{- define "manushya.targetAddress" -}}
{{- $t := index .root.Values.targets .name | default dict -}}
{{- if $t.externalAddress -}}
{{- $t.externalAddress -}}
{{- else if $t.enabled -}}
{{- printf "%s:%v" (include "manushya.targetFullname" .) .root.Values.ports.grpc -}}
{{- end -}}
{{- end -}}

{{- define "manushya.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "manushya.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Name of the Secret the service pods read. */}}
{{- define "manushya.secretName" -}}
{{- default (include "manushya.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/*
Name of the Secret the migration Job reads. A Secret created by the chart is an
ordinary release resource, which does not exist yet while pre-install hooks run, so
the chart then also creates a hook Secret holding only the database URLs.
*/}}
{{- define "manushya.migrateSecretName" -}}
{{- if .Values.secrets.create -}}
{{- printf "%s-migrate" (include "manushya.fullname" .) -}}
{{- else -}}
{{- include "manushya.secretName" . -}}
{{- end -}}
{{- end -}}

{{- define "manushya.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Environment variable name of a target's address, e.g. MANUSHYA_SERVICES_IDENTITY_ADDR. */}}
{{- define "manushya.addrEnv" -}}
{{- printf "MANUSHYA_SERVICES_%s_ADDR" (upper .) -}}
{{- end -}}

{{/*
Fails the render on settings that cannot work, with a message naming the value.
*/}}
{{- define "manushya.validate" -}}
{{- $grace := int .Values.defaults.terminationGracePeriodSeconds -}}
{{- $need := add (int .Values.lifecycle.preStopSleepSeconds) (int .Values.config.shutdownTimeoutSeconds) -}}
{{- range $name := splitList " " (include "manushya.targets" $) -}}
{{- $s := dict -}}
{{- include "manushya.targetSettings" (dict "root" $ "name" $name "out" $s) -}}
{{- if le (int $s.terminationGracePeriodSeconds) $need -}}
{{- fail (printf "targets.%s: terminationGracePeriodSeconds (%v) must exceed lifecycle.preStopSleepSeconds + config.shutdownTimeoutSeconds (%v)" $name $s.terminationGracePeriodSeconds $need) -}}
{{- end -}}
{{- $pdb := $s.podDisruptionBudget -}}
{{- if and $pdb.enabled (hasKey $pdb "minAvailable") (hasKey $pdb "maxUnavailable") -}}
{{- fail (printf "targets.%s.podDisruptionBudget: set only one of minAvailable and maxUnavailable" $name) -}}
{{- end -}}
{{- $hpa := $s.autoscaling -}}
{{- if $hpa.enabled -}}
{{- if not (or $hpa.targetCPUUtilizationPercentage $hpa.targetMemoryUtilizationPercentage) -}}
{{- fail (printf "targets.%s.autoscaling: set targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" $name) -}}
{{- end -}}
{{- if gt (int $hpa.minReplicas) (int $hpa.maxReplicas) -}}
{{- fail (printf "targets.%s.autoscaling: minReplicas exceeds maxReplicas" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if .Values.secrets.create -}}
{{- $_ := required "secrets.values.databaseUrl is required when secrets.create is true" .Values.secrets.values.databaseUrl -}}
{{- $pepper := required "secrets.values.apiKeyPepper is required when secrets.create is true (openssl rand -base64 48)" .Values.secrets.values.apiKeyPepper -}}
{{- if lt (len $pepper) 32 -}}
{{- fail "secrets.values.apiKeyPepper must be at least 32 bytes" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.ingress.enabled (not .Values.targets.gateway.enabled) -}}
{{- fail "ingress.enabled needs targets.gateway.enabled" -}}
{{- end -}}
{{- end -}}

{{/* The listen host, bracketed when it is an IPv6 address. */}}
{{- define "manushya.listenHost" -}}
{{- $h := .Values.config.listenHost -}}
{{- if and (contains ":" $h) (not (hasPrefix "[" $h)) -}}
{{- printf "[%s]" $h -}}
{{- else -}}
{{- $h -}}
{{- end -}}
{{- end -}}
