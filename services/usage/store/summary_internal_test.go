package store

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A period across New Year marks its days in both years' rows.
func TestActivityMasksSpanYears(t *testing.T) {
	t.Parallel()
	years, masks := activityMasks(time.Date(2025, 12, 30, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))
	require.Equal(t, []int32{2025, 2026}, years)
	require.Len(t, masks[0], 366)
	require.Equal(t, strings.Repeat("0", 363)+"110", masks[0], "30 and 31 December (days 364 and 365)")
	require.Equal(t, "11"+strings.Repeat("0", 364), masks[1])
	// A leap year's 31 December is its 366th day.
	_, masks = activityMasks(time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC), time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC))
	require.Equal(t, strings.Repeat("0", 365)+"1", masks[0])
}
