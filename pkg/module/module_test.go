package module_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/module"
)

// recorder collects lifecycle events from test modules in the order they happen.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

type testBundle struct {
	m   *module.Manager
	rec *recorder
}

// setup registers a diamond: app needs left and right, which both need the hidden
// base; tool is an independent target.
func setup(t *testing.T, opts ...module.Option) *testBundle {
	t.Helper()
	b := &testBundle{m: module.NewManager(nil, opts...), rec: &recorder{}}
	b.register("base", true, nil)
	b.register("left", false, []string{"base"})
	b.register("right", false, []string{"base"})
	b.register("app", false, []string{"right", "left"})
	b.register("tool", false, nil)
	return b
}

func (b *testBundle) register(name string, hidden bool, deps []string) {
	b.registerWith(name, hidden, deps, nil, nil)
}

func (b *testBundle) registerWith(name string, hidden bool, deps []string, startErr error, stop func(ctx context.Context) error) {
	b.m.Register(module.Definition{
		Name:   name,
		Deps:   deps,
		Hidden: hidden,
		Init: func(context.Context) (module.Service, error) {
			b.rec.add("init " + name)
			return module.Funcs{
				StartFunc: func(context.Context) error {
					b.rec.add("start " + name)
					return startErr
				},
				StopFunc: func(ctx context.Context) error {
					b.rec.add("stop " + name)
					if stop != nil {
						return stop(ctx)
					}
					return nil
				},
			}, nil
		},
	})
}

func TestResolve(t *testing.T) {
	t.Parallel()
	b := setup(t)

	require.Equal(t, []string{"app", "left", "right", "tool"}, b.m.Targets())

	order, err := b.m.Resolve([]string{"app"})
	require.NoError(t, err)
	require.Equal(t, []string{"base", "left", "right", "app"}, order)

	order, err = b.m.Resolve([]string{"all"})
	require.NoError(t, err)
	require.Equal(t, []string{"base", "left", "right", "app", "tool"}, order)

	// The order depends on the set of targets, not on how they were listed.
	a, err := b.m.Resolve([]string{"right", "tool", "left"})
	require.NoError(t, err)
	c, err := b.m.Resolve([]string{"left", "right", "tool", "left"})
	require.NoError(t, err)
	require.Equal(t, a, c)
}

func TestResolveErrors(t *testing.T) {
	t.Parallel()

	t.Run("unknown target", func(t *testing.T) {
		t.Parallel()
		_, err := setup(t).m.Resolve([]string{"app", "nope"})
		require.EqualError(t, err, `module: unknown target "nope" (valid: all, app, left, right, tool)`)
	})
	t.Run("hidden module is not a target", func(t *testing.T) {
		t.Parallel()
		_, err := setup(t).m.Resolve([]string{"base"})
		require.ErrorContains(t, err, `unknown target "base"`)
	})
	t.Run("no target", func(t *testing.T) {
		t.Parallel()
		_, err := setup(t).m.Resolve(nil)
		require.Error(t, err)
	})
	t.Run("unknown dependency", func(t *testing.T) {
		t.Parallel()
		m := module.NewManager(nil)
		m.Register(module.Definition{Name: "a", Deps: []string{"ghost"}})
		_, err := m.Resolve([]string{"a"})
		require.EqualError(t, err, `module: "a" depends on unknown module "ghost"`)
	})
	t.Run("cycle", func(t *testing.T) {
		t.Parallel()
		m := module.NewManager(nil)
		m.Register(module.Definition{Name: "a", Deps: []string{"b"}})
		m.Register(module.Definition{Name: "b", Deps: []string{"c"}, Hidden: true})
		m.Register(module.Definition{Name: "c", Deps: []string{"a"}, Hidden: true})
		_, err := m.Resolve([]string{"all"})
		require.EqualError(t, err, "module: dependency cycle: a -> b -> c -> a")
	})
}

func TestRegisterPanics(t *testing.T) {
	t.Parallel()
	m := module.NewManager(nil)
	m.Register(module.Definition{Name: "a"})
	require.Panics(t, func() { m.Register(module.Definition{Name: "a"}) })
	require.Panics(t, func() { m.Register(module.Definition{Name: module.All}) })
	require.Panics(t, func() { m.Register(module.Definition{}) })
}

func TestStartStopOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()

	require.NoError(t, b.m.Start(ctx, []string{"app"}))
	require.NoError(t, b.m.Stop(ctx))
	require.Equal(t, []string{
		"init base", "start base",
		"init left", "start left",
		"init right", "start right",
		"init app", "start app",
		"stop app", "stop right", "stop left", "stop base",
	}, b.rec.get())

	// A second Stop is a no-op.
	require.NoError(t, b.m.Stop(ctx))
	require.Len(t, b.rec.get(), 12)
}

