// Package prometheus holds the Prometheus alerting rules (alerts.yaml). Its test
// checks that every metric the rules and the Grafana dashboard (deploy/grafana)
// query is one the code defines, so a renamed metric cannot leave an alert that
// never fires.
package prometheus
