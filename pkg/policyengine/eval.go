package policyengine

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// ErrEvalTimeout is the error of a policy cut off by the evaluation timeout.
var ErrEvalTimeout = errors.New("policy evaluation timed out")

// Decide decides in against the set. With explain, every policy in scope is
// evaluated and listed with its reason, and the cache is bypassed (the test
// endpoint); without it evaluation stops at the deciding policy and repeats are
// served from the cache.
func (s *Set) Decide(ctx context.Context, in Input, explain bool) Decision {
	return s.decide(ctx, &in, explain)
}

func (s *Set) decide(ctx context.Context, in *Input, explain bool) Decision {
	var key cacheKey
	if !explain && s.cache != nil {
		key = fingerprint(in)
		if d, ok := s.cache.get(key); ok {
			s.opts.Metrics.decided(d.Allow, true)
			d.Cached = true
			return d
		}
	}
	start := time.Now()
	d := s.evaluate(ctx, in, explain)
	d.Duration = time.Since(start)
	s.opts.Metrics.decided(d.Allow, false)
	if !explain && s.cache != nil && !d.uncacheable {
		s.cache.put(key, d)
	}
	return d
}

// evalState holds what one decision builds lazily and shares across policies.
type evalState struct {
	in      *Input
	value   ast.Value
	goData  map[string]any
	cancel  *deadline
	timeout time.Duration
}

func (st *evalState) regoInput() (ast.Value, error) {
	if st.value == nil {
		v, err := st.in.astValue()
		if err != nil {
			return nil, err
		}
		st.value = v
	}
	if st.cancel == nil {
		st.cancel = &deadline{at: time.Now().Add(st.timeout)}
	}
	return st.value, nil
}

// deadline is the decision's topdown.Cancel: OPA asks it before every evaluation
// step, and it looks at the clock every 64th time. That bounds a decision like a
// timer would, without OPA's goroutine per evaluation or a runtime timer per
// decision (an allocation and two timer-heap updates under a lock).
type deadline struct {
	at    time.Time
	steps uint32
	done  atomic.Bool
}

var _ topdown.Cancel = (*deadline)(nil)

func (d *deadline) Cancel() { d.done.Store(true) }

func (d *deadline) Cancelled() bool {
	if d.done.Load() {
		return true
	}
	// One evaluation runs on one goroutine, so the step count needs no atomics.
	d.steps++
	if d.steps&63 == 0 && !time.Now().Before(d.at) {
		d.done.Store(true)
		return true
	}
	return false
}

func (s *Set) evaluate(ctx context.Context, in *Input, explain bool) Decision {
	// The state keeps its own copy: the caller's input stays on its stack, so a
	// decision the cache answers allocates nothing.
	st := &evalState{in: new(*in), timeout: s.opts.EvalTimeout}
	var d Decision
	for _, p := range s.applicable(in.Resource.Type, in.Action) {
		if !rolesCover(p.Roles, in.Principal.Roles) {
			continue
		}
		ev := Evaluation{PolicyID: p.ID, Name: p.Name, Version: p.Version, Effect: p.Effect, Priority: p.Priority}
		matched, err := s.evalPolicy(ctx, p, st)
		denies := matched && p.Effect == Deny
		if err != nil {
			// Fail closed: a policy that cannot be evaluated denies at its place in
			// the order, whatever its effect, so a broken allow never lets a lower
			// allow through and a broken deny still denies.
			ev.Err = err
			matched, denies = true, true
			d.uncacheable = true
			s.opts.Metrics.failed()
			s.opts.Logger.WarnContext(ctx, "policy evaluation failed; failing closed",
				"tenant", s.tenant, "policy", p.Name, "policy_id", p.ID, "effect", p.Effect, "err", err)
		}
		ev.Matched = matched
		// Reasons cost an evaluation: the hot path wants one only to explain a denial.
		if explain || denies {
			ev.Reason = s.reasonOf(ctx, p, st, matched, err)
		}
		if matched && d.Decisive == nil {
			ev.Decisive = true
			d.Allow = !denies
			if !explain {
				d.Decisive = &ev
				return d
			}
		}
		d.Evaluations = append(d.Evaluations, ev)
		if ev.Decisive {
			d.Decisive = &d.Evaluations[len(d.Evaluations)-1]
		}
	}
	// Pointers into Evaluations may have moved while it grew; point at the final one.
	for i := range d.Evaluations {
		if d.Evaluations[i].Decisive {
			d.Decisive = &d.Evaluations[i]
		}
	}
	return d
}

func (s *Set) evalPolicy(ctx context.Context, p *compiled, st *evalState) (bool, error) {
	if p.broken != nil {
		return false, fmt.Errorf("policy does not compile: %w", p.broken)
	}
	if p.rule != nil || p.Language == JSONLogic {
		if st.goData == nil {
			st.goData = st.in.goValue()
		}
		return evalJSONLogic(p.rule, st.goData)
	}
	if p.always {
		return true, nil
	}
	if p.native != nil {
		return p.native(st.in), nil
	}
	input, err := st.regoInput()
	if err != nil {
		return false, err
	}
	v, err := p.match.eval(ctx, input, st.cancel)
	if err != nil {
		return false, evalError(err)
	}
	// Only a match that is exactly true counts; undefined and any other value do not.
	return ast.Boolean(true).Equal(v), nil
}

func evalError(err error) error {
	var te *topdown.Error
	if errors.As(err, &te) && te.Code == topdown.CancelErr {
		return ErrEvalTimeout
	}
	return err
}

// reasonOf is the policy's own reason rule when it defines one, else a description.
func (s *Set) reasonOf(ctx context.Context, p *compiled, st *evalState, matched bool, evalErr error) string {
	if evalErr != nil {
		return "evaluation failed: " + evalErr.Error()
	}
	if p.reason != nil {
		if input, err := st.regoInput(); err == nil {
			if v, err := p.reason.eval(ctx, input, st.cancel); err == nil {
				if r, ok := v.(ast.String); ok && r != "" {
					return string(r)
				}
			}
		}
	}
	if matched {
		return fmt.Sprintf("policy %s matched (%s)", p.Name, p.Effect)
	}
	return "condition did not match"
}
