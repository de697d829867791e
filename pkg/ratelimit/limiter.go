package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/authz"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
)

// Fallback says what the limiter does while Redis is unreachable.
type Fallback string

// Fallbacks.
const (
	// FallbackLocal counts in process: each process enforces the limits alone.
	FallbackLocal Fallback = "local"
	// FallbackOpen lets every request through.
	FallbackOpen Fallback = "open"
)

// LimitSource supplies stored limits. The usage service implements it on
// PostgreSQL.
type LimitSource interface {
	// Limits returns the stored global defaults and, when tenant is not empty, the
	// tenant's own limits.
	Limits(ctx context.Context, tenant string) ([]Limit, error)
}

// Options configure a Limiter. Zero values take the documented defaults.
type Options struct {
	// Redis holds the counters; nil counts in process (development, one process).
	Redis redis.UniversalClient
	// Source supplies stored limits; nil uses Defaults alone.
	Source LimitSource
	// Defaults are the code defaults; nil means DefaultLimits().
	Defaults []Limit
	// Costs gives routes (permissions such as "memory.search") their own cost per
	// request, over the limit's cost.
	Costs map[string]int32
	// Fallback while Redis is down; default FallbackLocal.
	Fallback Fallback
	// Shadow reports every limit without refusing, whatever the limits say.
	Shadow bool
	// RedisTimeout bounds one Redis decision; default 100ms.
	RedisTimeout time.Duration
	// CoolDown is how long Redis is left alone after a failure; default 1s.
	CoolDown time.Duration
	// RefreshInterval bounds how stale a tenant's cached limits get when a change
	// event is missed; default 30s.
	RefreshInterval time.Duration
	Logger          *slog.Logger
	Registerer      prometheus.Registerer
}

// Limiter decides whether requests may proceed. It implements
// grpcserver.RateLimiter.
type Limiter struct {
	opts     Options
	redis    backend
	local    *memoryBackend
	logger   *slog.Logger
	metrics  *metrics
	defaults []Limit

	mu    sync.RWMutex
	cache map[string]*tenantLimits
	gen   uint64 // bumped by Invalidate, so a load started before it is not cached
	group singleflight.Group

	downUntil atomic.Int64 // unix nanos until which Redis is skipped
	down      atomic.Bool
}

type tenantLimits struct {
	limits     []Limit
	expires    time.Time
	refreshing atomic.Bool // one background refresh at a time
}

