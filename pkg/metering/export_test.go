package metering

import "github.com/prometheus/client_golang/prometheus"

// UnitsCounter exposes the units counter to the tests.
func UnitsCounter(m *Meter) *prometheus.CounterVec { return m.units }
