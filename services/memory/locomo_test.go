package memory

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
)

type locomoSample struct {
	SampleID     string                     `json:"sample_id"`
	Conversation map[string]json.RawMessage `json:"conversation"`
	QA           []struct {
		Question string   `json:"question"`
		Evidence []string `json:"evidence"`
		Category int      `json:"category"`
	} `json:"qa"`
}

type locomoTurn struct {
	Speaker string `json:"speaker"`
	DiaID   string `json:"dia_id"`
	Text    string `json:"text"`
}

// BenchmarkLoCoMo is the retrieval evaluation on LoCoMo (LOCOMO_PATH, default
// ../shared/data/locomo/locomo-dev5.json from the repository root): every turn
// becomes one memory of one identity per conversation, embedded by the hashing
// embedder through the embedding service, and each question of categories 1-4
// is searched in its conversation's scope; it reports evidence recall@5 and
// @10 for vector, keyword and hybrid search. Run once:
//
//	go test ./services/memory -run '^$' -bench BenchmarkLoCoMo -benchtime 1x
func BenchmarkLoCoMo(b *testing.B) {
	path := os.Getenv("LOCOMO_PATH")
	if path == "" {
		path = filepath.Join("..", "..", "..", "shared", "data", "locomo", "locomo-dev5.json")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Skipf("LoCoMo data not found at %s (set LOCOMO_PATH): %v", path, err)
	}
	var samples []locomoSample
	require.NoError(b, json.Unmarshal(raw, &samples))

	tb := setup(b, setupOpts{noWorkers: true})
	ctx := context.Background()
	type question struct {
		identity string
		text     string
		evidence map[string]bool
	}
	var questions []question
	memories := 0
	for _, s := range samples {
		owner := uuid.NewString()
		var items []*memoryv1.CreateMemoryRequest
		keys := make([]string, 0, len(s.Conversation))
		for k := range s.Conversation {
			if strings.HasPrefix(k, "session_") && !strings.Contains(k, "date") {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			var turns []locomoTurn
			if err := json.Unmarshal(s.Conversation[k], &turns); err != nil {
				continue
			}
			for _, t := range turns {
				md, _ := structpb.NewStruct(map[string]any{"dia_id": t.DiaID})
				items = append(items, &memoryv1.CreateMemoryRequest{
					Text: t.Speaker + ": " + t.Text, IdentityId: owner, SessionId: k, Metadata: md,
				})
			}
		}
		for start := 0; start < len(items); start += 1000 {
			resp, err := tb.client.BulkCreateMemories(as("admin-a"), &memoryv1.BulkCreateMemoriesRequest{Memories: items[start:min(start+1000, len(items))]})
			require.NoError(b, err)
			for _, r := range resp.GetResults() {
				require.Zero(b, r.GetStatus().GetCode(), r.GetStatus().GetMessage())
			}
		}
		memories += len(items)
		for _, q := range s.QA {
			if q.Category < 1 || q.Category > 4 {
				continue
			}
			ev := map[string]bool{}
			for _, e := range q.Evidence {
				for _, part := range strings.Split(e, ";") {
					if p := strings.TrimSpace(part); p != "" {
						ev[p] = true
					}
				}
			}
			if len(ev) > 0 {
				questions = append(questions, question{identity: owner, text: q.Question, evidence: ev})
			}
		}
	}
	// Embed everything (the sweeper handles up to 1000 due jobs per pass).
	for {
		var left int
		require.NoError(b, tb.admin.QueryRow(ctx, "SELECT count(*) FROM memory.embedding_jobs").Scan(&left))
		if left == 0 {
			break
		}
		require.NoError(b, tb.mod.embedder.sweep(ctx))
	}
	require.NoError(b, MarkLeakproof(ctx, tb.admin))
	b.Logf("LoCoMo: %d conversations, %d memories, %d questions (categories 1-4)", len(samples), memories, len(questions))

	for _, mode := range []memoryv1.SearchMode{memoryv1.SearchMode_SEARCH_MODE_VECTOR, memoryv1.SearchMode_SEARCH_MODE_KEYWORD, memoryv1.SearchMode_SEARCH_MODE_HYBRID} {
		var r5, r10 float64
		for _, q := range questions {
			resp, err := tb.client.SearchMemories(as("admin-a"), &memoryv1.SearchMemoriesRequest{
				Query: q.text, Mode: mode, IdentityId: q.identity, Limit: 10,
			})
			require.NoError(b, err)
			found5, found10 := 0, 0
			for i, res := range resp.GetResults() {
				if q.evidence[res.GetMemory().GetMetadata().GetFields()["dia_id"].GetStringValue()] {
					found10++
					if i < 5 {
						found5++
					}
				}
			}
			r5 += float64(found5) / float64(len(q.evidence))
			r10 += float64(found10) / float64(len(q.evidence))
		}
		n := float64(len(questions))
		name := strings.ToLower(strings.TrimPrefix(mode.String(), "SEARCH_MODE_"))
		b.Logf("%-8s recall@5 %.3f recall@10 %.3f", name, r5/n, r10/n)
		b.ReportMetric(r5/n, name+"-recall@5")
		b.ReportMetric(r10/n, name+"-recall@10")
	}
}