// New builds a limiter.
func New(opts Options) (*Limiter, error) {
	if opts.Fallback == "" {
		opts.Fallback = FallbackLocal
	}
	if opts.Fallback != FallbackLocal && opts.Fallback != FallbackOpen {
		return nil, fmt.Errorf("ratelimit: fallback %q: want %q or %q", opts.Fallback, FallbackLocal, FallbackOpen)
	}
	if opts.Defaults == nil {
		opts.Defaults = DefaultLimits()
	}
	for _, d := range opts.Defaults {
		if err := d.Validate(); err != nil {
			return nil, fmt.Errorf("ratelimit: default: %w", err)
		}
	}
	if opts.RedisTimeout <= 0 {
		opts.RedisTimeout = 100 * time.Millisecond
	}
	if opts.CoolDown <= 0 {
		opts.CoolDown = time.Second
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	l := &Limiter{
		opts: opts, local: newMemoryBackend(), logger: opts.Logger.With("component", "ratelimit"),
		metrics: m, defaults: opts.Defaults, cache: make(map[string]*tenantLimits),
	}
	if opts.Redis != nil {
		l.redis = newRedisBackend(opts.Redis)
	}
	return l, nil
}

// Invalidate drops the cached limits of tenant, or of every tenant when tenant is
// empty (a global default changed). The next request loads them again.
func (l *Limiter) Invalidate(tenant string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gen++
	if tenant == "" {
		clear(l.cache)
		return
	}
	delete(l.cache, tenant)
}

// limitsFor returns the limits that may apply in tenant: the code defaults, replaced
// by stored globals with the same scope, subject and route group, plus the tenant's
// own. A stale entry is served while it refreshes in the background; a failed load
// falls back to what was there (or the defaults) and is retried soon.
func (l *Limiter) limitsFor(ctx context.Context, tenant string) []Limit {
	if l.opts.Source == nil {
		return l.defaults
	}
	now := time.Now()
	l.mu.RLock()
	e := l.cache[tenant]
	l.mu.RUnlock()
	if e != nil {
		if now.After(e.expires) && e.refreshing.CompareAndSwap(false, true) {
			go func() {
				_, _, _ = l.group.Do(tenant, func() (any, error) { return l.load(context.WithoutCancel(ctx), tenant) })
			}()
		}
		return e.limits
	}
	v, _, _ := l.group.Do(tenant, func() (any, error) { return l.load(context.WithoutCancel(ctx), tenant) })
	return v.([]Limit)
}

func (l *Limiter) load(ctx context.Context, tenant string) ([]Limit, error) {
	l.mu.RLock()
	gen := l.gen
	prev := l.cache[tenant]
	l.mu.RUnlock()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	stored, err := l.opts.Source.Limits(ctx, tenant)
	ttl := l.opts.RefreshInterval
	var limits []Limit
	if err != nil {
		l.metrics.reloads.WithLabelValues("error").Inc()
		l.logger.WarnContext(ctx, "rate limits not loaded; using the previous or default limits", "tenant", tenant, "err", err)
		limits, ttl = l.defaults, 5*time.Second
		if prev != nil {
			limits = prev.limits
		}
	} else {
		l.metrics.reloads.WithLabelValues("ok").Inc()
		limits = merge(l.defaults, stored, l.logger)
	}
	l.mu.Lock()
	if l.gen == gen {
		l.cache[tenant] = &tenantLimits{limits: limits, expires: time.Now().Add(ttl)}
	}
	l.mu.Unlock()
	return limits, nil
}

// merge overlays stored limits on the defaults; invalid stored limits are skipped
// with a log line rather than disabling limiting.
func merge(defaults, stored []Limit, logger *slog.Logger) []Limit {
	type slot struct {
		scope          Scope
		subject, group string
	}
	overridden := make(map[slot]bool)
	out := make([]Limit, 0, len(defaults)+len(stored))
	for _, s := range stored {
		if err := s.Validate(); err != nil {
			logger.Warn("stored rate limit ignored", "err", err)
			continue
		}
		if s.TenantID == "" {
			overridden[slot{s.Scope, s.Subject, s.RouteGroup}] = true
		}
		out = append(out, s)
	}
	for _, d := range defaults {
		if !overridden[slot{d.Scope, d.Subject, d.RouteGroup}] {
			out = append(out, d)
		}
	}
	return out
}

// decision is one counter's outcome within a request.
type decision struct {
	applied
	res   result
	known bool // false when Redis was down and the fallback lets requests through
}

// Allow implements grpcserver.RateLimiter.
func (l *Limiter) Allow(ctx context.Context, p *auth.Principal, a authz.Access) error {
	// The suite's own calls (an export reading memories, the embedder calling the
	// embedding service) are not the tenant's traffic: the request that caused
	// them was counted already.
	if p == nil || p.TenantID == "" || p.IsInternal() {
		return nil
	}
	route := a.Permission
	var buf [4]applied
	apps := resolve(l.limitsFor(ctx, p.TenantID), p, route, buf[:0])
	if len(apps) == 0 {
		return nil
	}
	var (
		tightest *decision
		refused  *decision
		all      [4]decision
		askBuf   [4]ask
		resBuf   [4]result
	)
	asks, results := askBuf[:0], resBuf[:0]
	if len(apps) > len(askBuf) {
		asks, results = make([]ask, 0, len(apps)), make([]result, 0, len(apps))
	}
	for _, ap := range apps {
		cost := int64(ap.limit.Cost)
		if c, ok := l.opts.Costs[route]; ok {
			cost = int64(c)
		}
		if cost <= 0 {
			cost = 1
		}
		asks = append(asks, ask{key: ap.key, limit: ap.limit, cost: cost})
	}
	results = results[:len(asks)]
	// Every counter of the request in one backend call: one Redis round trip.
	known := l.count(ctx, asks, results)
	decisions := all[:0]
	if len(apps) > len(all) {
		decisions = make([]decision, 0, len(apps))
	}
	for i, ap := range apps {
		res := results[i]
		decisions = append(decisions, decision{applied: ap, res: res, known: known})
		d := &decisions[i]
		shadow := ap.limit.Shadow || l.opts.Shadow
		outcome := "allowed"
		if !res.allowed {
			outcome = "limited"
			if shadow {
				outcome = "shadow_limited"
				l.logger.InfoContext(ctx, "rate limit exceeded in shadow mode", "key", ap.key, "limit", ap.limit.policyName())
			} else if refused == nil {
				refused = d
			}
		}
		l.metrics.decisions.WithLabelValues(ap.limit.Scope.String(), groupLabel(ap.limit.RouteGroup), outcome).Inc()
		if known && (tightest == nil || tighter(d, tightest)) {
			tightest = d
		}
	}
	if refused != nil {
		tightest = refused
	}
	if tightest != nil {
		l.setHeaders(ctx, decisions, tightest, refused != nil)
	}
	if refused != nil {
		return refusal(refused)
	}
	return nil
}

// tighter reports whether a is closer to exhaustion than b.
func tighter(a, b *decision) bool {
	if a.res.allowed != b.res.allowed {
		return !a.res.allowed
	}
	return float64(a.res.remaining)/float64(a.limit.burst()) < float64(b.res.remaining)/float64(b.limit.burst())
}

// count asks Redis, or the fallback while Redis is down, for every counter of asks
// at once, answering into out. known is false when the fallback is to let requests
// through uncounted (out then allows everything).
func (l *Limiter) count(ctx context.Context, asks []ask, out []result) (known bool) {
	if l.redis != nil && time.Now().UnixNano() >= l.downUntil.Load() {
		rctx, cancel := context.WithTimeout(ctx, l.opts.RedisTimeout)
		err := l.redis.allow(rctx, asks, out)
		cancel()
		if err == nil {
			if l.down.Load() && l.down.CompareAndSwap(true, false) {
				l.metrics.fallback.Set(0)
				l.logger.InfoContext(ctx, "rate limiting back on Redis")
			}
			return true
		}
		if ctx.Err() != nil {
			// The caller went away; nothing is wrong with Redis.
			allowAll(out)
			return false
		}
		l.redisFailed(ctx, err)
	}
	if l.redis == nil || l.opts.Fallback == FallbackLocal {
		_ = l.local.allow(ctx, asks, out)
		return true
	}
	allowAll(out)
	return false
}

func allowAll(out []result) {
	for i := range out {
		out[i] = result{allowed: true}
	}
}

func (l *Limiter) redisFailed(ctx context.Context, err error) {
	l.metrics.backendErrors.Inc()
	l.downUntil.Store(time.Now().Add(l.opts.CoolDown).UnixNano())
	if l.down.CompareAndSwap(false, true) {
		l.metrics.fallback.Set(1)
		l.logger.ErrorContext(ctx, "Redis unavailable for rate limiting; falling back", "fallback", string(l.opts.Fallback), "err", err)
	}
}

// setHeaders sends the draft RateLimit-Policy and RateLimit headers and the legacy
// X-RateLimit-* ones. Outside a gRPC call (tests calling Allow directly) SetHeader
// fails harmlessly.
func (l *Limiter) setHeaders(ctx context.Context, all []decision, t *decision, refused bool) {
	var policy strings.Builder
	for i := range all {
		d := &all[i]
		if !d.known {
			continue
		}
		if policy.Len() > 0 {
			policy.WriteString(", ")
		}
		fmt.Fprintf(&policy, "%q;q=%d;w=%d", d.limit.policyName(), d.limit.Rate, int64(d.limit.Period/time.Second))
	}
	reset := ceilSeconds(t.res.resetAfter)
	pairs := []string{
		"ratelimit-policy", policy.String(),
		"ratelimit", fmt.Sprintf("%q;r=%d;t=%d", t.limit.policyName(), t.res.remaining, reset),
		"x-ratelimit-limit", strconv.FormatInt(t.limit.Rate, 10),
		"x-ratelimit-remaining", strconv.FormatInt(t.res.remaining, 10),
		"x-ratelimit-reset", strconv.FormatInt(reset, 10),
	}
	if refused {
		pairs = append(pairs, "retry-after", strconv.FormatInt(max(ceilSeconds(t.res.retryAfter), 1), 10))
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(pairs...))
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(math.Ceil(d.Seconds()))
}

// refusal is the RESOURCE_EXHAUSTED status of a refused request.
func refusal(d *decision) error {
	st := status.New(codes.ResourceExhausted, fmt.Sprintf("rate limit exceeded (%d per %s); retry after %s",
		d.limit.Rate, d.limit.Period, d.res.retryAfter.Round(time.Millisecond)))
	md := map[string]string{
		"key":    d.key,
		"limit":  strconv.FormatInt(d.limit.Rate, 10),
		"period": d.limit.Period.String(),
		"scope":  d.limit.Scope.String(),
	}
	if d.limit.ID != "" {
		md["rate_limit_id"] = d.limit.ID
	}
	withDetails, err := st.WithDetails(
		&errdetails.ErrorInfo{Reason: errorsv1.ErrorReason_ERROR_REASON_RATE_LIMITED.String(), Domain: apierr.Domain, Metadata: md},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(d.res.retryAfter)},
	)
	if err != nil {
		return st.Err()
	}
	return withDetails.Err()
}

