package memory

import (
	"context"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/pgvector/pgvector-go"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/embedder/hashing"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	"github.com/manushya-ai/manushya/services/memory/store"
)

const (
	defaultSearchLimit = 10
	maxSearchLimit     = 100
	// rrfK is the constant of reciprocal rank fusion: score = sum 1/(rrfK + rank).
	rrfK = 60
)

// hit is one ranked match of one search arm.
type hit struct {
	m        store.Memory
	distance float64 // cosine distance, vector arm
	rank     float64 // ts_rank_cd, keyword arm
}

// Search runs a vector, keyword or hybrid search.
func (s *Service) Search(ctx context.Context, req *memoryv1.SearchMemoriesRequest) (*memoryv1.SearchMemoriesResponse, error) {
	began := time.Now()
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	limit := int(req.GetLimit())
	switch {
	case limit == 0:
		limit = defaultSearchLimit
	case limit < 0 || limit > maxSearchLimit:
		return nil, apierr.Field("limit", "must be between 1 and %d", maxSearchLimit)
	}
	if req.SimilarityThreshold != nil {
		if t := req.GetSimilarityThreshold(); math.IsNaN(t) || t < 0 || t > 1 {
			return nil, apierr.Field("similarity_threshold", "must be between 0 and 1")
		}
	}
	mode := req.GetMode()
	if mode == memoryv1.SearchMode_SEARCH_MODE_UNSPECIFIED {
		mode = memoryv1.SearchMode_SEARCH_MODE_VECTOR
	}
	if _, ok := memoryv1.SearchMode_name[int32(mode)]; !ok {
		return nil, apierr.Field("mode", "must be SEARCH_MODE_VECTOR, SEARCH_MODE_KEYWORD or SEARCH_MODE_HYBRID")
	}
	query := strings.TrimSpace(req.GetQuery())
	if query == "" && len(req.GetVector()) == 0 {
		return nil, apierr.Field("query", "is required (or vector)")
	}
	if mode == memoryv1.SearchMode_SEARCH_MODE_KEYWORD && query == "" {
		return nil, apierr.Field("query", "is required for keyword search")
	}
	if len(req.GetVector()) > 0 && len(req.GetVector()) != store.Dimensions {
		return nil, apierr.Field("vector", "has %d dimensions; the index holds %d", len(req.GetVector()), store.Dimensions)
	}
	for _, x := range req.GetVector() {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, apierr.Field("vector", "must hold finite numbers")
		}
	}

	args := &sqlArgs{}
	conds, err := s.where(c, selection{
		identityID: req.GetIdentityId(), agentID: req.GetAgentId(), sessionID: req.GetSessionId(),
		types: req.GetTypes(), filter: req.GetFilter(), after: req.GetCreatedAfter(), before: req.GetCreatedBefore(),
	}, false, args)
	if err != nil {
		return nil, err
	}
	narrow := req.GetIdentityId() != "" || req.GetAgentId() != "" || req.GetSessionId() != "" || len(req.GetTypes()) > 0 ||
		req.GetFilter() != nil || req.GetCreatedAfter() != nil || req.GetCreatedBefore() != nil || !c.anyIdentity(false)

	resp := &memoryv1.SearchMemoriesResponse{Mode: mode}
	var vec []float32
	if mode != memoryv1.SearchMode_SEARCH_MODE_KEYWORD {
		vec = req.GetVector()
		if len(vec) == 0 {
			model, vecs, err := s.embedTexts(ctx, c.tenant, []string{query})
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				// The query cannot be embedded: keyword search still answers,
				// unless the tenant's text is sealed.
				if kerr := s.keywordAvailable(ctx, c.tenant); kerr != nil {
					return nil, apierr.Unavailable("the query could not be embedded, and keyword search is unavailable: %v", kerr)
				}
				s.logger.Warn("search falls back to keyword: query not embedded", "err", err)
				mode = memoryv1.SearchMode_SEARCH_MODE_KEYWORD
				resp.Mode = mode
			} else {
				vec = vecs[0]
				resp.EmbeddingModel = model
			}
		}
		if vec != nil && zero(vec) {
			vec = nil // no direction to search along: no vector matches
		}
	}
	maxDistance := 2.0
	if req.SimilarityThreshold != nil {
		// Similarities are computed in float32 (pgvector's sums), exact to
		// about 1e-7: a memory pointing the same way as a query of another
		// length may come out at 0.99999994, and a threshold of 1 must still
		// keep it.
		maxDistance = 1 - req.GetSimilarityThreshold() + similarityRounding
	}

	var vhits, khits []hit
	err = s.store.InSearch(ctx, c.tenant, s.cfg.EfSearch, func(tx *store.Tx) error {
		if mode != memoryv1.SearchMode_SEARCH_MODE_VECTOR {
			if err := keywordAvailableIn(ctx, tx, c.tenant); err != nil {
				return err
			}
		}
		candidates := limit
		if mode == memoryv1.SearchMode_SEARCH_MODE_HYBRID {
			candidates = min(max(limit*4, 40), 200)
		}
		if mode != memoryv1.SearchMode_SEARCH_MODE_KEYWORD && vec != nil {
			vhits, err = s.vectorSearch(ctx, tx, c.tenant, conds, args.vals, vec, resp.GetEmbeddingModel(), maxDistance, candidates, narrow)
			if err != nil {
				return err
			}
		}
		if mode != memoryv1.SearchMode_SEARCH_MODE_VECTOR && query != "" {
			khits, err = s.keywordSearch(ctx, tx, conds, args.vals, query, candidates)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, s.mapErr(err, "")
	}
	if vhits, khits, err = c.visibleHits(vhits, khits); err != nil {
		return nil, s.mapErr(err, "")
	}
	if err := s.openHits(ctx, vhits, khits); err != nil {
		return nil, err
	}

	switch mode {
	case memoryv1.SearchMode_SEARCH_MODE_VECTOR:
		for _, h := range vhits {
			sim := similarity(h.distance)
			r, err := result(h.m, sim, &sim, nil)
			if err != nil {
				return nil, err
			}
			resp.Results = append(resp.Results, r)
		}
	case memoryv1.SearchMode_SEARCH_MODE_KEYWORD:
		for _, h := range khits {
			rank := h.rank
			r, err := result(h.m, rank, nil, &rank)
			if err != nil {
				return nil, err
			}
			resp.Results = append(resp.Results, r)
		}
	default:
		resp.Results, err = fuse(vhits, khits, limit)
		if err != nil {
			return nil, err
		}
	}
	modeName := strings.ToLower(strings.TrimPrefix(mode.String(), "SEARCH_MODE_"))
	s.metrics.search.WithLabelValues(modeName).Observe(time.Since(began).Seconds())
	s.meterSearch(c.tenant, c.self, modeName)
	return resp, nil
}

func result(m store.Memory, score float64, vscore, kscore *float64) (*memoryv1.SearchResult, error) {
	pm, err := toProto(m)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	return &memoryv1.SearchResult{Memory: pm, Score: score, VectorScore: vscore, KeywordScore: kscore}, nil
}

// fuse merges the two rankings by reciprocal rank fusion.
func fuse(vhits, khits []hit, limit int) ([]*memoryv1.SearchResult, error) {
	type fused struct {
		m              store.Memory
		score          float64
		vscore, kscore *float64
	}
	byID := map[string]*fused{}
	var order []*fused
	get := func(m store.Memory) *fused {
		f, ok := byID[m.ID.String()]
		if !ok {
			f = &fused{m: m}
			byID[m.ID.String()] = f
			order = append(order, f)
		}
		return f
	}
	for i, h := range vhits {
		f := get(h.m)
		f.score += 1.0 / float64(rrfK+i+1)
		sim := similarity(h.distance)
		f.vscore = &sim
	}
	for i, h := range khits {
		f := get(h.m)
		f.score += 1.0 / float64(rrfK+i+1)
		rank := h.rank
		f.kscore = &rank
	}
	slices.SortStableFunc(order, func(a, b *fused) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return 0
	})
	var out []*memoryv1.SearchResult
	for _, f := range order[:min(limit, len(order))] {
		r, err := result(f.m, f.score, f.vscore, f.kscore)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// vectorSearch returns the k nearest memories within maxDistance. A scope that
// holds at most ExactScanRows embedded rows is ranked exactly: a narrow scope (a
// filter, an identity, ...), and the whole tenant while it is that small.
// Anything larger goes through the HNSW index with iterative scans (set by
// InSearch), which keep scanning until k rows pass the filters. A tenant found
// too large for the exact scan is remembered for a while (largeTenants), so its
// tenant-wide searches go to the index without counting its rows each time.
func (s *Service) vectorSearch(ctx context.Context, tx *store.Tx, tenant uuid.UUID, conds []string, base []any, vec []float32, model string, maxDistance float64, k int, narrow bool) ([]hit, error) {
	args := &sqlArgs{vals: slices.Clone(base)}
	where := strings.Join(conds, " AND ") + " AND m.embedding IS NOT NULL"
	if model != "" {
		// Vectors of another model (before a model change and re-embedding)
		// are not comparable with the query's.
		where += " AND m.embedding_model = " + args.add(model)
	}
	q := args.add(vecString(vec))
	var hits []hit
	var d float64
	if narrow || !s.large.known(tenant) {
		// One statement ranks the scope exactly and counts it (up to the limit
		// plus one); a scope found too large falls through to the index.
		var n int64
		sql := exactSQL(where, q, args.add(s.cfg.ExactScanRows+1), args.add(k))
		err := tx.Query(ctx, sql, args.vals, func() []any { return []any{&d, &n} }, func(m store.Memory) {
			if d <= maxDistance {
				hits = append(hits, hit{m: m, distance: d})
			}
		})
		if err != nil {
			return nil, err
		}
		if n <= int64(s.cfg.ExactScanRows) {
			return hits, nil
		}
		if !narrow {
			s.large.mark(tenant)
		}
		hits = nil
		args.vals = args.vals[:len(args.vals)-2]
	}
	// The graph holds the indexed rows; the fresh ones (stored, not yet
	// indexed: migration 00012) are ranked exactly in the same statement.
	sql := annSQL(where, q, args.add(tenant), args.add(maxDistance), args.add(k))
	err := tx.Query(ctx, sql, args.vals, func() []any { return []any{&d} }, func(m store.Memory) {
		hits = append(hits, hit{m: m, distance: d})
	})
	return hits, err
}

// largeTenantRecheck is how long a tenant found too large for an exact
// tenant-wide scan is taken to be so. A tenant that shrinks below the limit
// meanwhile is still served by the index, which finds its rows (they form
// their own region of the graph, see annSQL), only less cheaply.
const largeTenantRecheck = time.Minute

// largeTenants remembers the tenants whose tenant-wide searches go straight to
// the index. The zero value is ready to use.
type largeTenants struct{ until sync.Map } // uuid.UUID -> time.Time

func (l *largeTenants) known(tenant uuid.UUID) bool {
	t, ok := l.until.Load(tenant)
	return ok && time.Now().Before(t.(time.Time))
}

func (l *largeTenants) mark(tenant uuid.UUID) {
	l.until.Store(tenant, time.Now().Add(largeTenantRecheck))
}

// annSQL is the HNSW query shape: the index orders by distance inside a
// materialized CTE (relaxed_order may return rows slightly out of order, and a
// distance bound inside it would make the scan run on), then the threshold and
// the final order apply outside. The graph holds each vector fenced by its
// tenant (memory.fenced_embedding, migration 00006: the unit vector plus a
// tenant direction, so a tenant's rows form their own region of the graph and
// the walk does not wade through other tenants' rows), as halfvec; the scan
// orders by that distance, which ranks a tenant's rows as their cosine does,
// and each candidate's distance is then computed from the stored
// full-precision vector, so the threshold and the scores are exact. tenant
// must be the tenant the conditions select.
//
// The graph is partial (migration 00012): it holds the rows with
// embedding_indexed. The tenant's fresh rows (a stored vector the indexer has
// not put in the graph yet) are ranked by an exact scan through the
// memories_fresh index, under the same conditions, and the two parts are merged
// by distance before the limit. One statement reads both under one snapshot,
// so a row the indexer flips meanwhile is in exactly one of them.
func annSQL(where, q, tenant, maxd, k string) string {
	return "WITH nearest AS MATERIALIZED (SELECT " + store.Columns + ", m.embedding <=> " + q + "::vector AS distance" +
		" FROM memory.memories m WHERE " + where + " AND m.embedding_indexed" +
		" ORDER BY memory.fenced_embedding(m.embedding, m.tenant_id)::halfvec(" + fencedDims + ")" +
		" <=> memory.fenced_embedding(" + q + "::vector, " + tenant + "::uuid)::halfvec(" + fencedDims + ") LIMIT " + k + ")," +
		" fresh AS MATERIALIZED (SELECT " + store.Columns + ", m.embedding <=> " + q + "::vector AS distance" +
		" FROM memory.memories m WHERE " + where + " AND NOT m.embedding_indexed AND m.tenant_id = " + tenant + "::uuid" +
		" ORDER BY distance, m.id LIMIT " + k + ")" +
		" SELECT * FROM (SELECT * FROM nearest UNION ALL SELECT * FROM fresh) u" +
		" WHERE distance <= " + maxd + " ORDER BY distance, id LIMIT " + k
}

// fencedDims is the dimension of the indexed fenced vectors as SQL text: the
// vector and the 32 coordinates of the tenant direction (the typmod of the
// indexed expression, which a query must repeat exactly for the planner to use
// the index).
var fencedDims = strconv.Itoa(store.Dimensions + 32)

// exactSQL is the exact query shape for small scopes: it reads at most scopeMax
// rows of the scope through its btree/GIN indexes (the HNSW index cannot serve
// a CTE that is not ordered by distance), ranks them by exact distance, and
// returns the top k with their distance and the scope's size (capped at
// scopeMax). The caller applies the threshold, which commutes with the top k.
func exactSQL(where, q, scopeMax, k string) string {
	return "WITH scope AS MATERIALIZED (SELECT m.id, m.embedding <=> " + q + "::vector AS distance" +
		" FROM memory.memories m WHERE " + where + " LIMIT " + scopeMax + ")," +
		" top AS (SELECT id, distance FROM scope ORDER BY distance, id LIMIT " + k + ")" +
		" SELECT " + store.Columns + ", top.distance, (SELECT count(*) FROM scope)" +
		" FROM top JOIN memory.memories m ON m.id = top.id ORDER BY top.distance, m.id"
}

// keywordQuery turns plain text into a websearch query matching any of its words
// (ranked by ts_rank_cd, which rewards documents holding more of them close
// together). Text using the websearch syntax (quotes, or, -word) is passed as is.
func keywordQuery(q string) string {
	lower := strings.ToLower(q)
	if strings.ContainsAny(q, `"`) || strings.Contains(lower, " or ") || strings.HasPrefix(q, "-") || strings.Contains(q, " -") {
		return q
	}
	words := hashing.Tokenize(q)
	words = slices.DeleteFunc(words, func(w string) bool { return w == "or" })
	return strings.Join(words, " or ")
}

func (s *Service) keywordSearch(ctx context.Context, tx *store.Tx, conds []string, base []any, query string, k int) ([]hit, error) {
	args := &sqlArgs{vals: slices.Clone(base)}
	kq := keywordQuery(query)
	if kq == "" {
		return nil, nil
	}
	sql := keywordSQL(strings.Join(conds, " AND "), args.add(kq), args.add(k))
	var hits []hit
	var r float64
	err := tx.Query(ctx, sql, args.vals, func() []any { return []any{&r} }, func(m store.Memory) {
		hits = append(hits, hit{m: m, rank: r})
	})
	if err != nil {
		return nil, err
	}
	return hits, nil
}

func keywordSQL(where, q, k string) string {
	tsq := "websearch_to_tsquery('english'::regconfig, " + q + ")"
	return "SELECT " + store.Columns + ", ts_rank_cd(m.tsv, " + tsq + ")::float8 AS rank" +
		" FROM memory.memories m WHERE " + where + " AND m.tsv @@ " + tsq +
		" ORDER BY rank DESC, m.id LIMIT " + k
}

func vecString(v []float32) string { return pgvector.NewVector(v).String() }

// similarityRounding bounds the rounding error of a cosine similarity computed
// by pgvector over float32 vectors (its sums run in float32).
const similarityRounding = 1e-6

// similarity is the cosine similarity of a cosine distance, held to [-1, 1]
// (rounding may take two vectors of the same direction a hair past 1).
func similarity(distance float64) float64 { return max(-1, min(1, 1-distance)) }
