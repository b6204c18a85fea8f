package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"strings"

	heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"
)

// The AST of docs/plugins.md §4: every node is a map whose "node" member
// names its kind and whose other members are nodes (map[string]any),
// arrays ([]any) or plain strings, numbers (json.Number) and booleans.

const kindKey = "node"

// ParseAST decodes the JSON AST a post-parse hook receives. Numbers stay
// json.Number, so MarshalAST writes them back digit for digit.
func ParseAST(text string) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		return nil, errors.New("plugin: the AST is not JSON: " + err.Error())
	}
	if dec.More() {
		return nil, errors.New("plugin: the AST is followed by more JSON")
	}
	node, ok := root.(map[string]any)
	if !ok || Kind(node) == "" {
		return nil, errors.New(`plugin: the AST is not a node object (an object with a "node" member)`)
	}
	return node, nil
}

// MarshalAST encodes an AST for Rewrite (RewriteAST does both).
func MarshalAST(ast map[string]any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ast); err != nil {
		return "", errors.New("plugin: the AST does not encode: " + err.Error())
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// Kind is a node's kind ("select", "table", ...), "" if n is not a node.
func Kind(n any) string {
	m, ok := n.(map[string]any)
	if !ok {
		return ""
	}
	k, _ := m[kindKey].(string)
	return k
}

// memberOrder is the order members are visited in when order matters
// (Tables): maps have none, so this approximates the argument order of
// sqlglot's parser, which the engine's walk over the same tree follows.
var memberOrder = func() map[string]int {
	order := map[string]int{}
	for i, name := range []string{
		"this", "kind", "hint", "distinct", "expressions", "limit", "from_", "joins",
		"where", "group", "having", "order", "offset", "expression", "query", "on", "using",
		"with_",
	} {
		order[name] = i + 1
	}
	return order
}()

func sortedMembers(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != kindKey {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		oi, oj := memberOrder[keys[i]], memberOrder[keys[j]]
		if oi == 0 {
			oi = len(memberOrder) + 1
		}
		if oj == 0 {
			oj = len(memberOrder) + 1
		}
		if oi != oj {
			return oi < oj
		}
		return keys[i] < keys[j]
	})
	return keys
}

// children appends the nodes directly below v (a node or an array).
func children(v any, out []map[string]any) []map[string]any {
	switch t := v.(type) {
	case map[string]any:
		for _, k := range sortedMembers(t) {
			out = appendNodes(t[k], out)
		}
	case []any:
		for _, e := range t {
			out = appendNodes(e, out)
		}
	}
	return out
}

func appendNodes(v any, out []map[string]any) []map[string]any {
	switch t := v.(type) {
	case map[string]any:
		return append(out, t)
	case []any:
		for _, e := range t {
			out = appendNodes(e, out)
		}
	}
	return out
}

// walk visits every node breadth first (as the engine's walk does, so
// Tables lists names in the order the context's tables does).
func walk(root map[string]any, visit func(map[string]any)) {
	level := []map[string]any{root}
	for len(level) > 0 {
		var next []map[string]any
		for _, n := range level {
			visit(n)
			next = children(n, next)
		}
		level = next
	}
}

// identName is the text of a name node, as sqlglot's name reads it: an
// identifier's, a var's or a literal's; "" for anything else (a table
// function).
func identName(n any) string {
	m, ok := n.(map[string]any)
	if !ok {
		return ""
	}
	switch Kind(m) {
	case "identifier", "var", "literal":
		s, _ := m["this"].(string)
		return s
	}
	return ""
}

// tableName is the name of a table node ("" for a table-valued function).
func tableName(n any) string {
	m, ok := n.(map[string]any)
	if !ok || Kind(m) != "table" {
		return ""
	}
	return identName(m["this"])
}

