package memory

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
)

// Filter limits (documented on the Filter message).
const (
	maxFilterDepth      = 8
	maxFilterConditions = 100
	maxInValues         = 1000
	maxMetadataKeys     = 16
)

// sqlArgs collects the parameters of a statement built by hand and hands out
// their placeholders. Values never enter the SQL text.
type sqlArgs struct{ vals []any }

func (a *sqlArgs) add(v any) string {
	a.vals = append(a.vals, v)
	return "$" + strconv.Itoa(len(a.vals))
}

// compileFilter turns f into a boolean SQL expression over the memories table
// (alias m). Every value becomes a parameter in args. Errors are InvalidArgument
// naming the offending part of the filter under path (e.g. "filter").
func compileFilter(f *memoryv1.Filter, path string, args *sqlArgs) (string, error) {
	if f == nil {
		return "TRUE", nil
	}
	c := &filterCompiler{args: args}
	return c.filter(f, path, 1)
}

type filterCompiler struct {
	args       *sqlArgs
	conditions int
}

func (c *filterCompiler) filter(f *memoryv1.Filter, path string, depth int) (string, error) {
	if depth > maxFilterDepth {
		return "", apierr.Field(path, "nests deeper than %d levels", maxFilterDepth)
	}
	set := 0
	if f.GetCondition() != nil {
		set++
	}
	for _, l := range [][]*memoryv1.Filter{f.GetAllOf(), f.GetAnyOf(), f.GetNoneOf()} {
		if len(l) > 0 {
			set++
		}
	}
	if set != 1 {
		return "", apierr.Field(path, "must set exactly one of condition, all_of, any_of, none_of")
	}
	switch {
	case f.GetCondition() != nil:
		c.conditions++
		if c.conditions > maxFilterConditions {
			return "", apierr.Field(path, "the filter holds more than %d conditions", maxFilterConditions)
		}
		return c.condition(f.GetCondition(), path+".condition")
	case len(f.GetAllOf()) > 0:
		return c.list(f.GetAllOf(), path+".all_of", depth, " AND ", "")
	case len(f.GetAnyOf()) > 0:
		return c.list(f.GetAnyOf(), path+".any_of", depth, " OR ", "")
	default:
		return c.list(f.GetNoneOf(), path+".none_of", depth, " OR ", "NOT ")
	}
}

func (c *filterCompiler) list(fs []*memoryv1.Filter, path string, depth int, join, prefix string) (string, error) {
	if len(fs) > maxFilterConditions {
		return "", apierr.Field(path, "has more than %d filters", maxFilterConditions)
	}
	parts := make([]string, len(fs))
	for i, sub := range fs {
		if sub == nil {
			return "", apierr.Field(fmt.Sprintf("%s[%d]", path, i), "is empty")
		}
		s, err := c.filter(sub, fmt.Sprintf("%s[%d]", path, i), depth+1)
		if err != nil {
			return "", err
		}
		if prefix != "" {
			// A NULL part (a nullable column compared) must count as false
			// before it is negated.
			s = "COALESCE(" + s + ", false)"
		}
		parts[i] = "(" + s + ")"
	}
	return prefix + "(" + strings.Join(parts, join) + ")", nil
}

// builtin describes a column that a condition may test.
type builtin struct {
	column   string
	kind     string // uuid, text, int, status, time
	nullable bool
}

var builtins = map[string]builtin{
	"id":               {column: "m.id", kind: "uuid"},
	"identity_id":      {column: "m.identity_id", kind: "uuid"},
	"agent_id":         {column: "m.agent_id", kind: "uuid", nullable: true},
	"session_id":       {column: "m.session_id", kind: "text", nullable: true},
	"type":             {column: "m.type", kind: "text"},
	"text":             {column: "m.text", kind: "fulltext"},
	"version":          {column: "m.version", kind: "int"},
	"embedding_status": {column: "m.embedding_status", kind: "status"},
	"create_time":      {column: "m.create_time", kind: "time"},
	"update_time":      {column: "m.update_time", kind: "time"},
	"expire_time":      {column: "m.expire_time", kind: "time", nullable: true},
	"delete_time":      {column: "m.delete_time", kind: "time", nullable: true},
}

