package module

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// All is the target that stands for every module that is not hidden.
const All = "all"

// DefaultStopTimeout bounds how long one module may take to stop, so a module that
// ignores its context cannot keep the process from exiting.
const DefaultStopTimeout = 30 * time.Second

// Service is what a module's Init builds.
//
// Start must return once the service is running (a server listening, a consumer
// subscribed); long-running work belongs in goroutines that Stop ends. The context
// given to Start is cancelled when shutdown begins, so it must not be kept for
// background work. A Start that fails must release what it took: the manager stops
// only the modules whose Start succeeded.
type Service interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// Failer is implemented by services that can fail after Start returned, such as a
// server whose listener dies. A value received from Failed (or the channel being
// closed) before shutdown begins makes the manager shut everything down.
type Failer interface {
	Failed() <-chan error
}

// Funcs adapts a pair of functions to Service; a nil function does nothing.
type Funcs struct {
	StartFunc func(ctx context.Context) error
	StopFunc  func(ctx context.Context) error
}

// Start calls StartFunc when it is set.
func (f Funcs) Start(ctx context.Context) error {
	if f.StartFunc == nil {
		return nil
	}
	return f.StartFunc(ctx)
}

// Stop calls StopFunc when it is set.
func (f Funcs) Stop(ctx context.Context) error {
	if f.StopFunc == nil {
		return nil
	}
	return f.StopFunc(ctx)
}

// Definition declares a module.
type Definition struct {
	// Name is what -target accepts and what other modules list in Deps.
	Name string
	// Deps are the modules that must be running before this one is initialised.
	Deps []string
	// Hidden marks infrastructure (database, bus, servers): it runs only because a
	// target depends on it and cannot be asked for on its own.
	Hidden bool
	// Init builds the module once its dependencies run. It may return a nil Service
	// when there is nothing to start or stop; a nil Init does the same, which suits
	// modules that only group others.
	Init func(ctx context.Context) (Service, error)
}

// Option configures a Manager.
type Option func(*Manager)

// WithStopTimeout sets how long each module may take to stop (DefaultStopTimeout
// otherwise).
func WithStopTimeout(d time.Duration) Option {
	return func(m *Manager) { m.stopTimeout = d }
}

// WithShutdownDelay waits d after readiness turns false and before the first module
// stops, giving load balancers time to notice the failing readiness probe and stop
// routing new requests here.
func WithShutdownDelay(d time.Duration) Option {
	return func(m *Manager) { m.shutdownDelay = d }
}

type state int

const (
	stateNew state = iota
	stateStarting
	stateRunning
	stateStopping
	stateStopped
)

type running struct {
	name string
	svc  Service
}

type failure struct {
	name string
	err  error
}

// Manager starts registered modules in dependency order and stops them in reverse.
// A Manager runs once: after Stop it cannot be started again.
type Manager struct {
	logger        *slog.Logger
	stopTimeout   time.Duration
	shutdownDelay time.Duration

	ready atomic.Bool
	// failures holds the first runtime failure; later ones are only logged.
	failures chan failure
	// shutdown is closed when shutdown begins, ending the failure watchers.
	shutdown chan struct{}

	mu         sync.Mutex
	defs       map[string]Definition
	state      state
	started    []running
	onReady    []func()
	onShutdown []func()
}

// NewManager returns an empty Manager that logs to logger (nil discards).
func NewManager(logger *slog.Logger, opts ...Option) *Manager {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		logger:      logger,
		stopTimeout: DefaultStopTimeout,
		failures:    make(chan failure, 1),
		shutdown:    make(chan struct{}),
		defs:        make(map[string]Definition),
	}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Register adds a module. It panics on an empty, reserved or duplicate name, and
// after Start: these are wiring mistakes in the composition root, not runtime
// conditions.
func (m *Manager) Register(d Definition) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case d.Name == "":
		panic("module: Register with an empty name")
	case d.Name == All:
		panic(fmt.Sprintf("module: %q is reserved", All))
	case m.state != stateNew:
		panic(fmt.Sprintf("module: Register(%q) after Start", d.Name))
	}
	if _, dup := m.defs[d.Name]; dup {
		panic(fmt.Sprintf("module: %q registered twice", d.Name))
	}
	d.Deps = slices.Clone(d.Deps)
	m.defs[d.Name] = d
}

// Targets lists the names -target accepts (besides All), sorted.
func (m *Manager) Targets() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.targetsLocked()
}