// aliasIdent is the identifier node of a table's or CTE's alias, or nil.
func aliasIdent(n map[string]any) map[string]any {
	alias, ok := n["alias"].(map[string]any)
	if !ok {
		return nil
	}
	if Kind(alias) == "identifier" {
		return alias
	}
	id, _ := alias["this"].(map[string]any)
	if identName(id) == "" {
		return nil
	}
	return id
}

// Tables returns the name of every table node, lower case, in first
// occurrence order, without the names the statement's CTEs define: what
// the context's tables holds for the statement.
func Tables(ast map[string]any) []string {
	ctes := map[string]bool{}
	walk(ast, func(n map[string]any) {
		if Kind(n) == "cte" {
			if id := aliasIdent(n); id != nil {
				ctes[strings.ToLower(identName(id))] = true
			}
		}
	})
	seen := map[string]bool{}
	names := []string{}
	walk(ast, func(n map[string]any) {
		name := strings.ToLower(tableName(n))
		if name != "" && !ctes[name] && !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	})
	return names
}

// AddPredicate adds "<qualifier>.<column> = <value>" for every reference
// to table (case-insensitive) in the own from_, joins or target (this of
// update/delete) of every select, update and delete node anywhere in ast
// (subqueries, CTEs, both sides of a union), and returns how many it
// added. The qualifier is the reference's alias, else the table's name.
// The predicate is AND-ed into the node's where (created if absent) for
// the from_ table, update/delete targets and joins without on, and into
// the join's on for a joined table, so an outer join keeps its meaning.
// Existing conditions are wrapped in a paren so that their ORs keep their
// scope.
//
// Join groups count as the statement's own: the joins sqlglot hangs on the
// FROM table of UPDATE ... FROM a JOIN b, and parenthesised joins
// (FROM (a JOIN b ON ...), JOIN (b JOIN c ON ...) ON ...), which the tree
// holds as a subquery around a table with joins. Left out, they would let
// a statement reach the table unfiltered. A group's first table takes the
// condition of the group's own place (the where, or the on of the join
// that brings the group in).
//
// value is a string (a string literal) or an integer of any Go integer
// type, json.Number or heliosdb.Value holding one; anything else panics,
// as a programming error.
func AddPredicate(ast map[string]any, table, column string, value any) int {
	a := &adder{table: table, column: column, literal: literalFor(value)}
	var statements []map[string]any
	walk(ast, func(n map[string]any) {
		switch Kind(n) {
		case "select", "update", "delete":
			statements = append(statements, n)
		}
	})
	for _, s := range statements {
		var conditions []map[string]any
		toWhere := func(p map[string]any) { conditions = append(conditions, p) }
		if k := Kind(s); k == "update" || k == "delete" {
			a.source(s["this"], toWhere)
		}
		if from, ok := s["from_"].(map[string]any); ok && Kind(from) == "from" {
			a.source(from["this"], toWhere)
		}
		a.joins(s["joins"], toWhere)
		if len(conditions) == 0 {
			continue
		}
		var cond map[string]any
		where, ok := s["where"].(map[string]any)
		if ok && Kind(where) == "where" && where["this"] != nil {
			cond = paren(where["this"])
		} else {
			where = map[string]any{kindKey: "where"}
			s["where"] = where
			cond, conditions = conditions[0], conditions[1:]
		}
		for _, c := range conditions {
			cond = and(cond, c)
		}
		where["this"] = cond
	}
	return a.added
}

type adder struct {
	table, column string
	literal       func() map[string]any
	added         int
}

// source handles one table reference, or a parenthesised join group, whose
// predicate goes to target, and the tables joined to it.
func (a *adder) source(n any, target func(map[string]any)) {
	m, _ := n.(map[string]any)
	switch Kind(m) {
	case "table":
		if strings.EqualFold(tableName(m), a.table) {
			target(predicate(m, a.column, a.literal))
			a.added++
		}
		a.joins(m["joins"], target)
	case "subquery":
		// A subquery around a table is a join group; one around a query
		// is a statement of its own, which the walk reaches anyway.
		if inner, ok := m["this"].(map[string]any); ok && Kind(inner) == "table" {
			a.source(inner, target)
		}
	}
}