func TestStartFailureStopsStartedInReverse(t *testing.T) {
	t.Parallel()
	b := &testBundle{m: module.NewManager(nil), rec: &recorder{}}
	b.register("base", true, nil)
	b.register("left", false, []string{"base"})
	b.registerWith("right", false, []string{"base"}, errors.New("port in use"), nil)
	b.register("app", false, []string{"left", "right"})

	err := b.m.Start(t.Context(), []string{"app"})
	require.EqualError(t, err, "start module right: port in use")
	require.False(t, b.m.Ready())
	// right failed to start, so it is not stopped; app was never initialised.
	require.Equal(t, []string{
		"init base", "start base",
		"init left", "start left",
		"init right", "start right",
		"stop left", "stop base",
	}, b.rec.get())
}

func TestInitFailure(t *testing.T) {
	t.Parallel()
	b := &testBundle{m: module.NewManager(nil), rec: &recorder{}}
	b.register("base", true, nil)
	b.m.Register(module.Definition{
		Name: "app",
		Deps: []string{"base"},
		Init: func(context.Context) (module.Service, error) {
			return nil, errors.New("bad config")
		},
	})

	err := b.m.Run(t.Context(), []string{"app"})
	require.EqualError(t, err, "init module app: bad config")
	require.Equal(t, []string{"init base", "start base", "stop base"}, b.rec.get())
}

func TestReadyTransitions(t *testing.T) {
	t.Parallel()
	b := &testBundle{m: module.NewManager(nil), rec: &recorder{}}
	m := b.m
	b.registerWith("server", true, nil, nil, func(context.Context) error {
		// The server drains with readiness already false.
		b.rec.add("ready during stop: " + boolString(m.Ready()))
		return nil
	})
	m.Register(module.Definition{
		Name: "svc",
		Deps: []string{"server"},
		Init: func(context.Context) (module.Service, error) {
			return module.Funcs{StartFunc: func(context.Context) error {
				b.rec.add("ready while starting: " + boolString(m.Ready()))
				return nil
			}}, nil
		},
	})
	m.OnReady(func() { b.rec.add("on ready: " + boolString(m.Ready())) })
	m.OnShutdown(func() { b.rec.add("on shutdown: " + boolString(m.Ready())) })

	require.False(t, m.Ready())
	require.NoError(t, m.Start(t.Context(), []string{"svc"}))
	require.True(t, m.Ready())
	require.NoError(t, m.Stop(t.Context()))
	require.False(t, m.Ready())

	require.Equal(t, []string{
		"init server", "start server",
		"ready while starting: false",
		"on ready: true",
		"on shutdown: false",
		"stop server", "ready during stop: false",
	}, b.rec.get())
}

func TestRunUntilCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	b.m.OnReady(cancel)

	require.NoError(t, b.m.Run(ctx, []string{"tool", "left"}))
	require.Equal(t, []string{
		"init base", "start base",
		"init left", "start left",
		"init tool", "start tool",
		"stop tool", "stop left", "stop base",
	}, b.rec.get())
}

func TestRunCancelledWhileStarting(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	b.m.Register(module.Definition{
		Name: "interrupt",
		Deps: []string{"left"},
		Init: func(context.Context) (module.Service, error) {
			cancel()
			return nil, nil
		},
	})
	b.register("late", false, []string{"interrupt"})

	require.NoError(t, b.m.Run(ctx, []string{"late"}))
	require.Equal(t, []string{
		"init base", "start base",
		"init left", "start left",
		"stop left", "stop base",
	}, b.rec.get())
}

// failing is a service that can fail after it started.
type failing struct {
	module.Funcs
	failed chan error
}

func (f failing) Failed() <-chan error { return f.failed }

func TestRunStopsWhenModuleFails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	failed := make(chan error, 1)
	b.m.Register(module.Definition{
		Name: "server",
		Deps: []string{"left"},
		Init: func(context.Context) (module.Service, error) {
			return failing{Funcs: module.Funcs{StopFunc: func(context.Context) error {
				b.rec.add("stop server")
				return nil
			}}, failed: failed}, nil
		},
	})
	b.m.OnReady(func() { failed <- errors.New("listener closed") })

	err := b.m.Run(t.Context(), []string{"server"})
	require.EqualError(t, err, "module server failed: listener closed")
	require.Equal(t, []string{
		"init base", "start base",
		"init left", "start left",
		"stop server", "stop left", "stop base",
	}, b.rec.get())
}

func TestStopTimeoutMovesOn(t *testing.T) {
	t.Parallel()
	b := &testBundle{m: module.NewManager(nil, module.WithStopTimeout(10*time.Millisecond)), rec: &recorder{}}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	b.register("base", true, nil)
	b.registerWith("stuck", false, []string{"base"}, nil, func(context.Context) error {
		<-release // ignores its context on purpose
		return nil
	})

	require.NoError(t, b.m.Start(t.Context(), []string{"stuck"}))
	err := b.m.Stop(t.Context())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "stop module stuck")
	require.Equal(t, []string{"init base", "start base", "init stuck", "start stuck", "stop stuck", "stop base"}, b.rec.get())
}

func TestStartTwice(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.m.Start(t.Context(), []string{"tool"}))
	require.Error(t, b.m.Start(t.Context(), []string{"tool"}))
	require.NoError(t, b.m.Stop(t.Context()))
}

func boolString(v bool) string {
	if v {
		return "true"
	}
	return "false"
}