type op = memoryv1.FilterCondition_Operator

const (
	opEQ       = memoryv1.FilterCondition_OPERATOR_EQ
	opNE       = memoryv1.FilterCondition_OPERATOR_NE
	opGT       = memoryv1.FilterCondition_OPERATOR_GT
	opGTE      = memoryv1.FilterCondition_OPERATOR_GTE
	opLT       = memoryv1.FilterCondition_OPERATOR_LT
	opLTE      = memoryv1.FilterCondition_OPERATOR_LTE
	opIN       = memoryv1.FilterCondition_OPERATOR_IN
	opNIN      = memoryv1.FilterCondition_OPERATOR_NIN
	opCONTAINS = memoryv1.FilterCondition_OPERATOR_CONTAINS
	opEXISTS   = memoryv1.FilterCondition_OPERATOR_EXISTS
)

var comparisons = map[op]string{opGT: ">", opGTE: ">=", opLT: "<", opLTE: "<="}

func (c *filterCompiler) condition(cond *memoryv1.FilterCondition, path string) (string, error) {
	field := cond.GetField()
	o := cond.GetOp()
	if _, ok := memoryv1.FilterCondition_Operator_name[int32(o)]; !ok || o == memoryv1.FilterCondition_OPERATOR_UNSPECIFIED {
		return "", apierr.Field(path+".op", "must be one of OPERATOR_EQ ... OPERATOR_EXISTS")
	}
	if keys, ok := strings.CutPrefix(field, "metadata."); ok {
		parts := strings.Split(keys, ".")
		if len(parts) > maxMetadataKeys {
			return "", apierr.Field(path+".field", "has more than %d metadata keys", maxMetadataKeys)
		}
		for _, k := range parts {
			if k == "" {
				return "", apierr.Field(path+".field", "has an empty metadata key")
			}
		}
		return c.metadata(parts, o, cond.GetValue(), path)
	}
	b, ok := builtins[field]
	if !ok {
		return "", apierr.Field(path+".field", "%q is not a filterable field (built-in fields or metadata.<key>)", field)
	}
	return c.builtin(b, o, cond.GetValue(), path)
}

func (c *filterCompiler) builtin(b builtin, o op, v *structpb.Value, path string) (string, error) {
	vpath := path + ".value"
	if o == opEXISTS {
		present, err := existsValue(v, vpath)
		if err != nil {
			return "", err
		}
		if present {
			return b.column + " IS NOT NULL", nil
		}
		return b.column + " IS NULL", nil
	}
	if b.kind == "fulltext" && o != opCONTAINS {
		return "", apierr.Field(path+".op", "text supports OPERATOR_CONTAINS only")
	}
	switch o {
	case opCONTAINS:
		if b.kind != "text" && b.kind != "fulltext" {
			return "", apierr.Field(path+".op", "OPERATOR_CONTAINS applies to string fields")
		}
		s, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok || s.StringValue == "" {
			return "", apierr.Field(vpath, "must be a non-empty string")
		}
		return fmt.Sprintf("(%s IS NOT NULL AND strpos(lower(%s), lower(%s)) > 0)", b.column, b.column, c.args.add(s.StringValue)), nil
	case opIN, opNIN:
		l := v.GetListValue()
		if l == nil || len(l.GetValues()) == 0 || len(l.GetValues()) > maxInValues {
			return "", apierr.Field(vpath, "must be a list of 1 to %d values", maxInValues)
		}
		vals := make([]any, len(l.GetValues()))
		for i, item := range l.GetValues() {
			x, err := builtinValue(b, item, fmt.Sprintf("%s[%d]", vpath, i))
			if err != nil {
				return "", err
			}
			vals[i] = x
		}
		p := c.args.add(typedList(b, vals))
		if o == opIN {
			return fmt.Sprintf("%s = ANY(%s)", b.column, p), nil
		}
		return fmt.Sprintf("(%s IS NULL OR %s <> ALL(%s))", b.column, b.column, p), nil
	}
	if _, isNull := v.GetKind().(*structpb.Value_NullValue); isNull || v == nil {
		switch o {
		case opEQ:
			return b.column + " IS NULL", nil
		case opNE:
			return b.column + " IS NOT NULL", nil
		}
		return "", apierr.Field(vpath, "must not be null for this operator")
	}
	x, err := builtinValue(b, v, vpath)
	if err != nil {
		return "", err
	}
	p := c.args.add(x)
	switch o {
	case opEQ:
		return fmt.Sprintf("%s = %s", b.column, p), nil
	case opNE:
		return fmt.Sprintf("%s IS DISTINCT FROM %s", b.column, p), nil
	}
	cmp := comparisons[o]
	if b.kind == "text" {
		return fmt.Sprintf("%s COLLATE \"C\" %s %s", b.column, cmp, p), nil
	}
	return fmt.Sprintf("%s %s %s", b.column, cmp, p), nil
}