func (m *Manager) targetsLocked() []string {
	var names []string
	for name, d := range m.defs {
		if !d.Hidden {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// Resolve expands targets (All meaning every target) to the modules they need, in
// start order: each module after its dependencies, ties broken by name, so the order
// does not depend on how the targets were listed.
func (m *Manager) Resolve(targets []string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()

	if len(targets) == 0 {
		return nil, errors.New("module: no target given")
	}
	valid := m.targetsLocked()
	roots := make(map[string]bool)
	for _, t := range targets {
		switch d, ok := m.defs[t]; {
		case t == All:
			for _, name := range valid {
				roots[name] = true
			}
		case ok && !d.Hidden:
			roots[t] = true
		default:
			return nil, fmt.Errorf("module: unknown target %q (valid: %s)", t,
				strings.Join(append([]string{All}, valid...), ", "))
		}
	}

	// Depth-first walk to collect the closure and to name a cycle precisely.
	const (
		unseen = iota
		visiting
		visited
	)
	color := make(map[string]int)
	var path []string
	var visit func(name string) error
	visit = func(name string) error {
		switch color[name] {
		case visited:
			return nil
		case visiting:
			i := slices.Index(path, name)
			cycle := append(slices.Clone(path[i:]), name)
			return fmt.Errorf("module: dependency cycle: %s", strings.Join(cycle, " -> "))
		}
		color[name] = visiting
		path = append(path, name)
		deps := slices.Sorted(slices.Values(m.defs[name].Deps))
		for _, dep := range deps {
			if _, ok := m.defs[dep]; !ok {
				return fmt.Errorf("module: %q depends on unknown module %q", name, dep)
			}
			if err := visit(dep); err != nil {
				return err
			}
		}
		path = path[:len(path)-1]
		color[name] = visited
		return nil
	}
	for _, root := range slices.Sorted(maps.Keys(roots)) {
		if err := visit(root); err != nil {
			return nil, err
		}
	}

	// Kahn's algorithm, always taking the smallest ready name, so the order is the
	// same on every run and in every process of a distributed deployment.
	pending := make(map[string]int, len(color))
	for name := range color {
		pending[name] = len(unique(m.defs[name].Deps))
	}
	order := make([]string, 0, len(pending))
	for len(pending) > 0 {
		var next string
		for name, n := range pending {
			if n == 0 && (next == "" || name < next) {
				next = name
			}
		}
		delete(pending, next)
		order = append(order, next)
		for name := range pending {
			if slices.Contains(m.defs[name].Deps, next) {
				pending[name]--
			}
		}
	}
	return order, nil
}

// OnReady registers fn to run once every module has started. It runs at once if
// the manager is already running.
func (m *Manager) OnReady(fn func()) {
	m.mu.Lock()
	if m.state == stateRunning {
		m.mu.Unlock()
		fn()
		return
	}
	m.onReady = append(m.onReady, fn)
	m.mu.Unlock()
}

// OnShutdown registers fn to run when shutdown begins: after Ready turns false and
// before any module stops (for example to set the gRPC health status to
// NOT_SERVING). It runs at once if shutdown has already begun.
func (m *Manager) OnShutdown(fn func()) {
	m.mu.Lock()
	if m.state >= stateStopping {
		m.mu.Unlock()
		fn()
		return
	}
	m.onShutdown = append(m.onShutdown, fn)
	m.mu.Unlock()
}

// Ready reports whether every module has started and shutdown has not begun; it
// backs the /readyz endpoint.
func (m *Manager) Ready() bool {
	return m.ready.Load()
}

// Run starts targets, waits until ctx is done or a module fails, then stops every
// started module in reverse order. It returns the error that ended the run, or the
// first error from stopping; a cancelled ctx is a normal shutdown, not an error.
func (m *Manager) Run(ctx context.Context, targets []string) error {
	if err := m.Start(ctx, targets); err != nil {
		if ctx.Err() != nil {
			// Interrupted while starting: what started has been stopped already.
			return nil
		}
		return err
	}

	var cause error
	select {
	case <-ctx.Done():
		m.logger.InfoContext(ctx, "shutdown requested")
	case f := <-m.failures:
		m.logger.ErrorContext(ctx, "module failed, shutting down", "module", f.name, "err", f.err)
		cause = fmt.Errorf("module %s failed: %w", f.name, f.err)
	}
	stopErr := m.Stop(context.WithoutCancel(ctx))
	if cause != nil {
		return cause
	}
	return stopErr
}

// Start initialises and starts the modules targets need, one at a time in
// dependency order. If one fails, the modules already started are stopped in
// reverse order and the failure is returned.
func (m *Manager) Start(ctx context.Context, targets []string) error {
	order, err := m.Resolve(targets)
	if err != nil {
		return err
	}
	m.mu.Lock()
	if m.state != stateNew {
		m.mu.Unlock()
		return errors.New("module: manager already started")
	}
	m.state = stateStarting
	m.mu.Unlock()

	m.logger.InfoContext(ctx, "starting modules", "modules", order)
	if err := m.startAll(ctx, order); err != nil {
		if ctx.Err() == nil {
			m.logger.ErrorContext(ctx, "startup failed, stopping started modules", "err", err)
		}
		if stopErr := m.stop(context.WithoutCancel(ctx)); stopErr != nil {
			m.logger.ErrorContext(ctx, "stop after failed startup", "err", stopErr)
		}
		return err
	}

	m.mu.Lock()
	m.state = stateRunning
	m.ready.Store(true)
	hooks := slices.Clone(m.onReady)
	m.mu.Unlock()
	for _, fn := range hooks {
		fn()
	}
	m.logger.InfoContext(ctx, "all modules started", "modules", len(order))
	return nil
}

func (m *Manager) startAll(ctx context.Context, order []string) error {
	for _, name := range order {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("module: start aborted before %s: %w", name, err)
		}
		m.mu.Lock()
		def := m.defs[name]
		m.mu.Unlock()

		if def.Init == nil {
			continue
		}
		svc, err := def.Init(ctx)
		if err != nil {
			return fmt.Errorf("init module %s: %w", name, err)
		}
		if svc == nil {
			continue
		}
		if err := svc.Start(ctx); err != nil {
			return fmt.Errorf("start module %s: %w", name, err)
		}
		m.mu.Lock()
		m.started = append(m.started, running{name: name, svc: svc})
		m.mu.Unlock()
		if f, ok := svc.(Failer); ok {
			go m.watch(name, f.Failed())
		}
		m.logger.InfoContext(ctx, "module started", "module", name)
	}
	return nil
}

// watch forwards a runtime failure of one module to Run, until shutdown begins.
func (m *Manager) watch(name string, failed <-chan error) {
	select {
	case err, ok := <-failed:
		if !ok || err == nil {
			err = errors.New("stopped unexpectedly")
		}
		select {
		case m.failures <- failure{name: name, err: err}:
		default:
			m.logger.Error("module failed", "module", name, "err", err)
		}
	case <-m.shutdown:
	}
}

// Stop marks the manager not ready, runs the OnShutdown hooks, and stops the
// started modules in reverse order, each within the stop timeout. It returns the
// first error and logs the others. Calling Stop again, or before Start, does
// nothing; calling it while Start is running is an error (cancel Start's context
// instead).
func (m *Manager) Stop(ctx context.Context) error {
	m.mu.Lock()
	st := m.state
	m.mu.Unlock()
	if st == stateStarting {
		return errors.New("module: Stop called while starting")
	}
	return m.stop(ctx)
}

func (m *Manager) stop(ctx context.Context) error {
	m.mu.Lock()
	if m.state >= stateStopping {
		m.mu.Unlock()
		return nil
	}
	wasRunning := m.state == stateRunning
	m.state = stateStopping
	m.ready.Store(false)
	close(m.shutdown)
	hooks := slices.Clone(m.onShutdown)
	started := slices.Clone(m.started)
	m.mu.Unlock()

	for _, fn := range hooks {
		fn()
	}
	if wasRunning && m.shutdownDelay > 0 {
		m.logger.InfoContext(ctx, "not ready, waiting before stopping modules", "delay", m.shutdownDelay)
		t := time.NewTimer(m.shutdownDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}

	var first error
	for _, r := range slices.Backward(started) {
		if err := m.stopOne(ctx, r); err != nil {
			m.logger.ErrorContext(ctx, "module stop failed", "module", r.name, "err", err)
			if first == nil {
				first = err
			}
			continue
		}
		m.logger.InfoContext(ctx, "module stopped", "module", r.name)
	}

	m.mu.Lock()
	m.state = stateStopped
	m.mu.Unlock()
	return first
}

// stopOne stops one module but gives up waiting once the timeout passes, so a
// module that ignores its context delays shutdown by at most the timeout.
func (m *Manager) stopOne(ctx context.Context, r running) error {
	ctx, cancel := context.WithTimeout(ctx, m.stopTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.svc.Stop(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("stop module %s: %w", r.name, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop module %s: %w", r.name, ctx.Err())
	}
}

func unique(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}
