package keyring

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	loads     prometheus.Counter
	destroyed prometheus.Counter
	rewrapped prometheus.Counter
	rows      *prometheus.CounterVec
	pending   *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		loads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "manushya_keyring_key_loads_total",
			Help: "Scopes whose data keys were read from the database and unwrapped (cache misses).",
		}),
		destroyed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "manushya_keyring_keys_destroyed_total",
			Help: "Data keys destroyed: retired keys no row used any more, and crypto-shredded scopes.",
		}),
		rewrapped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "manushya_keyring_keys_rewrapped_total",
			Help: "Data keys re-wrapped under the current key-encryption key.",
		}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "manushya_keyring_reencrypt_rows_total",
			Help: "Rows the re-encryption job visited, by field and result (current, resealed, changed, failed).",
		}, []string{"field", "result"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "manushya_keyring_reencrypt_pending_rows",
			Help: "Rows the last complete pass over a field left under an old key or format (could not re-seal).",
		}, []string{"field"}),
	}
	if reg != nil {
		reg.MustRegister(m.loads, m.destroyed, m.rewrapped, m.rows, m.pending)
	}
	return m
}
