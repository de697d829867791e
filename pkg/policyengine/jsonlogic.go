package policyengine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/diegoholiveira/jsonlogic/v3"
)

// jsonLogicOperators are the operators the library evaluates. "log" is absent on
// purpose: it writes to standard output.
var jsonLogicOperators = map[string]bool{
	"==": true, "===": true, "!=": true, "!==": true, ">": true, ">=": true, "<": true, "<=": true,
	"!": true, "!!": true, "or": true, "and": true, "?:": true, "if": true, "in": true, "in_sorted": true,
	"cat": true, "substr": true, "%": true, "abs": true, "max": true, "min": true,
	"+": true, "-": true, "*": true, "/": true, "merge": true, "missing": true, "missing_some": true,
	"some": true, "all": true, "none": true, "filter": true, "map": true, "reduce": true, "set": true, "var": true,
}

// maxJSONLogicDepth bounds nesting, so a hostile rule cannot exhaust the stack.
const maxJSONLogicDepth = 64

// parseJSONLogic decodes and checks a rule, naming the JSON path of the first problem.
func parseJSONLogic(source string) (any, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(source)))
	var rule any
	if err := dec.Decode(&rule); err != nil {
		return nil, &SourceError{Description: "$: malformed JSON: " + jsonErrorText(source, err)}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &SourceError{Description: "$: malformed JSON: unexpected data after the rule"}
	}
	if err := checkJSONLogic(rule, "$", 0); err != nil {
		return nil, err
	}
	return rule, nil
}

func jsonErrorText(source string, err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		line, col := 1, 1
		for _, c := range source[:min(int(syn.Offset), len(source))] {
			if c == '\n' {
				line, col = line+1, 1
			} else {
				col++
			}
		}
		return fmt.Sprintf("%s at %d:%d", syn.Error(), line, col)
	}
	return err.Error()
}

func checkJSONLogic(v any, path string, depth int) error {
	if depth > maxJSONLogicDepth {
		return &SourceError{Description: path + ": rule nested too deeply"}
	}
	switch x := v.(type) {
	case map[string]any:
		if len(x) != 1 {
			return &SourceError{Description: fmt.Sprintf("%s: an operation is an object with exactly one operator, got %d keys", path, len(x))}
		}
		for op, args := range x {
			if !jsonLogicOperators[op] {
				return &SourceError{Description: fmt.Sprintf("%s: unknown operator %q", path, op)}
			}
			return checkJSONLogic(args, path+"."+jsonPathKey(op), depth+1)
		}
	case []any:
		for i, item := range x {
			if err := checkJSONLogic(item, path+"["+strconv.Itoa(i)+"]", depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func jsonPathKey(k string) string {
	for _, c := range k {
		word := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !word {
			return "[" + strconv.Quote(k) + "]"
		}
	}
	return k
}

// evalJSONLogic applies rule to data and reports whether the result is truthy in
// JSON Logic's sense. The library reports some failures by panicking.
func evalJSONLogic(rule, data any) (matched bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			matched, err = false, fmt.Errorf("json logic: %v", r)
		}
	}()
	out, err := jsonlogic.ApplyInterface(rule, data) //nolint:staticcheck // the non-deprecated API goes through JSON text on every call.
	if err != nil {
		return false, fmt.Errorf("json logic: %w", err)
	}
	return truthy(out), nil
}

// truthy follows JSON Logic: false, 0, "", [], null and NaN are false.
func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case float64:
		return x != 0 && x == x
	case int:
		return x != 0
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	}
	return true
}
