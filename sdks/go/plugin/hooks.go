package plugin

import (
	"encoding/json"
	"strconv"
	"strings"

	heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"
)

// The hooks a plugin implements; a plain func with the same signature is
// one.
type (
	// PreParseHook sees the raw SQL text: allow, reject or rewrite(sql).
	PreParseHook func(ctx *Context, sql string) (Verdict, error)
	// PostParseHook sees the statement's AST (see ParseAST): allow, reject
	// or rewrite(ast JSON), most easily with RewriteAST.
	PostParseHook func(ctx *Context, ast map[string]any) (Verdict, error)
	// PreExecutionHook sees the final SQL text and its parameters: allow
	// or reject.
	PreExecutionHook func(ctx *Context, sql string, params []heliosdb.Value) (Verdict, error)
	// PostExecutionHook sees the result: allow (unchanged), reject or
	// replace-rows.
	PostExecutionHook func(ctx *Context, columns []string, rows [][]heliosdb.Value) (Verdict, error)
)

// The requests of the four hooks: each WIT parameter by name.
type (
	PreParseRequest struct {
		Ctx Context `json:"ctx"`
		SQL string  `json:"sql"`
	}
	PostParseRequest struct {
		Ctx Context `json:"ctx"`
		AST string  `json:"ast"`
	}
	PreExecutionRequest struct {
		Ctx    Context          `json:"ctx"`
		SQL    string           `json:"sql"`
		Params []heliosdb.Value `json:"-"`
	}
	PostExecutionRequest struct {
		Ctx     Context            `json:"ctx"`
		Columns []string           `json:"columns"`
		Rows    [][]heliosdb.Value `json:"-"`
	}
)

// The requests are read by the scanner (see scanner.go for why);
// members a later engine adds are skipped.

// decodeRequest reads a request object: its "ctx" into ctx, every other
// member through member, which reports whether it knew the key.
func decodeRequest(data []byte, ctx *Context, member func(s *scanner, key string) bool) error {
	return decode(data, func(s *scanner) {
		s.object(func(key string) {
			if key == "ctx" {
				s.context(ctx)
			} else if !member(s, key) {
				s.skip()
			}
		})
	})
}

// UnmarshalJSON reads a pre_parse request.
func (r *PreParseRequest) UnmarshalJSON(data []byte) error {
	*r = PreParseRequest{}
	return decodeRequest(data, &r.Ctx, func(s *scanner, key string) bool {
		switch key {
		case "sql":
			r.SQL = s.str()
		default:
			return false
		}
		return true
	})
}

// UnmarshalJSON reads a post_parse request.
func (r *PostParseRequest) UnmarshalJSON(data []byte) error {
	*r = PostParseRequest{}
	return decodeRequest(data, &r.Ctx, func(s *scanner, key string) bool {
		switch key {
		case "ast":
			r.AST = s.str()
		default:
			return false
		}
		return true
	})
}

// UnmarshalJSON reads a pre_execution request, params as SQL values
// (integers exactly).
func (r *PreExecutionRequest) UnmarshalJSON(data []byte) error {
	*r = PreExecutionRequest{Params: []heliosdb.Value{}}
	return decodeRequest(data, &r.Ctx, func(s *scanner, key string) bool {
		switch key {
		case "sql":
			r.SQL = s.str()
		case "params":
			r.Params = s.values(0)
		default:
			return false
		}
		return true
	})
}

// MarshalJSON writes the request as the engine sends it.
func (r PreExecutionRequest) MarshalJSON() ([]byte, error) {
	params := make([]wireValue, len(r.Params))
	for i, p := range r.Params {
		params[i] = wireValue{p}
	}
	return json.Marshal(struct {
		Ctx    Context     `json:"ctx"`
		SQL    string      `json:"sql"`
		Params []wireValue `json:"params"`
	}{r.Ctx, r.SQL, params})
}

// UnmarshalJSON reads a post_execution request, rows as SQL values
// (integers exactly).
func (r *PostExecutionRequest) UnmarshalJSON(data []byte) error {
	*r = PostExecutionRequest{Columns: []string{}, Rows: [][]heliosdb.Value{}}
	return decodeRequest(data, &r.Ctx, func(s *scanner, key string) bool {
		switch key {
		case "columns":
			r.Columns = s.strings()
		case "rows":
			r.Rows = s.rows()
		default:
			return false
		}
		return true
	})
}

// MarshalJSON writes the request as the engine sends it.
func (r PostExecutionRequest) MarshalJSON() ([]byte, error) {
	rows := make([][]wireValue, len(r.Rows))
	for i, row := range r.Rows {
		rows[i] = make([]wireValue, len(row))
		for j, v := range row {
			rows[i][j] = wireValue{v}
		}
	}
	return json.Marshal(struct {
		Ctx     Context       `json:"ctx"`
		Columns []string      `json:"columns"`
		Rows    [][]wireValue `json:"rows"`
	}{r.Ctx, r.Columns, rows})
}

