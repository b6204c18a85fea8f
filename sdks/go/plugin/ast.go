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
// scope. It changes ast in place, exactly as the Python SDK's
// add_predicate (the reference implementation) does.
//
// Join groups count as the statement's own: the joins sqlglot hangs on the
// FROM table of UPDATE ... FROM a JOIN b, and parenthesised joins
// (FROM (a JOIN b ON ...), JOIN (b JOIN c ON ...) ON ..., nested ones,
// groups starting with a derived table, VALUES or a table function), which
// the tree holds as a subquery around a table or group carrying joins. A
// group's first item takes the condition of the group's own place (the
// where, or the on of the join that brings the group in). Parentheses
// around one table give it their alias (SQLite: (orders) AS o is orders
// named o; the outermost alias when nested). The preserved side of a RIGHT
// or FULL join is filtered in that place too, never in the join's on,
// which cannot remove its rows.
//
// Also covered: x IN orders (SQLite's bare-table IN), rewritten as
// x IN (SELECT * FROM orders WHERE ...), and the row an INSERT ... ON
// CONFLICT DO UPDATE would change (the predicate goes into the upsert's
// where). Rows an INSERT adds are not filtered: check those separately.
//
// value is a string (a string literal) or an integer of any Go integer
// type, json.Number or heliosdb.Value holding one; anything else panics,
// as a programming error.
func AddPredicate(ast map[string]any, table, column string, value any) int {
	a := &adder{table: strings.ToLower(table), column: column, literal: literalFor(value)}
	// x IN orders first: the statement pass below filters the select it
	// becomes.
	for _, n := range allNodes(ast) {
		if Kind(n) == "in" {
			a.inTable(n)
		}
	}
	for _, n := range allNodes(ast) {
		switch Kind(n) {
		case "select", "update", "delete":
			a.statement(n)
		case "insert":
			a.upsert(n)
		}
	}
	return a.added
}

// allNodes lists every object of the tree, as the Python SDK's walk does:
// the objects among a node's members and directly in its arrays. The
// order does not matter to AddPredicate, which edits each statement on
// its own.
func allNodes(root map[string]any) []map[string]any {
	out := []map[string]any{root}
	for i := 0; i < len(out); i++ {
		for k, v := range out[i] {
			if k == kindKey {
				continue
			}
			switch t := v.(type) {
			case map[string]any:
				out = append(out, t)
			case []any:
				for _, e := range t {
					if m, ok := e.(map[string]any); ok {
						out = append(out, m)
					}
				}
			}
		}
	}
	return out
}

// present reports whether m has the member name with a non-null value.
func present(m map[string]any, name string) bool {
	v, ok := m[name]
	return ok && v != nil
}

// truthy reports whether v counts as true in Python: a non-empty array,
// object or string, a non-zero number, true.
func truthy(v any) bool {
	switch t := v.(type) {
	case nil:
		return false
	case bool:
		return t
	case string:
		return t != ""
	case []any:
		return len(t) > 0
	case map[string]any:
		return len(t) > 0
	case json.Number:
		f, err := t.Float64()
		return err != nil || f != 0
	case float64:
		return t != 0
	}
	return true
}

type adder struct {
	table, column string // table lower case
	literal       func() map[string]any
	added         int
}

// target receives a predicate: the statement's where, or a join's on.
type target func(map[string]any)

// predicate is "<qualifier>.column = literal" for the table node t, named
// alias when parentheses around it give it one; each call builds fresh
// nodes, so later edits of one never show up in another.
func (a *adder) predicate(t, alias map[string]any) map[string]any {
	col := map[string]any{
		kindKey: "column",
		"this":  identifier(a.column, !plainIdentifier(a.column)),
		"table": qualifier(t, alias),
	}
	a.added++
	return map[string]any{kindKey: "eq", "this": col, "expression": a.literal()}
}

// source handles one item of a FROM (a table, a parenthesised group, a
// derived table, VALUES, a table function) whose predicate goes to target,
// and the joins hung on it, which belong to the same place.
func (a *adder) source(n any, to target, alias map[string]any) {
	m, _ := n.(map[string]any)
	switch Kind(m) {
	case "table":
		if strings.ToLower(tableName(m)) == a.table {
			to(a.predicate(m, alias))
		}
	case "subquery":
		// Parentheses around a table or a group: (orders), (a JOIN b ON
		// ...), ((a JOIN b ON ...) JOIN c ON ...). Around a query they are
		// a derived table, a statement of its own that the walk reaches.
		inner, _ := m["this"].(map[string]any)
		if k := Kind(inner); k == "table" || k == "subquery" {
			if truthy(inner["joins"]) {
				alias = nil // names the group, not its tables
			} else if alias == nil {
				alias = aliasIdent(m)
			}
			a.source(inner, to, alias)
		}
	}
	if m != nil {
		a.joins(m["joins"], to)
	}
}

