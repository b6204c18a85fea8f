package plugin

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"
)

// astCases is testdata/ast_cases.json, written by gen_ast_cases.py with
// the engine's parser.
type astCases struct {
	Tables []struct {
		SQL    string          `json:"sql"`
		AST    json.RawMessage `json:"ast"`
		Tables []string        `json:"tables"`
	} `json:"tables"`
	AddPredicate []struct {
		SQL     string          `json:"sql"`
		Table   string          `json:"table"`
		Column  string          `json:"column"`
		Value   json.RawMessage `json:"value"`
		Count   int             `json:"count"`
		WantSQL string          `json:"want_sql"`
		AST     json.RawMessage `json:"ast"`
		Want    json.RawMessage `json:"want"`
	} `json:"add_predicate"`
}

func loadCases(t *testing.T) astCases {
	t.Helper()
	data, err := os.ReadFile("testdata/ast_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases astCases
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	return cases
}

func mustParse(t *testing.T, text string) map[string]any {
	t.Helper()
	ast, err := ParseAST(text)
	if err != nil {
		t.Fatal(err)
	}
	return ast
}

func TestTablesMatchTheEngine(t *testing.T) {
	for _, c := range loadCases(t).Tables {
		got := Tables(mustParse(t, string(c.AST)))
		if !reflect.DeepEqual(got, c.Tables) {
			t.Errorf("%s:\n got  %q\n want %q", c.SQL, got, c.Tables)
		}
	}
}

// Every rewrite must be the very tree the engine parses the expected SQL
// into. With HELIOSDB_AST_OUT set, the rewritten trees are written there
// as JSON, for tests/plugins/test_pii_masking_go.py to render with the
// engine.
func TestAddPredicateMatchesTheEngine(t *testing.T) {
	type output struct {
		SQL     string `json:"sql"`
		WantSQL string `json:"want_sql"`
		Got     string `json:"got"`
	}
	var outputs []output
	for _, c := range loadCases(t).AddPredicate {
		ast := mustParse(t, string(c.AST))
		var value any
		dec := json.NewDecoder(strings.NewReader(string(c.Value)))
		dec.UseNumber()
		if err := dec.Decode(&value); err != nil {
			t.Fatal(err)
		}
		n := AddPredicate(ast, c.Table, c.Column, value)
		if n != c.Count {
			t.Errorf("%s: added %d predicates, want %d", c.SQL, n, c.Count)
		}
		got, err := MarshalAST(ast)
		if err != nil {
			t.Fatal(err)
		}
		want := mustParse(t, string(c.Want))
		if !reflect.DeepEqual(mustParse(t, got), want) {
			wantText, _ := MarshalAST(want)
			t.Errorf("%s (table %s):\n got  %s\n want %s (%s)", c.SQL, c.Table, got, wantText, c.WantSQL)
		}
		outputs = append(outputs, output{c.SQL, c.WantSQL, got})
	}
	if path := os.Getenv("HELIOSDB_AST_OUT"); path != "" {
		data, err := json.Marshal(outputs)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// referenceCase is one case of testdata/add_predicate_cases.json: what the
// Python SDK's add_predicate, the reference implementation, made of a tree
// the engine parsed (gen_ast_cases.py).
type referenceCase struct {
	SQL     string          `json:"sql"`
	Table   string          `json:"table"`
	Column  string          `json:"column"`
	Value   json.RawMessage `json:"value"`
	Count   int             `json:"count"`
	WantSQL string          `json:"want_sql"`
	AST     json.RawMessage `json:"ast"`
	Want    json.RawMessage `json:"want"`
}

// AddPredicate does exactly what the Python SDK's add_predicate does: the
// same tree, the same count.
func TestAddPredicateMatchesPython(t *testing.T) {
	data, err := os.ReadFile("testdata/add_predicate_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []referenceCase
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 200 {
		t.Fatalf("only %d reference cases", len(cases))
	}
	for _, c := range cases {
		ast := mustParse(t, string(c.AST))
		var value any
		dec := json.NewDecoder(strings.NewReader(string(c.Value)))
		dec.UseNumber()
		if err := dec.Decode(&value); err != nil {
			t.Fatal(err)
		}
		n := AddPredicate(ast, c.Table, c.Column, value)
		if n != c.Count {
			t.Errorf("%s (table %s): added %d predicates, Python %d", c.SQL, c.Table, n, c.Count)
		}
		got, err := MarshalAST(ast)
		if err != nil {
			t.Fatal(err)
		}
		if want := mustParse(t, string(c.Want)); !reflect.DeepEqual(mustParse(t, got), want) {
			wantText, _ := MarshalAST(want)
			t.Errorf("%s (table %s):\n got    %s\n Python %s (%s)", c.SQL, c.Table, got, wantText, c.WantSQL)
		}
	}
}

func TestAddPredicateValueTypes(t *testing.T) {
	const sql = `{"node":"select","expressions":[{"node":"star"}],"from_":{"node":"from","this":{"node":"table","this":{"node":"identifier","this":"t","quoted":false}}}}`
	literal := func(ast map[string]any) any {
		return ast["where"].(map[string]any)["this"].(map[string]any)["expression"]
	}
	lit := func(text string, isString bool) map[string]any {
		return map[string]any{"node": "literal", "this": text, "is_string": isString}
	}
	for _, c := range []struct {
		value any
		want  any
	}{
		{"acme", lit("acme", true)},
		{"", lit("", true)},
		{int(7), lit("7", false)},
		{int32(-7), map[string]any{"node": "neg", "this": lit("7", false)}},
		{int64(-9223372036854775808), map[string]any{"node": "neg", "this": lit("9223372036854775808", false)}},
		{uint64(18446744073709551615), lit("18446744073709551615", false)},
		{json.Number("9007199254740993"), lit("9007199254740993", false)},
		{json.Number("-0"), lit("0", false)},
		{json.Number("+007"), lit("7", false)},
		{heliosdb.Int64Value(9007199254740993), lit("9007199254740993", false)},
		{heliosdb.TextValue("x"), lit("x", true)},
	} {
		ast := mustParse(t, sql)
		if n := AddPredicate(ast, "T", "c", c.value); n != 1 {
			t.Fatalf("%v: %d predicates", c.value, n)
		}
		if got := literal(ast); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%#v: got %v, want %v", c.value, got, c.want)
		}
	}
	for _, bad := range []any{1.5, nil, true, json.Number("1.5"), heliosdb.Null, []string{"a"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%#v: no panic", bad)
				}
			}()
			AddPredicate(mustParse(t, sql), "t", "c", bad)
		}()
	}
}

// Predicates are fresh nodes: editing one (as a later AddPredicate does
// when it wraps a where) never changes another.
func TestAddPredicateNodesAreNotShared(t *testing.T) {
	ast := mustParse(t, `{"node":"select","from_":{"node":"from","this":{"node":"table","this":{"node":"identifier","this":"t","quoted":false}}},"joins":[{"node":"join","this":{"node":"table","this":{"node":"identifier","this":"t","quoted":false},"alias":{"node":"tablealias","this":{"node":"identifier","this":"u","quoted":false}}},"kind":"CROSS"}]}`)
	if n := AddPredicate(ast, "t", "c", 1); n != 2 {
		t.Fatalf("%d predicates", n)
	}
	cond := ast["where"].(map[string]any)["this"].(map[string]any)
	first := cond["this"].(map[string]any)
	second := cond["expression"].(map[string]any)
	first["expression"].(map[string]any)["this"] = "99"
	if second["expression"].(map[string]any)["this"] != "1" {
		t.Fatal("the two predicates share their literal")
	}
	if q := second["this"].(map[string]any)["table"].(map[string]any)["this"]; q != "u" {
		t.Fatalf("qualifier %v, want the alias u", q)
	}
}

func TestParseAndMarshalAST(t *testing.T) {
	// Numbers keep their digits; <, > and & stay as they are.
	text := `{"node":"literal","this":"a<b&c>","n":9007199254740993,"f":1.25}`
	ast := mustParse(t, text)
	got, err := MarshalAST(ast)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"f":1.25,"n":9007199254740993,"node":"literal","this":"a<b&c>"}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	for _, bad := range []string{``, `[]`, `{"this":1}`, `{"node":1}`, `{"node":"x"} {}`, `{"node":`} {
		if _, err := ParseAST(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if Kind(ast) != "literal" || Kind("x") != "" || Kind(map[string]any{}) != "" {
		t.Fatal("Kind")
	}
}
