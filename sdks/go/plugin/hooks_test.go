package plugin

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"
)

// The context and request of docs/plugins.md §3.
const ctxJSON = `{"query-id": 18446744073709551615, "user": "alice", "database": "shop",
	"application-name": "psql",
	"connection": [["user", "alice"], ["tenant", "acme"]],
	"session": [["tenant", "acme"], ["auth.role", "clerk"], ["auth.role", "admin"]],
	"tables": ["orders"],
	"config": "{\"tables\": [\"orders\"], \"column\": \"tenant_id\"}",
	"future-field": 1}`

func TestContext(t *testing.T) {
	var ctx Context
	if err := json.Unmarshal([]byte(ctxJSON), &ctx); err != nil {
		t.Fatal(err)
	}
	if ctx.QueryID != 18446744073709551615 || ctx.User != "alice" || ctx.Database != "shop" ||
		ctx.ApplicationName != "psql" || !reflect.DeepEqual(ctx.Tables, []string{"orders"}) {
		t.Fatalf("%+v", ctx)
	}
	if v, ok := ctx.Session("auth.role"); !ok || v != "admin" {
		t.Errorf("Session: %q %v (the last pair wins)", v, ok)
	}
	if _, ok := ctx.Session("AUTH.ROLE"); ok {
		t.Error("Session matches names exactly")
	}
	if v, ok := ctx.Connection("tenant"); !ok || v != "acme" {
		t.Errorf("Connection: %q %v", v, ok)
	}
	if _, ok := ctx.Connection("jwt"); ok {
		t.Error("Connection found a missing parameter")
	}
	var cfg struct {
		Tables []string `json:"tables"`
		Column string   `json:"column"`
	}
	if err := ctx.Config(&cfg); err != nil || cfg.Column != "tenant_id" || len(cfg.Tables) != 1 {
		t.Fatalf("Config: %+v %v", cfg, err)
	}
	for _, bad := range []string{`{"tables": ["x"], "colum": "y"}`, `{"column": 5}`, `[1]`, `{`, `{} {}`} {
		ctx.ConfigJSON = bad
		err := ctx.Config(&cfg)
		if !errors.Is(err, &heliosdb.Error{Code: heliosdb.CodeUserError, UserCode: CodeConfig}) {
			t.Errorf("Config(%s): %v", bad, err)
		}
	}
	ctx.ConfigJSON = " "
	var empty struct{}
	if err := ctx.Config(&empty); err != nil {
		t.Errorf("an empty config is {}: %v", err)
	}
}

func TestVerdictJSON(t *testing.T) {
	for _, c := range []struct {
		v    Verdict
		json string
	}{
		{Allow(), `{"action":"allow"}`},
		{Verdict{}, `{"action":"allow"}`},
		{Reject("42501", "not your tenant"), `{"action":{"reject":{"sqlstate":"42501","message":"not your tenant"}}}`},
		{Rewrite(`{"node": "select"}`).SetSession("tenant.checked", "1"),
			`{"action":{"rewrite":"{\"node\": \"select\"}"},"set-session":[["tenant.checked","1"]]}`},
		{ReplaceRows([][]heliosdb.Value{{heliosdb.Int64Value(1), heliosdb.TextValue("***"), heliosdb.Null}}),
			`{"action":{"replace-rows":[[{"integer":1},{"text":"***"},"null"]]}}`},
		{ReplaceRows(nil), `{"action":{"replace-rows":[]}}`},
		{Allow().SetSession("a", "1").SetSession("b", "2"), `{"action":"allow","set-session":[["a","1"],["b","2"]]}`},
	} {
		got, err := json.Marshal(c.v)
		if err != nil || string(got) != c.json {
			t.Errorf("%+v: got %s %v, want %s", c.v, got, err, c.json)
			continue
		}
		var back Verdict
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("%s: %v", got, err)
			continue
		}
		again, _ := json.Marshal(back)
		if string(again) != c.json {
			t.Errorf("%s: read back as %s", c.json, again)
		}
	}
	for _, bad := range []string{`{}`, `{"action":"deny"}`, `{"action":{}}`, `{"action":{"allow":1,"reject":{}}}`, `{"action":{"nope":1}}`} {
		var v Verdict
		if err := json.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("%s read as %+v", bad, v)
		}
	}
	if _, err := json.Marshal(Verdict{Action: Action{Kind: 9}}); err == nil {
		t.Error("an unknown action encoded")
	}
}

