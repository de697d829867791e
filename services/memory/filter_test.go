package memory

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
)

func parseFilter(t testing.TB, js string) *memoryv1.Filter {
	t.Helper()
	f := &memoryv1.Filter{}
	require.NoError(t, protojson.Unmarshal([]byte(js), f), js)
	return f
}

// TestFilterGrammar runs each operator against real rows.
func TestFilterGrammar(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true})
	docs := []map[string]any{
		{"client_id": "CS001", "priority": 3.0, "tags": []any{"vip", "eu"}, "address": map[string]any{"city": "Lisbon"}},
		{"client_id": "CS002", "priority": 1.0, "tags": []any{"us"}, "archived": true},
		{"client_id": "CS001", "priority": 5.0, "note": "Call Back Tomorrow"},
		{"priority": "high"},
	}
	types := []string{"meeting_note", "call_summary", "meeting_note", "todo"}
	names := map[string]string{}
	for i, d := range docs {
		m := b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: "memory " + strconv.Itoa(i), Type: types[i], Metadata: md(t, d)})
		names[m.GetId()] = strconv.Itoa(i)
	}
	cases := []struct {
		filter string
		want   string
	}{
		{`{"condition":{"field":"metadata.client_id","op":"OPERATOR_EQ","value":"CS001"}}`, "02"},
		{`{"condition":{"field":"metadata.client_id","op":"OPERATOR_NE","value":"CS001"}}`, "13"},
		{`{"condition":{"field":"metadata.priority","op":"OPERATOR_GT","value":1}}`, "02"},
		{`{"condition":{"field":"metadata.priority","op":"OPERATOR_LTE","value":3}}`, "01"},
		{`{"condition":{"field":"metadata.priority","op":"OPERATOR_EQ","value":"high"}}`, "3"},
		{`{"condition":{"field":"metadata.priority","op":"OPERATOR_IN","value":[1,5,"high"]}}`, "123"},
		{`{"condition":{"field":"metadata.priority","op":"OPERATOR_NIN","value":[1,5]}}`, "03"},
		{`{"condition":{"field":"metadata.tags","op":"OPERATOR_CONTAINS","value":"vip"}}`, "0"},
		{`{"condition":{"field":"metadata.note","op":"OPERATOR_CONTAINS","value":"back"}}`, "2"},
		{`{"condition":{"field":"metadata.archived","op":"OPERATOR_EXISTS"}}`, "1"},
		{`{"condition":{"field":"metadata.archived","op":"OPERATOR_EXISTS","value":false}}`, "023"},
		{`{"condition":{"field":"metadata.address.city","op":"OPERATOR_EQ","value":"Lisbon"}}`, "0"},
		{`{"condition":{"field":"type","op":"OPERATOR_IN","value":["meeting_note","todo"]}}`, "023"},
		{`{"condition":{"field":"text","op":"OPERATOR_CONTAINS","value":"MEMORY 2"}}`, "2"},
		{`{"condition":{"field":"agent_id","op":"OPERATOR_EXISTS","value":false}}`, "0123"},
		{`{"condition":{"field":"version","op":"OPERATOR_EQ","value":1}}`, "0123"},
		{`{"condition":{"field":"embedding_status","op":"OPERATOR_EQ","value":"EMBEDDING_STATUS_PENDING"}}`, "0123"},
		{`{"condition":{"field":"create_time","op":"OPERATOR_LT","value":"2000-01-01T00:00:00Z"}}`, ""},
		{`{"condition":{"field":"session_id","op":"OPERATOR_NE","value":"s"}}`, "0123"},
		{`{"all_of":[
		   {"condition":{"field":"metadata.client_id","op":"OPERATOR_EQ","value":"CS001"}},
		   {"any_of":[
		     {"condition":{"field":"type","op":"OPERATOR_IN","value":["meeting_note","call_summary"]}},
		     {"condition":{"field":"metadata.priority","op":"OPERATOR_GTE","value":3}}]},
		   {"none_of":[{"condition":{"field":"metadata.archived","op":"OPERATOR_EQ","value":true}}]}]}`, "02"},
		{`{"none_of":[{"condition":{"field":"agent_id","op":"OPERATOR_EQ","value":"00000000-0000-0000-0000-000000000001"}}]}`, "0123"},
	}
	for _, c := range cases {
		resp, err := b.client.ListMemories(as("user1"), &memoryv1.ListMemoriesRequest{Filter: parseFilter(t, c.filter)})
		require.NoError(t, err, c.filter)
		var got []string
		for _, m := range resp.GetMemories() {
			got = append(got, names[m.GetId()])
		}
		require.ElementsMatch(t, strings.Split(c.want, "")[:len(c.want)], got, c.filter)
	}
}