// typedList gives pgx a slice of the column's Go type, so ANY($n) binds as an array.
func typedList(b builtin, vals []any) any {
	switch b.kind {
	case "uuid":
		out := make([]uuid.UUID, len(vals))
		for i, v := range vals {
			out[i] = v.(uuid.UUID)
		}
		return out
	case "int":
		out := make([]int32, len(vals))
		for i, v := range vals {
			out[i] = v.(int32)
		}
		return out
	case "status":
		out := make([]int16, len(vals))
		for i, v := range vals {
			out[i] = v.(int16)
		}
		return out
	case "time":
		out := make([]time.Time, len(vals))
		for i, v := range vals {
			out[i] = v.(time.Time)
		}
		return out
	default:
		out := make([]string, len(vals))
		for i, v := range vals {
			out[i] = v.(string)
		}
		return out
	}
}

func builtinValue(b builtin, v *structpb.Value, path string) (any, error) {
	switch b.kind {
	case "uuid":
		s, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return nil, apierr.Field(path, "must be a UUID string")
		}
		id, err := uuid.Parse(s.StringValue)
		if err != nil {
			return nil, apierr.Field(path, "must be a UUID string")
		}
		return id, nil
	case "text":
		s, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return nil, apierr.Field(path, "must be a string")
		}
		return s.StringValue, nil
	case "int":
		n, ok := v.GetKind().(*structpb.Value_NumberValue)
		if !ok || n.NumberValue != float64(int32(n.NumberValue)) {
			return nil, apierr.Field(path, "must be an integer")
		}
		return int32(n.NumberValue), nil
	case "status":
		s, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return nil, apierr.Field(path, "must be an EmbeddingStatus name")
		}
		n, ok := memoryv1.EmbeddingStatus_value[s.StringValue]
		if !ok || n == 0 {
			return nil, apierr.Field(path, "must be one of EMBEDDING_STATUS_PENDING, EMBEDDING_STATUS_READY, EMBEDDING_STATUS_FAILED")
		}
		return int16(n), nil
	case "time":
		s, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return nil, apierr.Field(path, "must be an RFC 3339 time string")
		}
		t, err := time.Parse(time.RFC3339Nano, s.StringValue)
		if err != nil {
			return nil, apierr.Field(path, "must be an RFC 3339 time string")
		}
		return t, nil
	}
	return nil, apierr.Field(path, "is not supported for this field")
}

func existsValue(v *structpb.Value, path string) (bool, error) {
	if v == nil {
		return true, nil
	}
	switch k := v.GetKind().(type) {
	case nil:
		return true, nil
	case *structpb.Value_BoolValue:
		return k.BoolValue, nil
	}
	return false, apierr.Field(path, "must be a boolean or left out for OPERATOR_EXISTS")
}

