package plugin

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"
)

// astCase is one case of sdks/plugin-ast-cases.json, shared with the Rust
// SDK's tests and written by sdks/plugin-ast-cases.py with the engine's
// parser: a statement, its tree and the engine's tables() of it, and for
// add_predicate cases the arguments, the tree they must turn it into and
// the count.
type astCase struct {
	SQL     string          `json:"sql"`
	Tables  []string        `json:"tables"`
	Table   string          `json:"table"`
	Column  string          `json:"column"`
	Value   json.RawMessage `json:"value"`
	Count   int             `json:"count"`
	WantSQL string          `json:"want_sql"`
	AST     json.RawMessage `json:"ast"`
	Want    json.RawMessage `json:"want"`
}

// astCases are the file's sections: statements for Tables only,
// hand-written add_predicate cases (want is the tree the engine parses
// want_sql into), and what the Python SDK's add_predicate, the reference
// implementation, made of the statements of its tests.
type astCases struct {
	Tables       []astCase `json:"tables"`
	AddPredicate []astCase `json:"add_predicate"`
	Reference    []astCase `json:"reference"`
}

func loadCases(t *testing.T) astCases {
	t.Helper()
	data, err := os.ReadFile("../../plugin-ast-cases.json")
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
	cases := loadCases(t)
	for _, section := range [][]astCase{cases.Tables, cases.AddPredicate, cases.Reference} {
		for _, c := range section {
			got := Tables(mustParse(t, string(c.AST)))
			if !reflect.DeepEqual(got, c.Tables) {
				t.Errorf("%s:\n got  %q\n want %q", c.SQL, got, c.Tables)
			}
		}
	}
}

// checkAddPredicate runs AddPredicate on the case's tree and reports where
// the count or the tree differ from the case's (from expected: the engine
// or Python); it returns the rewritten tree as JSON.
func checkAddPredicate(t *testing.T, c astCase, expected string) string {
	t.Helper()
	ast := mustParse(t, string(c.AST))
	var value any
	dec := json.NewDecoder(strings.NewReader(string(c.Value)))
	dec.UseNumber()
	if err := dec.Decode(&value); err != nil {
		t.Fatal(err)
	}
	n := AddPredicate(ast, c.Table, c.Column, value)
	if n != c.Count {
		t.Errorf("%s (table %s): added %d predicates, %s %d", c.SQL, c.Table, n, expected, c.Count)
	}
	got, err := MarshalAST(ast)
	if err != nil {
		t.Fatal(err)
	}
	if want := mustParse(t, string(c.Want)); !reflect.DeepEqual(mustParse(t, got), want) {
		wantText, _ := MarshalAST(want)
		t.Errorf("%s (table %s):\n got  %s\n %s %s (%s)", c.SQL, c.Table, got, expected, wantText, c.WantSQL)
	}
	return got
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
		outputs = append(outputs, output{c.SQL, c.WantSQL, checkAddPredicate(t, c, "want")})
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

// AddPredicate does exactly what the Python SDK's add_predicate does: the
// same tree, the same count.
func TestAddPredicateMatchesPython(t *testing.T) {
	cases := loadCases(t).Reference
	if len(cases) < 200 {
		t.Fatalf("only %d reference cases", len(cases))
	}
	for _, c := range cases {
		checkAddPredicate(t, c, "Python")
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