// joins handles a joins array: a joined item's predicate goes into its
// join's on, so an outer join keeps its meaning; outer (the where, or the
// place of the enclosing group) takes it when the join has no on (CROSS,
// USING, NATURAL) or keeps the joined item's rows whatever the on says
// (RIGHT, FULL).
func (a *adder) joins(v any, outer target) {
	list, _ := v.([]any)
	for _, j := range list {
		join, ok := j.(map[string]any)
		if !ok || Kind(join) != "join" {
			continue
		}
		to := outer
		side, _ := join["side"].(string)
		preserved := strings.ToUpper(side) == "RIGHT" || strings.ToUpper(side) == "FULL"
		if _, ok := join["on"].(map[string]any); ok && !preserved {
			to = func(p map[string]any) { join["on"] = and(paren(join["on"]), p) }
		}
		a.source(join["this"], to, nil)
	}
}

// statement handles a select, update or delete: its target, FROM and
// joins.
func (a *adder) statement(n map[string]any) {
	var conditions []map[string]any
	toWhere := func(p map[string]any) { conditions = append(conditions, p) }
	if k := Kind(n); k == "update" || k == "delete" {
		a.source(n["this"], toWhere, nil)
	}
	if from, ok := n["from_"].(map[string]any); ok && Kind(from) == "from" {
		a.source(from["this"], toWhere, nil)
	}
	a.joins(n["joins"], toWhere)
	andInto(n, "where", conditions)
}

// upsert handles INSERT ... ON CONFLICT DO UPDATE, which changes (and
// RETURNING shows) the row already there, whoever's it is: its where must
// hold for that row.
func (a *adder) upsert(n map[string]any) {
	conflict, _ := n["conflict"].(map[string]any)
	if Kind(conflict) != "onconflict" || strings.ToUpper(identName(conflict["action"])) != "DO UPDATE" {
		return
	}
	t, _ := n["this"].(map[string]any)
	if Kind(t) == "schema" {
		t, _ = t["this"].(map[string]any)
	}
	if Kind(t) == "table" && strings.ToLower(tableName(t)) == a.table {
		andInto(conflict, "where", []map[string]any{a.predicate(t, nil)})
	}
}

// inTable rewrites x IN orders as x IN (SELECT * FROM orders), so that
// the statement pass filters it.
func (a *adder) inTable(n map[string]any) {
	field, _ := n["field"].(map[string]any)
	if Kind(field) != "column" || strings.ToLower(identName(field["this"])) != a.table {
		return
	}
	if present(field, "db") || present(field, "catalog") {
		return // not a table name SQLite accepts after IN
	}
	t := map[string]any{kindKey: "table", "this": field["this"]}
	if present(field, "table") {
		t["db"] = field["table"] // IN main.orders
	}
	delete(n, "field")
	sel := map[string]any{
		kindKey:       "select",
		"expressions": []any{map[string]any{kindKey: "star"}},
		"from_":       map[string]any{kindKey: "from", "this": t},
	}
	n["query"] = map[string]any{kindKey: "subquery", "this": sel}
}

// andInto ANDs conditions into n's clause (a where node, created if
// absent), the existing condition wrapped in a paren.
func andInto(n map[string]any, clause string, conditions []map[string]any) {
	if len(conditions) == 0 {
		return
	}
	var cond any
	where, ok := n[clause].(map[string]any)
	if ok && Kind(where) == "where" && where["this"] != nil {
		cond = paren(where["this"])
	} else {
		where = map[string]any{kindKey: "where"}
		n[clause] = where
		cond, conditions = conditions[0], conditions[1:]
	}
	for _, c := range conditions {
		cond = and(cond, c)
	}
	where["this"] = cond
}

func and(left, right any) map[string]any {
	return map[string]any{kindKey: "and", "this": left, "expression": right}
}

func paren(inner any) map[string]any { return map[string]any{kindKey: "paren", "this": inner} }

// qualifier is the identifier naming the table node t in its statement:
// alias (of parentheses around the table alone), else the table's own
// alias, else its name as written.
func qualifier(t, alias map[string]any) map[string]any {
	id := alias
	if id == nil {
		id = aliasIdent(t)
	}
	if id == nil {
		if this, _ := t["this"].(map[string]any); Kind(this) == "identifier" {
			id = this
		}
	}
	if id == nil {
		name := tableName(t)
		return identifier(name, !plainIdentifier(name))
	}
	return identifier(identName(id), id["quoted"] == true)
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
		i, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			panic("plugin.AddPredicate: the json.Number " + string(v) + " is not an integer")
		}
		text = strconv.FormatInt(i, 10) // the integer's digits: 7 for 007 or +7, 0 for -0
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