func (c *filterCompiler) metadata(keys []string, o op, v *structpb.Value, path string) (string, error) {
	vpath := path + ".value"
	if o == opEQ || o == opNE {
		// Equality as containment of {"k1": {"k2": value}}, which the GIN index on
		// metadata (jsonb_path_ops) serves. Below the top level containment is
		// exact for scalars: {"k": ["x"]} does not contain {"k": "x"}.
		if v == nil || v.GetKind() == nil {
			return "", apierr.Field(vpath, "is required for this operator")
		}
		if err := scalar(v, vpath); err != nil {
			return "", err
		}
		doc, err := nested(keys, v)
		if err != nil {
			return "", apierr.Field(vpath, "cannot be encoded")
		}
		eq := fmt.Sprintf("m.metadata @> %s::jsonb", c.args.add(doc))
		if o == opEQ {
			return eq, nil
		}
		return "NOT (" + eq + ")", nil
	}
	p := c.args.add(keys)
	expr := fmt.Sprintf("(m.metadata #> %s::text[])", p)
	if o == opEXISTS {
		present, err := existsValue(v, vpath)
		if err != nil {
			return "", err
		}
		if present {
			return expr + " IS NOT NULL", nil
		}
		return expr + " IS NULL", nil
	}
	if v == nil || v.GetKind() == nil {
		return "", apierr.Field(vpath, "is required for this operator")
	}
	switch o {
	case opGT, opGTE, opLT, opLTE:
		cmp := comparisons[o]
		switch k := v.GetKind().(type) {
		case *structpb.Value_NumberValue:
			return fmt.Sprintf("(jsonb_typeof%s = 'number' AND %s::numeric %s %s::numeric)", expr, expr, cmp, c.args.add(k.NumberValue)), nil
		case *structpb.Value_StringValue:
			return fmt.Sprintf("(jsonb_typeof%s = 'string' AND (m.metadata #>> %s::text[]) COLLATE \"C\" %s %s)", expr, p, cmp, c.args.add(k.StringValue)), nil
		}
		return "", apierr.Field(vpath, "must be a number or a string for this operator")
	case opIN, opNIN:
		l := v.GetListValue()
		if l == nil || len(l.GetValues()) == 0 || len(l.GetValues()) > maxInValues {
			return "", apierr.Field(vpath, "must be a list of 1 to %d values", maxInValues)
		}
		docs := make([]string, len(l.GetValues()))
		for i, item := range l.GetValues() {
			if err := scalar(item, fmt.Sprintf("%s[%d]", vpath, i)); err != nil {
				return "", err
			}
			b, err := item.MarshalJSON()
			if err != nil {
				return "", apierr.Field(fmt.Sprintf("%s[%d]", vpath, i), "cannot be encoded")
			}
			docs[i] = string(b)
		}
		in := fmt.Sprintf("%s = ANY(%s::jsonb[])", expr, c.args.add(docs))
		if o == opIN {
			return "COALESCE(" + in + ", false)", nil
		}
		return "NOT COALESCE(" + in + ", false)", nil
	case opCONTAINS:
		if err := scalar(v, vpath); err != nil {
			return "", err
		}
		elem, err := v.MarshalJSON()
		if err != nil {
			return "", apierr.Field(vpath, "cannot be encoded")
		}
		member := fmt.Sprintf("(jsonb_typeof%s = 'array' AND %s @> jsonb_build_array(%s::jsonb))", expr, expr, c.args.add(string(elem)))
		if s, ok := v.GetKind().(*structpb.Value_StringValue); ok {
			if s.StringValue == "" {
				return "", apierr.Field(vpath, "must be a non-empty string or a scalar")
			}
			return fmt.Sprintf("(%s OR (jsonb_typeof%s = 'string' AND strpos(lower(m.metadata #>> %s::text[]), lower(%s)) > 0))",
				member, expr, p, c.args.add(s.StringValue)), nil
		}
		return member, nil
	}
	return "", apierr.Field(path+".op", "is not supported")
}

func scalar(v *structpb.Value, path string) error {
	switch v.GetKind().(type) {
	case *structpb.Value_StringValue, *structpb.Value_NumberValue, *structpb.Value_BoolValue, *structpb.Value_NullValue:
		return nil
	}
	return apierr.Field(path, "must be a string, number, boolean or null")
}

// nested builds the JSON document {"k1": {"k2": ... value}}.
func nested(keys []string, v *structpb.Value) (string, error) {
	leaf, err := v.MarshalJSON()
	if err != nil {
		return "", err
	}
	doc := json.RawMessage(leaf)
	for i := len(keys) - 1; i >= 0; i-- {
		b, err := json.Marshal(map[string]json.RawMessage{keys[i]: doc})
		if err != nil {
			return "", err
		}
		doc = b
	}
	return string(doc), nil
}