// joins handles a joins array: a joined table's predicate goes into its
// join's on; without an on (a cross join, USING, NATURAL) WHERE, or the
// enclosing group's place, is the only place left.
func (a *adder) joins(v any, outer func(map[string]any)) {
	list, _ := v.([]any)
	for _, j := range list {
		join, ok := j.(map[string]any)
		if !ok || Kind(join) != "join" {
			continue
		}
		target := outer
		if _, ok := join["on"].(map[string]any); ok {
			target = func(p map[string]any) { join["on"] = and(paren(join["on"]), p) }
		}
		a.source(join["this"], target)
	}
}

func and(left, right any) map[string]any {
	return map[string]any{kindKey: "and", "this": left, "expression": right}
}

func paren(inner any) map[string]any { return map[string]any{kindKey: "paren", "this": inner} }

// predicate is "<qualifier>.column = literal" for the table node t; each
// call builds fresh nodes, so later edits of one never show up in another.
func predicate(t map[string]any, column string, literal func() map[string]any) map[string]any {
	var qualifier map[string]any
	if id := aliasIdent(t); id != nil {
		qualifier = identifier(identName(id), id["quoted"] == true)
	} else if id, _ := t["this"].(map[string]any); Kind(id) == "identifier" {
		qualifier = identifier(identName(id), id["quoted"] == true)
	} else {
		name := tableName(t)
		qualifier = identifier(name, !plainIdentifier(name))
	}
	col := map[string]any{
		kindKey: "column",
		"this":  identifier(column, !plainIdentifier(column)),
		"table": qualifier,
	}
	return map[string]any{kindKey: "eq", "this": col, "expression": literal()}
}

func identifier(name string, quoted bool) map[string]any {
	return map[string]any{kindKey: "identifier", "this": name, "quoted": quoted}
}

// plainIdentifier reports whether name renders correctly unquoted.
func plainIdentifier(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		letter := c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// literalFor returns a constructor of value's literal node, in the form
// the engine's parser gives the same SQL: a negative integer is a neg of
// its absolute value.
func literalFor(value any) func() map[string]any {
	var text string
	isString := false
	switch v := value.(type) {
	case string:
		text, isString = v, true
	case int:
		text = strconv.FormatInt(int64(v), 10)
	case int8:
		text = strconv.FormatInt(int64(v), 10)
	case int16:
		text = strconv.FormatInt(int64(v), 10)
	case int32:
		text = strconv.FormatInt(int64(v), 10)
	case int64:
		text = strconv.FormatInt(v, 10)
	case uint:
		text = strconv.FormatUint(uint64(v), 10)
	case uint8:
		text = strconv.FormatUint(uint64(v), 10)
	case uint16:
		text = strconv.FormatUint(uint64(v), 10)
	case uint32:
		text = strconv.FormatUint(uint64(v), 10)
	case uint64:
		text = strconv.FormatUint(v, 10)
	case json.Number:
		if _, err := strconv.ParseInt(string(v), 10, 64); err != nil {
			panic("plugin.AddPredicate: the json.Number " + string(v) + " is not an integer")
		}
		text = string(v)
	case heliosdb.Value:
		switch v.Kind() {
		case heliosdb.KindText:
			text, isString = v.Text(), true
		case heliosdb.KindInteger:
			text = strconv.FormatInt(v.Int64(), 10)
		default:
			panic("plugin.AddPredicate: the value must be text or an integer, not " + v.Kind().String())
		}
	default:
		panic("plugin.AddPredicate: the value must be a string or an integer")
	}
	negative := !isString && strings.HasPrefix(text, "-")
	if negative {
		text = text[1:]
	}
	return func() map[string]any {
		lit := map[string]any{kindKey: "literal", "this": text, "is_string": isString}
		if negative {
			return map[string]any{kindKey: "neg", "this": lit}
		}
		return lit
	}
}
