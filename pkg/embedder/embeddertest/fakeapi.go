// Package embeddertest holds test helpers: a local HTTP server speaking the OpenAI
// embeddings API (NewAPI) and a tiny Model2Vec model written to disk (WriteModel).
// The server embeds with the hashing embedder and can be told to fail.
package embeddertest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/manushya-ai/manushya/pkg/embedder/hashing"
)

// Failure is a canned answer the server gives instead of embedding.
type Failure struct {
	Status     int
	RetryAfter string // Retry-After header value, if any
	Body       string
}

// Server is the fake API.
type Server struct {
	*httptest.Server
	Key   string
	Model string
	Dims  int

	mu       sync.Mutex
	failures []Failure // consumed one per request, front first
	down     *Failure  // answered to every request while set
	requests int
	batches  []int
}

// NewAPI starts a server on a local port, closed when the test ends.
func NewAPI(t testing.TB, key, model string, dims int) *Server {
	s := &Server{Key: key, Model: model, Dims: dims}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.Close)
	return s
}

// FailNext queues failures for the next requests.
func (s *Server) FailNext(f ...Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, f...)
}

// SetDown makes every request fail with f until SetDown(nil).
func (s *Server) SetDown(f *Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = f
}

// Requests is how many requests reached the server.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Batches lists the number of inputs of each successful request.
func (s *Server) Batches() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.batches...)
}

type request struct {
	Model      string   `json:"model"`
	Input      []string `json:"input"`
	Dimensions int      `json:"dimensions"`
}

type datum struct {
	Object    string    `json:"object"`
	Embedding []float32 `json:"embedding"`
	Index     int       `json:"index"`
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	var fail *Failure
	if s.down != nil {
		fail = s.down
	} else if len(s.failures) > 0 {
		fail = &s.failures[0]
		s.failures = s.failures[1:]
	}
	s.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path != "/v1/embeddings" || r.Method != http.MethodPost {
		http.Error(w, `{"error":{"message":"not found"}}`, http.StatusNotFound)
		return
	}
	if s.Key != "" && r.Header.Get("Authorization") != "Bearer "+s.Key {
		w.WriteHeader(http.StatusUnauthorized)
		// Real APIs quote part of the key back; this one quotes all of it, so
		// tests can check it never reaches an error.
		_, _ = w.Write([]byte(`{"error":{"message":"Incorrect API key provided: ` + r.Header.Get("Authorization") + `"}}`))
		return
	}
	if fail != nil {
		if fail.RetryAfter != "" {
			w.Header().Set("Retry-After", fail.RetryAfter)
		}
		w.WriteHeader(fail.Status)
		_, _ = w.Write([]byte(fail.Body))
		return
	}
	var req request
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Input) == 0 {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":{"message":"bad request"}}`))
		return
	}
	if req.Model != s.Model {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":{"message":"model ` + strconv.Quote(req.Model) + ` not found"}}`))
		return
	}
	dims := s.Dims
	if req.Dimensions > 0 {
		dims = req.Dimensions
	}
	vecs := hashing.New(dims).Embed(req.Input)
	resp := struct {
		Object string  `json:"object"`
		Data   []datum `json:"data"`
		Model  string  `json:"model"`
		Usage  struct {
			PromptTokens int `json:"prompt_tokens"`
			TotalTokens  int `json:"total_tokens"`
		} `json:"usage"`
	}{Object: "list", Model: s.Model}
	// Answer in reverse order: clients must place vectors by index.
	for i := len(vecs) - 1; i >= 0; i-- {
		resp.Data = append(resp.Data, datum{Object: "embedding", Embedding: vecs[i], Index: i})
		resp.Usage.PromptTokens += len(req.Input[i])
	}
	resp.Usage.TotalTokens = resp.Usage.PromptTokens
	s.mu.Lock()
	s.batches = append(s.batches, len(req.Input))
	s.mu.Unlock()
	_ = json.NewEncoder(w).Encode(resp)
}
