package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"

	heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"
)

// ActionKind is a case of the WIT action variant.
type ActionKind uint8

const (
	// ActionAllow lets the statement (or its rows) through unchanged.
	ActionAllow ActionKind = iota
	// ActionReject fails the statement with a SQLSTATE and a message.
	ActionReject
	// ActionRewrite replaces the SQL text (pre-parse) or the AST (post-parse).
	ActionRewrite
	// ActionReplaceRows replaces the result's rows (post-execution).
	ActionReplaceRows
)

var actionNames = [...]string{"allow", "reject", "rewrite", "replace-rows"}

// String is the case's WIT name.
func (k ActionKind) String() string {
	if int(k) < len(actionNames) {
		return actionNames[k]
	}
	return "ActionKind(" + strconv.Itoa(int(k)) + ")"
}

// Rejection is the SQLSTATE and message a rejected statement fails with.
type Rejection struct {
	SQLState string `json:"sqlstate"`
	Message  string `json:"message"`
}

// Action is what a verdict does; Kind says which of the other fields
// applies.
type Action struct {
	Kind      ActionKind
	Rejection Rejection          // ActionReject
	Text      string             // ActionRewrite: SQL text or AST JSON
	Rows      [][]heliosdb.Value // ActionReplaceRows
}

// Verdict is a hook's answer (WIT plugin-types.verdict). The zero Verdict
// allows.
type Verdict struct {
	Action Action
	// Session lists session variables to set, in order; see SetSession.
	Session [][2]string
}

// Allow lets the statement or its rows through unchanged.
func Allow() Verdict { return Verdict{} }

// Reject fails the statement: the client gets sqlstate ("42501"
// insufficient privilege, "28000" invalid authorization, "53400"
// configuration limit exceeded, ...) and message.
func Reject(sqlstate, message string) Verdict {
	return Verdict{Action: Action{Kind: ActionReject, Rejection: Rejection{sqlstate, message}}}
}

// Rewrite replaces the statement: SQL text at pre-parse, the AST as JSON at
// post-parse (see RewriteAST).
func Rewrite(text string) Verdict {
	return Verdict{Action: Action{Kind: ActionRewrite, Text: text}}
}

// RewriteAST is Rewrite with the AST encoded by MarshalAST.
func RewriteAST(ast map[string]any) (Verdict, error) {
	text, err := MarshalAST(ast)
	if err != nil {
		return Verdict{}, err
	}
	return Rewrite(text), nil
}

// ReplaceRows returns rows instead of the statement's result
// (post-execution only); every row has the result's columns.
func ReplaceRows(rows [][]heliosdb.Value) Verdict {
	return Verdict{Action: Action{Kind: ActionReplaceRows, Rows: rows}}
}

// SetSession returns the verdict with the session variable name set to
// value as well: later plugins of the statement and later statements of
// the session see it, and the client can no longer SET or RESET it.
//
//	return plugin.Allow().SetSession("auth.role", role), nil
func (v Verdict) SetSession(name, value string) Verdict {
	v.Session = append(v.Session[:len(v.Session):len(v.Session)], [2]string{name, value})
	return v
}

// AppendJSON appends the verdict's JSON form (docs/plugins.md §3).
func (v Verdict) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"action":`...)
	a := v.Action
	switch a.Kind {
	case ActionAllow:
		b = append(b, `"allow"`...)
	case ActionReject:
		b = append(b, `{"reject":{"sqlstate":`...)
		b = appendString(b, a.Rejection.SQLState)
		b = append(b, `,"message":`...)
		b = appendString(b, a.Rejection.Message)
		b = append(b, "}}"...)
	case ActionRewrite:
		b = append(b, `{"rewrite":`...)
		b = appendString(b, a.Text)
		b = append(b, '}')
	case ActionReplaceRows:
		b = append(b, `{"replace-rows":[`...)
		for i, row := range a.Rows {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '[')
			for j, cell := range row {
				if j > 0 {
					b = append(b, ',')
				}
				b = AppendValue(b, cell)
			}
			b = append(b, ']')
		}
		b = append(b, "]}"...)
	default:
		return nil, errors.New("plugin: unknown action " + a.Kind.String())
	}
	if len(v.Session) > 0 {
		b = append(b, `,"set-session":[`...)
		for i, p := range v.Session {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '[')
			b = appendString(b, p[0])
			b = append(b, ',')
			b = appendString(b, p[1])
			b = append(b, ']')
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

// MarshalJSON encodes the verdict as docs/plugins.md §3 shows. Through
// json.Marshal, replaced rows holding ±Infinity fail encoding/json's
// validity check (Python's json reads them; strict JSON has no spelling
// for them); AppendJSON, which the Handle functions use, does not check.
func (v Verdict) MarshalJSON() ([]byte, error) { return v.AppendJSON(nil) }

// UnmarshalJSON reads a verdict (for tests, and for plugins that call
// other code returning verdicts as JSON).
func (v *Verdict) UnmarshalJSON(data []byte) error {
	var raw struct {
		Action     json.RawMessage `json:"action"`
		SetSession [][2]string     `json:"set-session"`
	}
	if err := json.Unmarshal(quoteNonFinite(data), &raw); err != nil {
		return err
	}
	if raw.Action == nil {
		return errors.New("plugin: a verdict needs an action")
	}
	action, err := decodeAction(raw.Action)
	if err != nil {
		return err
	}
	*v = Verdict{Action: action, Session: raw.SetSession}
	return nil
}

func decodeAction(data json.RawMessage) (Action, error) {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '"' {
		var name string
		if err := json.Unmarshal(data, &name); err != nil {
			return Action{}, err
		}
		if name == "allow" {
			return Action{Kind: ActionAllow}, nil
		}
		return Action{}, errors.New("plugin: unknown action " + strconv.Quote(name))
	}
	var cases map[string]json.RawMessage
	if err := json.Unmarshal(data, &cases); err != nil {
		return Action{}, err
	}
	if len(cases) != 1 {
		return Action{}, errors.New("plugin: an action object holds exactly one member")
	}
	for name, payload := range cases {
		switch name {
		case "reject":
			var r Rejection
			err := json.Unmarshal(payload, &r)
			return Action{Kind: ActionReject, Rejection: r}, err
		case "rewrite":
			var text string
			err := json.Unmarshal(payload, &text)
			return Action{Kind: ActionRewrite, Text: text}, err
		case "replace-rows":
			rows, err := decodeRows(payload)
			return Action{Kind: ActionReplaceRows, Rows: rows}, err
		}
		return Action{}, errors.New("plugin: unknown action " + strconv.Quote(name))
	}
	panic("unreachable")
}

func decodeRows(data []byte) ([][]heliosdb.Value, error) {
	var wire [][]wireValue
	if err := json.Unmarshal(data, &wire); err != nil {
		return nil, err
	}
	return unwrapRows(wire), nil
}

func unwrapRows(wire [][]wireValue) [][]heliosdb.Value {
	rows := make([][]heliosdb.Value, len(wire))
	for i, w := range wire {
		rows[i] = unwrapValues(w)
	}
	return rows
}

func unwrapValues(wire []wireValue) []heliosdb.Value {
	values := make([]heliosdb.Value, len(wire))
	for i, w := range wire {
		values[i] = w.v
	}
	return values
}
