// Package k8s renders the Helm chart in manushya/ without a helm binary, using
// Helm's own Go packages (chart loader, values schema validation, template engine
// and manifest sorter), so that the chart is tested in `go test ./...` and the plain
// manifests in rendered/ are reproducible with `go run ./deploy/k8s/render`.
package k8s