// FuzzCompileFilter: any filter either compiles to SQL whose placeholders match
// its parameters, or is refused as InvalidArgument; it never panics.
func FuzzCompileFilter(f *testing.F) {
	seeds := []string{
		`{"condition":{"field":"metadata.a","op":"OPERATOR_EQ","value":"x"}}`,
		`{"all_of":[{"condition":{"field":"type","op":"OPERATOR_IN","value":["a","b"]}},{"none_of":[{"condition":{"field":"metadata.b.c","op":"OPERATOR_EXISTS"}}]}]}`,
		`{"any_of":[{"condition":{"field":"version","op":"OPERATOR_GT","value":2}},{"condition":{"field":"metadata.t","op":"OPERATOR_CONTAINS","value":3}}]}`,
		`{"condition":{"field":"create_time","op":"OPERATOR_GTE","value":"2024-01-01T00:00:00Z"}}`,
		`{"condition":{"field":"metadata.","op":"OPERATOR_EQ","value":null}}`,
		`{}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		flt := &memoryv1.Filter{}
		if err := protojson.Unmarshal(data, flt); err != nil {
			return
		}
		args := &sqlArgs{}
		sql, err := compileFilter(flt, "filter", args)
		if err != nil {
			require.Contains(t, err.Error(), "filter")
			return
		}
		for i := range args.vals {
			require.Contains(t, sql, "$"+strconv.Itoa(i+1))
		}
		require.NotContains(t, sql, "$"+strconv.Itoa(len(args.vals)+1))
	})
}

// TestCompiledFiltersRun checks that compiled filters of every operator on every
// kind of field are valid SQL for PostgreSQL (type inference of parameters).
func TestCompiledFiltersRun(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true})
	ops := []memoryv1.FilterCondition_Operator{opEQ, opNE, opGT, opGTE, opLT, opLTE, opIN, opNIN, opCONTAINS, opEXISTS}
	values := map[string]*structpb.Value{
		"id": structpb.NewStringValue("018f0000-0000-7000-8000-000000000000"), "identity_id": structpb.NewStringValue("018f0000-0000-7000-8000-000000000000"),
		"agent_id": structpb.NewStringValue("018f0000-0000-7000-8000-000000000000"), "session_id": structpb.NewStringValue("s"),
		"type": structpb.NewStringValue("t"), "text": structpb.NewStringValue("t"), "version": structpb.NewNumberValue(1),
		"embedding_status": structpb.NewStringValue("EMBEDDING_STATUS_READY"), "create_time": structpb.NewStringValue("2024-01-01T00:00:00Z"),
		"update_time": structpb.NewStringValue("2024-01-01T00:00:00Z"), "expire_time": structpb.NewStringValue("2024-01-01T00:00:00Z"),
		"delete_time": structpb.NewStringValue("2024-01-01T00:00:00Z"), "metadata.a.b": structpb.NewNumberValue(1), "metadata.c": structpb.NewStringValue("x"),
	}
	ran := 0
	for field, v := range values {
		for _, o := range ops {
			val := v
			switch o {
			case opIN, opNIN:
				val = structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{v}})
			case opEXISTS:
				val = nil
			}
			f := &memoryv1.Filter{Condition: &memoryv1.FilterCondition{Field: field, Op: o, Value: val}}
			args := &sqlArgs{}
			sql, err := compileFilter(f, "filter", args)
			if err != nil {
				continue
			}
			_, err = b.admin.Exec(context.Background(), "SELECT 1 FROM memory.memories m WHERE "+sql, args.vals...)
			require.NoError(t, err, "%s %s: %s", field, o, sql)
			ran++
		}
	}
	require.Greater(t, ran, 80)
}