// State is where a counter stands.
type State struct {
	Key        string
	Limit      Limit
	Remaining  int64
	ResetAfter time.Duration
	RetryAfter time.Duration
}

// ErrUnknownKey is returned by State and Reset for a key no limit of its tenant
// produces.
var ErrUnknownKey = errors.New("ratelimit: no limit governs this key")

// State reports a counter without consuming from it.
func (l *Limiter) State(ctx context.Context, key string) (State, error) {
	lim, err := l.limitOfKey(ctx, key)
	if err != nil {
		return State{}, err
	}
	var res [1]result
	known := l.count(ctx, []ask{{key: key, limit: lim}}, res[:])
	st := State{Key: key, Limit: lim, Remaining: res[0].remaining, ResetAfter: res[0].resetAfter}
	if !known {
		st.Remaining = lim.burst()
	}
	if st.Remaining <= 0 {
		st.RetryAfter = res[0].retryAfter
		if st.RetryAfter == 0 {
			st.RetryAfter = time.Duration(float64(lim.Period) / float64(lim.Rate))
		}
	}
	return st, nil
}

// Reset gives the caller behind key its whole limit back.
func (l *Limiter) Reset(ctx context.Context, key string) error {
	if _, err := l.limitOfKey(ctx, key); err != nil {
		return err
	}
	_ = l.local.reset(ctx, key)
	if l.redis != nil {
		if err := l.redis.reset(ctx, key); err != nil {
			return fmt.Errorf("reset rate limit counter: %w", err)
		}
	}
	return nil
}

