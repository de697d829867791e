package policyengine

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Limits and defaults.
const (
	// DefaultMaxSourceBytes is the largest policy source accepted.
	DefaultMaxSourceBytes = 64 << 10
	// DefaultEvalTimeout bounds the evaluation of one decision.
	DefaultEvalTimeout = 200 * time.Millisecond
	// DefaultCacheSize bounds the decisions remembered per Set.
	DefaultCacheSize = 10000
	// maxIndexEntries bounds the (resource, action) index, which callers of the test
	// endpoint could otherwise grow with made-up actions.
	maxIndexEntries = 4096
)

// Options tune compilation and evaluation; the zero value uses the defaults.
type Options struct {
	MaxSourceBytes int
	EvalTimeout    time.Duration
	// CacheSize bounds the decision cache; negative disables it.
	CacheSize int
	Logger    *slog.Logger
	Metrics   *Metrics
}

func (o Options) withDefaults() Options {
	if o.MaxSourceBytes <= 0 {
		o.MaxSourceBytes = DefaultMaxSourceBytes
	}
	if o.EvalTimeout <= 0 {
		o.EvalTimeout = DefaultEvalTimeout
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// compiled is a policy ready to evaluate.
type compiled struct {
	Policy
	match  *query
	reason *query
	always bool  // a Rego policy whose match is the constant true: no evaluation needed
	rule   any   // JSON Logic rule
	broken error // set when the stored source no longer compiles
	reads  reads // what of input the condition can look at
	// ownership marks the shipped user and agent baselines, which read the
	// resource's owner only to say "its own": services enforce that rule in their
	// queries, so it never makes their rows need a decision each.
	ownership bool
	// native is a shipped built-in's condition in Go (see nativeBaseline).
	native func(*Input) bool
}

// scope is the policies in scope for one (resource, action) pair, in order of
// precedence, with what they read.
type scope struct {
	policies []*compiled
	// row: some policy other than an ownership baseline reads the resource beyond
	// its type, so decisions on two resources of the type can differ.
	row bool
	// claims: some policy reads the principal's claims.
	claims bool
}

// Set is a tenant's compiled policies. It is safe for concurrent use and immutable
// apart from its caches.
type Set struct {
	tenant   string
	version  string
	policies []*compiled // in order of precedence
	opts     Options
	cache    *decisionCache

	indexMu sync.RWMutex
	index   map[indexKey]*scope
}

// Tenant is the tenant the set belongs to.
func (s *Set) Tenant() string { return s.tenant }

// Version identifies the policies the set was compiled from: it changes whenever any
// policy does.
func (s *Set) Version() string { return s.version }

// Len is the number of enabled policies in the set.
func (s *Set) Len() int { return len(s.policies) }

// Validate compiles one policy alone and reports what is wrong with it: a
// *SourceError for its source, a plain error for its other fields.
func Validate(p Policy, opts Options) error {
	opts = opts.withDefaults()
	if err := checkFields(p); err != nil {
		return err
	}
	switch p.Language {
	case JSONLogic:
		if len(p.Source) > opts.MaxSourceBytes {
			return tooLarge(p, opts)
		}
		_, err := parseJSONLogic(p.Source)
		return err
	case Rego:
		m, err := parseRego(p, "p0", opts)
		if err != nil {
			return err
		}
		c := ast.NewCompiler().WithCapabilities(sandboxCapabilities).WithEnablePrintStatements(false)
		if c.Compile(map[string]*ast.Module{"p0": m}); c.Failed() {
			return regoErrors(c.Errors)
		}
		return nil
	}
	return fmt.Errorf("unknown language %q", p.Language)
}

func checkFields(p Policy) error {
	switch {
	case p.Effect != Allow && p.Effect != Deny:
		return fmt.Errorf("effect must be allow or deny, got %q", p.Effect)
	case p.Resource == "":
		return errors.New("resource is required")
	case len(p.Actions) == 0:
		return errors.New("at least one action is required")
	}
	return nil
}

func tooLarge(p Policy, opts Options) error {
	return &SourceError{Description: fmt.Sprintf("1:1: policy_too_large: the source has %d bytes, at most %d are allowed", len(p.Source), opts.MaxSourceBytes)}
}

// parseRego parses a module in Rego v1 syntax, checks the sandbox rules and moves
// it to its own package under data.manushya, so no two policies share rules.
func parseRego(p Policy, pkg string, opts Options) (*ast.Module, error) {
	if len(p.Source) > opts.MaxSourceBytes {
		return nil, tooLarge(p, opts)
	}
	m, err := ast.ParseModuleWithOpts(pkg+".rego", p.Source, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, regoErrors(err)
	}
	if m == nil {
		return nil, &SourceError{Description: "1:1: rego_parse_error: empty module"}
	}
	if err := checkSandbox(m); err != nil {
		return nil, err
	}
	hasMatch := slices.ContainsFunc(m.Rules, func(r *ast.Rule) bool { return r.Head.Name == "match" || r.Head.Ref().String() == "match" })
	if !hasMatch {
		return nil, positioned(m.Package.Location, "rego_type_error", "the policy must define a boolean rule named match")
	}
	m.Package.Path = ast.Ref{ast.DefaultRootDocument, ast.StringTerm("manushya"), ast.StringTerm(pkg)}
	return m, nil
}

// Compile builds a tenant's Set from its policies; disabled ones are left out. A
// stored policy that no longer compiles does not stop the others: it is kept as
// broken, and evaluating it fails (so a broken deny still denies).
func Compile(ctx context.Context, tenant string, policies []Policy, opts Options) (*Set, error) {
	opts = opts.withDefaults()
	s := &Set{tenant: tenant, opts: opts, index: map[indexKey]*scope{}, version: versionOf(policies)}
	if opts.CacheSize > 0 {
		s.cache = newDecisionCache(opts.CacheSize)
	}
	modules := map[string]*ast.Module{}
	pkgs := map[*compiled]string{}
	for i, p := range policies {
		if !p.Enabled {
			continue
		}
		c := &compiled{Policy: p}
		c.Actions = slices.Clone(p.Actions)
		c.Roles = slices.Clone(p.Roles)
		if err := checkFields(p); err != nil {
			c.broken = err
		}
		switch {
		case c.broken != nil:
		case p.Language == JSONLogic:
			if len(p.Source) > opts.MaxSourceBytes {
				c.broken = tooLarge(p, opts)
			} else if c.rule, c.broken = parseJSONLogic(p.Source); c.broken == nil {
				c.reads = jsonLogicReads(c.rule)
			}
		case p.Language == Rego:
			pkg := fmt.Sprintf("p%d", i)
			m, err := parseRego(p, pkg, opts)
			if err != nil {
				c.broken = err
			} else {
				modules[pkg+".rego"] = m
				pkgs[c] = pkg
			}
		default:
			c.broken = fmt.Errorf("unknown language %q", p.Language)
		}
		s.policies = append(s.policies, c)
	}

	if len(modules) > 0 {
		compiler, err := compileModules(modules, pkgs)
		if err != nil {
			return nil, err
		}
		// One read transaction on an empty store, open for the Set's life: policies
		// read no data, and nothing ever writes.
		store := inmem.New()
		txn, err := store.NewTransaction(ctx)
		if err != nil {
			return nil, fmt.Errorf("open policy store: %w", err)
		}
		for c, pkg := range pkgs {
			if c.broken != nil {
				continue
			}
			if c.match, err = prepare(ctx, compiler, store, txn, "data.manushya."+pkg+".match"); err != nil {
				c.broken = err
				continue
			}
			if c.reason, err = prepare(ctx, compiler, store, txn, "data.manushya."+pkg+".reason"); err != nil {
				c.broken = err
				continue
			}
			c.always = constantTrue(modules[pkg+".rego"])
			// The compiled module has every reference resolved (a bare "input"
			// included), so reading it is exact where the parsed one is not.
			if cm := compiler.Modules[pkg+".rego"]; cm != nil {
				c.reads = regoReads(cm)
			} else {
				c.reads = readsAll
			}
			c.ownership = isOwnershipBaseline(c.Policy)
			c.native = nativeBaseline(c.Policy)
		}
	}
	for _, c := range s.policies {
		if c.broken != nil {
			opts.Logger.WarnContext(ctx, "stored policy does not compile; it fails closed",
				"tenant", tenant, "policy", c.Name, "policy_id", c.ID, "err", c.broken)
		}
	}
	slices.SortStableFunc(s.policies, precedence)
	return s, nil
}

// compileModules compiles every module together; when that fails it finds the
// culprits alone, marks them broken and compiles the rest.
func compileModules(modules map[string]*ast.Module, pkgs map[*compiled]string) (*ast.Compiler, error) {
	c := ast.NewCompiler().WithCapabilities(sandboxCapabilities).WithEnablePrintStatements(false)
	if c.Compile(modules); !c.Failed() {
		return c, nil
	}
	for p, pkg := range pkgs {
		name := pkg + ".rego"
		one := ast.NewCompiler().WithCapabilities(sandboxCapabilities).WithEnablePrintStatements(false)
		if one.Compile(map[string]*ast.Module{name: modules[name]}); one.Failed() {
			p.broken = regoErrors(one.Errors)
			delete(modules, name)
		}
	}
	c = ast.NewCompiler().WithCapabilities(sandboxCapabilities).WithEnablePrintStatements(false)
	if c.Compile(modules); c.Failed() {
		return nil, fmt.Errorf("compile policies: %w", c.Errors)
	}
	return c, nil
}

// query is one compiled query on a Set's compiler, run with topdown directly:
// going through rego.PreparedEvalQuery costs a storage transaction, metrics, a
// cancellation goroutine and a conversion of the result to Go per evaluation.
type query struct {
	body     ast.Body
	compiler *ast.Compiler
	store    storage.Store
	txn      storage.Transaction
	result   ast.Var
}

// noMetrics spares each evaluation a metrics registry nobody reads.
var noMetrics = metrics.NoOp()

func prepare(ctx context.Context, c *ast.Compiler, store storage.Store, txn storage.Transaction, ref string) (*query, error) {
	body, err := ast.ParseBody("__result__ = " + ref)
	if err != nil {
		return nil, err
	}
	compiled, err := c.QueryCompiler().Compile(body)
	if err != nil {
		return nil, fmt.Errorf("compile query %s: %w", ref, err)
	}
	return &query{body: compiled, compiler: c, store: store, txn: txn, result: ast.Var("__result__")}, nil
}

// eval returns the query's value, nil when undefined.
func (q *query) eval(ctx context.Context, input ast.Value, cancel topdown.Cancel) (ast.Value, error) {
	var out ast.Value
	err := topdown.NewQuery(q.body).
		WithCompiler(q.compiler).
		WithStore(q.store).
		WithTransaction(q.txn).
		WithInput(ast.NewTerm(input)).
		WithCancel(cancel).
		WithMetrics(noMetrics).
		WithStrictBuiltinErrors(true).
		WithEarlyExit(true).
		Iter(ctx, func(r topdown.QueryResult) error {
			if t := r[q.result]; t != nil {
				out = t.Value
			}
			return nil
		})
	return out, err
}

// constantTrue reports whether a module's only rule is "match := true" (or "match
// if true"): the built-in admin, user and agent policies, which need no evaluation.
func constantTrue(m *ast.Module) bool {
	if len(m.Rules) == 0 {
		return false
	}
	for _, r := range m.Rules {
		name := r.Head.Ref().String()
		switch name {
		case "reason":
			continue
		case "match":
			if r.Default || r.Else != nil || r.Head.Value == nil || !ast.Boolean(true).Equal(r.Head.Value.Value) || len(r.Body) != 1 {
				return false
			}
			t, ok := r.Body[0].Terms.(*ast.Term)
			if !ok || r.Body[0].Negated || len(r.Body[0].With) > 0 || !ast.Boolean(true).Equal(t.Value) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// precedence orders policies as decisions read them: highest priority first, deny
// before allow at equal priority, then by name for a stable order.
func precedence(a, b *compiled) int {
	if a.Priority != b.Priority {
		return int(b.Priority - a.Priority)
	}
	if a.Effect != b.Effect {
		if a.Effect == Deny {
			return -1
		}
		return 1
	}
	// At equal priority and effect any match gives the same decision, so the
	// cheapest go first: constant policies, then JSON Logic, then Rego.
	if ca, cb := a.cost(), b.cost(); ca != cb {
		return ca - cb
	}
	return strings.Compare(a.Name, b.Name)
}

func (c *compiled) cost() int {
	switch {
	case c.always, c.native != nil:
		return 0
	case c.Language == JSONLogic:
		return 1
	}
	return 2
}

// versionOf fingerprints the enabled policies' contents.
func versionOf(policies []Policy) string {
	h := sha256.New()
	var n [8]byte
	for _, p := range policies {
		if !p.Enabled {
			continue
		}
		for _, s := range []string{p.ID, p.Name, string(p.Language), p.Source, p.Resource, string(p.Effect),
			strings.Join(p.Actions, ","), strings.Join(p.Roles, ",")} {
			binary.BigEndian.PutUint64(n[:], uint64(len(s)))
			h.Write(n[:])
			h.Write([]byte(s))
		}
		binary.BigEndian.PutUint64(n[:], uint64(p.Priority)<<32|uint64(uint32(p.Version)))
		h.Write(n[:])
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// applicable returns the policies whose resource and actions cover the pair, in
// order of precedence.
func (s *Set) applicable(resource, action string) []*compiled {
	return s.scopeOf(resource, action).policies
}

// scopeOf returns the pair's scope, indexed on first use.
func (s *Set) scopeOf(resource, action string) *scope {
	key := indexKey{resource, action}
	s.indexMu.RLock()
	sc, ok := s.index[key]
	s.indexMu.RUnlock()
	if ok {
		return sc
	}
	sc = &scope{}
	for _, p := range s.policies {
		if (p.Resource == Wildcard || p.Resource == resource) &&
			(slices.Contains(p.Actions, Wildcard) || slices.Contains(p.Actions, action)) {
			sc.policies = append(sc.policies, p)
			sc.row = sc.row || (p.reads.row && !p.ownership)
			sc.claims = sc.claims || p.reads.claims
		}
	}
	s.indexMu.Lock()
	if len(s.index) < maxIndexEntries {
		s.index[key] = sc
	}
	s.indexMu.Unlock()
	return sc
}

// indexKey is a (resource, action) pair; a struct key hashes both strings without
// building a joined one per decision.
type indexKey struct{ resource, action string }

// PerResource reports whether decisions on resources of the type for principals
// holding roles can differ from one resource to another, beyond the ownership the
// baselines describe: some policy in scope reads the resource's id, owner, tenant
// or attributes. Services ask it before deciding each row of a listing.
func (s *Set) PerResource(resource, action string, roles []string) bool {
	sc := s.scopeOf(resource, action)
	if !sc.row {
		return false
	}
	for _, p := range sc.policies {
		if p.reads.row && !p.ownership && rolesCover(p.Roles, roles) {
			return true
		}
	}
	return false
}

// readsClaims reports whether some policy in the pair's scope reads the
// principal's claims, which are loaded only then.
func (s *Set) readsClaims(resource, action string) bool {
	return s.scopeOf(resource, action).claims
}
