package embedding_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/services/embedding"
)

// TestUsageEvents: token usage is summed per tenant, identity and model and
// written to the outbox as embedding.completed events, at the latest on Stop.
func TestUsageEvents(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, embedding.Migrations())
	mod, err := embedding.New(embedding.Config{UsageFlushInterval: time.Hour}, embedding.Deps{Pool: db.Pool})
	require.NoError(t, err)
	require.NoError(t, mod.Start(context.Background()))

	tenant, identity := "0190f5e4-7c4b-7a3e-9b1a-2f6d3c4e5a6b", "0190f5e4-7c4b-7a3e-9b1a-2f6d3c4e5a6c"
	ctx := auth.WithPrincipal(context.Background(), &auth.Principal{TenantID: tenant, IdentityID: identity, Roles: []string{auth.RoleAdmin}})
	total := 0
	for _, texts := range [][]string{{"one two three four five"}, {"six seven", "eight nine ten"}} {
		out, err := mod.Service().Embed(ctx, texts, "", 0)
		require.NoError(t, err)
		total += out.PromptTokens
	}
	require.NoError(t, mod.Stop(context.Background()))

	rows, err := db.Pool.Query(context.Background(), `SELECT subject, payload FROM embedding.outbox`)
	require.NoError(t, err)
	defer rows.Close()
	var n int
	for rows.Next() {
		var subject string
		var payload []byte
		require.NoError(t, rows.Scan(&subject, &payload))
		require.Equal(t, "manushya."+tenant+".embedding.completed", subject)
		var ev struct {
			Type string `json:"type"`
			Data struct {
				IdentityID  string `json:"identity_id"`
				Model       string `json:"model"`
				Provider    string `json:"provider"`
				TotalTokens int    `json:"total_tokens"`
				Texts       int    `json:"texts"`
				Requests    int    `json:"requests"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(payload, &ev))
		require.Equal(t, embedding.EventCompleted, ev.Type)
		require.Equal(t, identity, ev.Data.IdentityID)
		require.Equal(t, "hashing-v1-384", ev.Data.Model)
		require.Equal(t, "hashing", ev.Data.Provider)
		require.Equal(t, total, ev.Data.TotalTokens)
		require.Equal(t, 3, ev.Data.Texts)
		require.Equal(t, 2, ev.Data.Requests)
		n++
	}
	require.NoError(t, rows.Err())
	require.Equal(t, 1, n, "one event per tenant, identity and model")
}