// ParsedKey is a counter key taken apart.
type ParsedKey struct {
	Tenant     string
	Scope      Scope
	Subject    string // the role of a role key; the caller for identity and key scopes
	Caller     string
	RouteGroup string
}

// ParseKey takes a key made by Key apart.
func ParseKey(key string) (ParsedKey, bool) {
	tenant, ok := TenantOfKey(key)
	if !ok {
		return ParsedKey{}, false
	}
	parts := strings.Split(key[len(tenant)+3:], ":")
	sc, ok := ParseScope(parts[0])
	if !ok {
		return ParsedKey{}, false
	}
	pk := ParsedKey{Tenant: tenant, Scope: sc, RouteGroup: parts[len(parts)-1]}
	if pk.RouteGroup == "*" {
		pk.RouteGroup = ""
	}
	switch {
	case sc == ScopeTenant && len(parts) == 2:
	case sc == ScopeRole && len(parts) == 4:
		pk.Subject, pk.Caller = parts[1], parts[2]
		if pk.Subject == "*" {
			pk.Subject = ""
		}
	case (sc == ScopeIdentity || sc == ScopeAPIKey) && len(parts) == 3:
		pk.Subject, pk.Caller = parts[1], parts[1]
	default:
		return ParsedKey{}, false
	}
	return pk, true
}

// limitOfKey finds the limit that produced key: the most specific one of the key's
// tenant with the key's scope, subject and route group.
func (l *Limiter) limitOfKey(ctx context.Context, key string) (Limit, error) {
	pk, ok := ParseKey(key)
	if !ok {
		return Limit{}, ErrUnknownKey
	}
	best, score := Limit{}, -1
	for _, lim := range l.limitsFor(ctx, pk.Tenant) {
		if lim.Scope != pk.Scope || lim.RouteGroup != pk.RouteGroup {
			continue
		}
		if lim.Subject != "" && lim.Subject != pk.Subject {
			continue
		}
		if pk.Scope == ScopeRole && lim.Subject != pk.Subject {
			continue
		}
		if s := specificity(lim); s > score {
			best, score = lim, s
		}
	}
	if score < 0 {
		return Limit{}, ErrUnknownKey
	}
	return best, nil
}

func groupLabel(g string) string {
	if g == "" {
		return "*"
	}
	return g
}

// Chain runs several limiters (the rate limiter, then the quota checker) as one
// grpcserver.RateLimiter: the first refusal wins.
type Chain []interface {
	Allow(ctx context.Context, p *auth.Principal, a authz.Access) error
}

// Allow implements grpcserver.RateLimiter.
func (c Chain) Allow(ctx context.Context, p *auth.Principal, a authz.Access) error {
	for _, l := range c {
		if l == nil {
			continue
		}
		if err := l.Allow(ctx, p, a); err != nil {
			return err
		}
	}
	return nil
}
