package memory

import (
	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/pkg/metering"
)

// UsageSearch is the usage type searches are billed as.
const UsageSearch = "memory.search"

// meterSearch counts one search by identity (uuid.Nil for a credential without
// one) in tenant as a unit of memory.search usage, split by mode. The meter sums
// searches in process and publishes one usage.recorded event per tenant,
// identity and mode each interval: an event or outbox row per search would put a
// write on a read-only path and send every webhook subscriber of memory.* and the
// event store a message per search. The result count is not a property: it has
// too many values to sum by.
func (s *Service) meterSearch(tenant, identity uuid.UUID, mode string) {
	if s.usage == nil {
		return
	}
	id := ""
	if identity != uuid.Nil {
		id = identity.String()
	}
	s.usage.Add(tenant.String(), id, UsageSearch, 1, metering.Property{Key: "mode", Value: mode})
}