// SetSession never writes into the slice of the verdict it was called on.
func TestSetSessionDoesNotAlias(t *testing.T) {
	base := Allow().SetSession("a", "1")
	base.Session = append(make([][2]string, 0, 4), base.Session...)
	x := base.SetSession("x", "1")
	y := base.SetSession("y", "2")
	if x.Session[1][0] != "x" || y.Session[1][0] != "y" || len(base.Session) != 1 {
		t.Fatalf("%v %v %v", base.Session, x.Session, y.Session)
	}
}

func request(t *testing.T, rest string) heliosdb.JSON {
	t.Helper()
	return heliosdb.JSON(`{"ctx":` + ctxJSON + `,` + rest + `}`)
}

func TestHandlePostExecution(t *testing.T) {
	req := request(t, `"columns": ["id", "ssn", "x"],
		"rows": [[{"integer": 9223372036854775807}, {"text": "123-45-6789"}, {"real": Infinity}],
		         [{"integer": -9007199254740993}, "null", {"blob": [0, 255]}]]`)
	var seen [][]heliosdb.Value
	out, err := HandlePostExecution(req, func(ctx *Context, columns []string, rows [][]heliosdb.Value) (Verdict, error) {
		if ctx.User != "alice" || !reflect.DeepEqual(columns, []string{"id", "ssn", "x"}) {
			t.Errorf("%+v %v", ctx, columns)
		}
		seen = rows
		rows[0][1] = heliosdb.TextValue("***-**-6789")
		return ReplaceRows(rows), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen[0][0].Int64() != 9223372036854775807 || seen[1][0].Int64() != -9007199254740993 ||
		!seen[1][1].IsNull() || seen[1][2].Text() != "\x00\xff" || seen[0][2].Kind() != heliosdb.KindReal {
		t.Fatalf("rows decoded as %v", seen)
	}
	want := `{"action":{"replace-rows":[[{"integer":9223372036854775807},{"text":"***-**-6789"},{"real":Infinity}],` +
		`[{"integer":-9007199254740993},"null",{"blob":[0,255]}]]}}`
	if string(out) != want {
		t.Fatalf("got  %s\nwant %s", out, want)
	}

	// Rows must keep the result's width, and only some actions fit a stage.
	_, err = HandlePostExecution(req, func(*Context, []string, [][]heliosdb.Value) (Verdict, error) {
		return ReplaceRows([][]heliosdb.Value{{heliosdb.Null}}), nil
	})
	assertUserError(t, err, CodeVerdict, "replaced row 0 has 1 values, the result has 3 columns")
	_, err = HandlePostExecution(req, func(*Context, []string, [][]heliosdb.Value) (Verdict, error) {
		return Rewrite("SELECT 1"), nil
	})
	assertUserError(t, err, CodeVerdict, "a post-execution hook cannot answer rewrite")

	// The hook's own error goes through unchanged.
	mine := heliosdb.UserError("MINE", "no")
	if _, err := HandlePostExecution(req, func(*Context, []string, [][]heliosdb.Value) (Verdict, error) {
		return Verdict{}, mine
	}); err != mine {
		t.Fatalf("got %v", err)
	}
}

func assertUserError(t *testing.T, err error, code, message string) {
	t.Helper()
	var he *heliosdb.Error
	if !errors.As(err, &he) || he.Code != heliosdb.CodeUserError || he.UserCode != code ||
		!strings.Contains(he.Message, message) {
		t.Fatalf("got %v, want a %s user error saying %q", err, code, message)
	}
}

func TestHandleOtherStages(t *testing.T) {
	out, err := HandlePreParse(request(t, `"sql": "SELECT 1"`), func(ctx *Context, sql string) (Verdict, error) {
		return Rewrite(sql + " -- seen"), nil
	})
	if err != nil || string(out) != `{"action":{"rewrite":"SELECT 1 -- seen"}}` {
		t.Fatalf("pre-parse: %s %v", out, err)
	}

	ast := `{"node":"select","expressions":[{"node":"star"}],"from_":{"node":"from","this":{"node":"table","this":{"node":"identifier","this":"orders","quoted":false}}}}`
	astJSON, _ := json.Marshal(ast)
	out, err = HandlePostParse(request(t, `"ast": `+string(astJSON)), func(ctx *Context, tree map[string]any) (Verdict, error) {
		tenant, _ := ctx.Connection("tenant")
		AddPredicate(tree, "orders", "tenant_id", tenant)
		return RewriteAST(tree)
	})
	if err != nil {
		t.Fatal(err)
	}
	var verdict Verdict
	if err := json.Unmarshal(out, &verdict); err != nil || verdict.Action.Kind != ActionRewrite {
		t.Fatalf("post-parse: %s %v", out, err)
	}
	rewritten := mustParse(t, verdict.Action.Text)
	lit := rewritten["where"].(map[string]any)["this"].(map[string]any)["expression"]
	if !reflect.DeepEqual(lit, map[string]any{"node": "literal", "this": "acme", "is_string": true}) {
		t.Fatalf("post-parse: %s", verdict.Action.Text)
	}
	if _, err := HandlePostParse(request(t, `"ast": "[1]"`), func(*Context, map[string]any) (Verdict, error) {
		return Allow(), nil
	}); !errors.Is(err, heliosdb.ErrInvalidArgument) {
		t.Fatalf("post-parse with a bad AST: %v", err)
	}

	out, err = HandlePreExecution(request(t, `"sql": "SELECT ?", "params": [{"integer": 9007199254740993}, {"boolean": true}]`),
		func(ctx *Context, sql string, params []heliosdb.Value) (Verdict, error) {
			if len(params) != 2 || params[0].Int64() != 9007199254740993 || !params[1].Bool() {
				t.Errorf("params %v", params)
			}
			return Reject("53400", "rate limit").SetSession("n", "1"), nil
		})
	if err != nil || string(out) != `{"action":{"reject":{"sqlstate":"53400","message":"rate limit"}},"set-session":[["n","1"]]}` {
		t.Fatalf("pre-execution: %s %v", out, err)
	}
	_, err = HandlePreExecution(request(t, `"sql": "SELECT 1", "params": []`),
		func(*Context, string, []heliosdb.Value) (Verdict, error) { return Rewrite("x"), nil })
	assertUserError(t, err, CodeVerdict, "a pre-execution hook cannot answer rewrite")
	_, err = HandlePreParse(request(t, `"sql": "SELECT 1"`),
		func(*Context, string) (Verdict, error) { return ReplaceRows(nil), nil })
	assertUserError(t, err, CodeVerdict, "a pre-parse hook cannot answer replace-rows")
}

func TestMalformedRequests(t *testing.T) {
	hook := func(*Context, []string, [][]heliosdb.Value) (Verdict, error) {
		t.Error("the hook ran")
		return Allow(), nil
	}
	for _, bad := range []string{
		``, `[]`, `{"ctx": 5}`, `{"ctx": {}, "rows": [[{"integer": 1.5}]]}`,
		`{"ctx": {"query-id": -1}}`, `{"ctx": {}, "rows": [["NULL"]]}`,
	} {
		_, err := HandlePostExecution(heliosdb.JSON(bad), hook)
		if !errors.Is(err, heliosdb.ErrInvalidArgument) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// A request encoded by this package reads back the same (tools and tests
// build requests with it).
func TestRequestRoundTrip(t *testing.T) {
	req := PostExecutionRequest{
		Ctx:     Context{QueryID: 1, User: "u", SessionVars: [][2]string{{"a", "b"}}},
		Columns: []string{"n"},
		Rows:    [][]heliosdb.Value{{heliosdb.Int64Value(-1 << 62)}},
	}
	data, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var back PostExecutionRequest
	if err := json.Unmarshal(data, &back); err != nil || back.Rows[0][0].Int64() != -1<<62 || back.Ctx.SessionVars[0][1] != "b" {
		t.Fatalf("%s: %+v %v", data, back, err)
	}
	pre := PreExecutionRequest{SQL: "SELECT ?", Params: []heliosdb.Value{heliosdb.TextValue("x")}}
	data, _ = json.Marshal(pre)
	var preBack PreExecutionRequest
	if err := json.Unmarshal(data, &preBack); err != nil || preBack.Params[0].Text() != "x" {
		t.Fatalf("%s: %+v %v", data, preBack, err)
	}
}

func TestCountInWindowChecksItsArguments(t *testing.T) {
	for _, c := range []struct {
		key    string
		window int64
	}{{"k", 0}, {"k", -1}, {"\xff", 1000}} {
		if _, err := CountInWindow(c.key, c.window); !errors.Is(err, heliosdb.ErrInvalidArgument) {
			t.Errorf("%q %d: %v", c.key, c.window, err)
		}
	}
}