// CodeVerdict is the user-error code of a verdict its stage does not
// allow (the engine would refuse it too, with less detail).
const CodeVerdict = "PLUGIN_VERDICT"

// HandlePreParse decodes a pre_parse request, calls hook and encodes its
// verdict: the body of a pre_parse export.
func HandlePreParse(request heliosdb.JSON, hook PreParseHook) (heliosdb.JSON, error) {
	return handle(request, "pre_parse", func(req *PreParseRequest) (Verdict, error) {
		return hook(&req.Ctx, req.SQL)
	}, ActionReject, ActionRewrite)
}

// HandlePostParse decodes a post_parse request, parses its AST (ParseAST),
// calls hook and encodes its verdict.
func HandlePostParse(request heliosdb.JSON, hook PostParseHook) (heliosdb.JSON, error) {
	return handle(request, "post_parse", func(req *PostParseRequest) (Verdict, error) {
		ast, err := ParseAST(req.AST)
		if err != nil {
			return Verdict{}, badRequest("post_parse", err)
		}
		return hook(&req.Ctx, ast)
	}, ActionReject, ActionRewrite)
}

// HandlePreExecution decodes a pre_execution request, calls hook and
// encodes its verdict.
func HandlePreExecution(request heliosdb.JSON, hook PreExecutionHook) (heliosdb.JSON, error) {
	return handle(request, "pre_execution", func(req *PreExecutionRequest) (Verdict, error) {
		return hook(&req.Ctx, req.SQL, req.Params)
	}, ActionReject)
}

// HandlePostExecution decodes a post_execution request, calls hook and
// encodes its verdict. Replaced rows must have the result's columns.
func HandlePostExecution(request heliosdb.JSON, hook PostExecutionHook) (heliosdb.JSON, error) {
	return handle(request, "post_execution", func(req *PostExecutionRequest) (Verdict, error) {
		v, err := hook(&req.Ctx, req.Columns, req.Rows)
		if err != nil || v.Action.Kind != ActionReplaceRows {
			return v, err
		}
		for i, row := range v.Action.Rows {
			if len(row) != len(req.Columns) {
				return v, heliosdb.UserError(CodeVerdict, "post-execution: replaced row "+
					strconv.Itoa(i)+" has "+strconv.Itoa(len(row))+" values, the result has "+
					strconv.Itoa(len(req.Columns))+" columns")
			}
		}
		return v, nil
	}, ActionReject, ActionReplaceRows)
}

// hookRequest is a pointer to one of the four requests, which decodes itself.
type hookRequest[R any] interface {
	*R
	json.Unmarshaler
}

// handle is the body of every Handle*: it decodes request (of the hook
// named hook, e.g. pre_parse) into a fresh R, calls call on it and encodes
// the verdict, which may be allow or one of allowed. An error of call is
// returned as it is. (Generic rather than reflective, for TinyGo.)
func handle[R any, P hookRequest[R]](request heliosdb.JSON, hook string,
	call func(P) (Verdict, error), allowed ...ActionKind) (heliosdb.JSON, error) {
	req := P(new(R))
	if err := req.UnmarshalJSON(request); err != nil {
		return nil, badRequest(hook, err)
	}
	v, err := call(req)
	if err != nil {
		return nil, err
	}
	return encodeVerdict(strings.ReplaceAll(hook, "_", "-"), len(request), v, allowed...)
}

// badRequest is invalid-argument (a reserved code, so the call fails with
// that WIT case): the request did not come in the documented form.
func badRequest(hook string, err error) error {
	return &heliosdb.Error{Code: heliosdb.CodeInvalidArgument,
		Message: "plugin: the " + hook + " request does not decode: " + err.Error()}
}

func encodeVerdict(stage string, sizeHint int, v Verdict, allowed ...ActionKind) (heliosdb.JSON, error) {
	ok := v.Action.Kind == ActionAllow
	for _, k := range allowed {
		ok = ok || v.Action.Kind == k
	}
	if !ok {
		return nil, heliosdb.UserError(CodeVerdict, "a "+stage+" hook cannot answer "+v.Action.Kind.String())
	}
	size := 64
	if v.Action.Kind == ActionReplaceRows || v.Action.Kind == ActionRewrite {
		// Replaced rows and rewrites are about as long as what came in:
		// one allocation instead of a dozen doublings.
		size += sizeHint
	}
	data, err := v.AppendJSON(make([]byte, 0, size))
	if err != nil {
		return nil, heliosdb.UserError(CodeVerdict, err.Error())
	}
	return heliosdb.JSON(data), nil
}
