// Command heliosdb-gen writes the //go:wasmexport wrappers of a Go procedure
// package, so that procedures are ordinary Go functions.
//
// It reads the package in the given directory (default ".", the files that
// build for GOOS=wasip1 GOARCH=wasm) and finds every top-level function whose
// doc comment holds the directive
//
//	//heliosdb:procedure [sql_name]
//
// (sql_name defaults to the function name in snake_case). For each it
// writes, into heliosdb_exports.go, an export named sql_name whose wasm
// signature is the Basic ABI's (docs/abi.md section 3) and which converts
// arguments and results with package abi of the SDK:
//
//	Go parameter/result                 SQL            wasm
//	int64, int                          BIGINT         i64
//	int32                               INTEGER        i32
//	float64                             DOUBLE         f64
//	float32                             REAL           f32
//	bool                                BOOLEAN        i32
//	string                              TEXT           (ptr, len) / heliosdb_return
//	[]byte                              BLOB           (ptr, len) / heliosdb_return
//	heliosdb.JSON, json.RawMessage      JSON           (ptr, len) / heliosdb_return
//	*T of the above                     nullable T (parameters need CALLED ON NULL INPUT)
//	S or *S, S a struct of the package  JSON result    encoding/json
//	[]S, S a struct of the package      TABLE(...)     heliosdb_return(rows)
//
// Named types of the package whose underlying type is one of the scalars
// (type Cents int64) map like it. A function returns nothing, a value, an
// error, or a value and an error; a non-nil error fails the call
// (heliosdb.UserError keeps its code). A table's columns are the struct's
// fields in order, named by a `heliosdb:"name"` tag or the field name in
// snake_case; `heliosdb:"-"` skips a field.
//
// Usage:
//
//	heliosdb-gen [-o file] [-sql] [dir]
//
// -o names the output (default dir/heliosdb_exports.go; "-" is stdout);
// -sql also prints each procedure's SQL signature, for CREATE PROCEDURE.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/build"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

const (
	sdkPath     = "github.com/heliosdb/heliosdb-wasm/sdks/go"
	abiPath     = sdkPath + "/abi"
	directive   = "//heliosdb:procedure"
	defaultOut  = "heliosdb_exports.go"
	tagKey      = "heliosdb"
	wrapperName = "heliosdbExport_"
)

func main() {
	out := flag.String("o", "", "output file (default <dir>/"+defaultOut+"; - for stdout)")
	printSQL := flag.Bool("sql", false, "print the SQL signature of every procedure")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: heliosdb-gen [-o file] [-sql] [dir]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	dir := "."
	if flag.NArg() > 1 {
		flag.Usage()
		os.Exit(2)
	} else if flag.NArg() == 1 {
		dir = flag.Arg(0)
	}
	target := *out
	if target == "" {
		target = filepath.Join(dir, defaultOut)
	}
	procs, src, err := generate(dir, filepath.Base(target))
	if err != nil {
		fmt.Fprintln(os.Stderr, "heliosdb-gen:", err)
		os.Exit(1)
	}
	if *printSQL {
		for _, p := range procs {
			fmt.Println(p.sqlSignature())
		}
	}
	if target == "-" {
		os.Stdout.Write(src)
		return
	}
	if err := os.WriteFile(target, src, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "heliosdb-gen:", err)
		os.Exit(1)
	}
}

// --- types --------------------------------------------------------------------

type kind int

const (
	kInt64 kind = iota
	kInt32
	kFloat64
	kFloat32
	kBool
	kString
	kBytes
	kJSON
)

var kindInfo = [...]struct {
	sql  string
	wasm []string // Go types of the wasm parameters
	res  string   // Go type of the wasm result ("" for heliosdb_return)
	base string   // the Go type the wrapper converts through
}{
	kInt64:   {"BIGINT", []string{"int64"}, "int64", "int64"},
	kInt32:   {"INTEGER", []string{"int32"}, "int32", "int32"},
	kFloat64: {"DOUBLE", []string{"float64"}, "float64", "float64"},
	kFloat32: {"REAL", []string{"float32"}, "float32", "float32"},
	kBool:    {"BOOLEAN", []string{"int32"}, "int32", "bool"},
	kString:  {"TEXT", []string{"uint32", "uint32"}, "", "string"},
	kBytes:   {"BLOB", []string{"uint32", "uint32"}, "", "[]byte"},
	kJSON:    {"JSON", []string{"uint32", "uint32"}, "", "[]byte"},
}

func (k kind) numeric() bool { return k <= kBool }

// scalar is a Go type that maps to one SQL value.
type scalar struct {
	kind     kind
	goType   string // the type as the package spells it (for conversions)
	nullable bool   // *T
}

type column struct {
	name  string // SQL column name
	field string // Go field name
	typ   scalar
}

// result says how a procedure's value result is returned.
type result struct {
	none   bool
	scalar *scalar
	table  []column // []S
	json   string   // S or *S marshaled with encoding/json ("S" or "*S")
}

type param struct {
	name string // SQL name
	typ  scalar
}

type procedure struct {
	sqlName  string
	goName   string
	pos      token.Position
	params   []param
	result   result
	hasError bool
}

func (p *procedure) sqlSignature() string {
	var b strings.Builder
	b.WriteString(p.sqlName + "(")
	nullable := false
	for i, a := range p.params {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(a.name + " " + kindInfo[a.typ.kind].sql)
		nullable = nullable || a.typ.nullable
	}
	b.WriteString(") RETURNS ")
	switch {
	case p.result.none:
		b.WriteString("VOID")
	case p.result.scalar != nil:
		b.WriteString(kindInfo[p.result.scalar.kind].sql)
	case p.result.table != nil:
		b.WriteString("TABLE(")
		for i, c := range p.result.table {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(c.name + " " + kindInfo[c.typ.kind].sql)
		}
		b.WriteString(")")
	default:
		b.WriteString("JSON")
	}
	if nullable {
		b.WriteString(" CALLED ON NULL INPUT")
	}
	return b.String()
}

// --- reading the package ---------------------------------------------------------

type pkg struct {
	fset    *token.FileSet
	structs map[string]*ast.StructType
	named   map[string]ast.Expr // type X <expr> (not structs)
}

type fileScope struct {
	sdk  string // local name of the SDK package ("" if not imported)
	json string // local name of encoding/json
}

func generate(dir, outName string) ([]*procedure, []byte, error) {
	ctx := build.Default
	ctx.GOOS, ctx.GOARCH = "wasip1", "wasm"
	ctx.CgoEnabled = false
	bp, err := ctx.ImportDir(dir, 0)
	var noGo *build.NoGoError
	if err != nil && !errors.As(err, &noGo) {
		return nil, nil, err
	}
	if err != nil || bp == nil {
		return nil, nil, fmt.Errorf("%s: no Go files", dir)
	}
	p := &pkg{fset: token.NewFileSet(), structs: map[string]*ast.StructType{}, named: map[string]ast.Expr{}}
	var files []*ast.File
	for _, name := range bp.GoFiles {
		if name == outName || name == defaultOut {
			continue
		}
		f, err := parser.ParseFile(p.fset, filepath.Join(dir, name), nil, parser.ParseComments)
		if err != nil {
			return nil, nil, err
		}
		files = append(files, f)
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, s := range gd.Specs {
				ts := s.(*ast.TypeSpec)
				if ts.TypeParams != nil {
					continue
				}
				if st, ok := ts.Type.(*ast.StructType); ok {
					p.structs[ts.Name.Name] = st
				} else {
					p.named[ts.Name.Name] = ts.Type
				}
			}
		}
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("%s: no Go files", dir)
	}
	pkgName := files[0].Name.Name
	var procs []*procedure
	seen := map[string]token.Position{}
	for _, f := range files {
		scope := scopeOf(f)
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok {
				continue
			}
			name, marked, err := procedureDirective(p.fset, fd)
			if err != nil {
				return nil, nil, err
			}
			if !marked {
				continue
			}
			proc, err := p.analyze(fd, name, scope)
			if err != nil {
				return nil, nil, err
			}
			if prev, dup := seen[proc.sqlName]; dup {
				return nil, nil, fmt.Errorf("%s: procedure %s is also defined at %s", proc.pos, proc.sqlName, prev)
			}
			seen[proc.sqlName] = proc.pos
			procs = append(procs, proc)
		}
	}
	if len(procs) == 0 {
		return nil, nil, fmt.Errorf("%s: no function is marked %s", dir, directive)
	}
	src, err := render(pkgName, procs)
	return procs, src, err
}

func scopeOf(f *ast.File) fileScope {
	var s fileScope
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		local := ""
		if imp.Name != nil {
			local = imp.Name.Name
		}
		switch path {
		case sdkPath:
			if local == "" {
				local = "heliosdb"
			}
			s.sdk = local
		case "encoding/json":
			if local == "" {
				local = "json"
			}
			s.json = local
		}
	}
	return s
}

func procedureDirective(fset *token.FileSet, fd *ast.FuncDecl) (string, bool, error) {
	if fd.Doc == nil {
		return "", false, nil
	}
	for _, c := range fd.Doc.List {
		text := c.Text
		if strings.HasPrefix(text, "// heliosdb:procedure") {
			return "", false, fmt.Errorf("%s: write the directive without a space: %s", fset.Position(c.Pos()), directive)
		}
		if text != directive && !strings.HasPrefix(text, directive+" ") {
			continue
		}
		args := strings.Fields(strings.TrimPrefix(text, directive))
		switch len(args) {
		case 0:
			return snake(fd.Name.Name), true, nil
		case 1:
			return args[0], true, nil
		}
		return "", false, fmt.Errorf("%s: %s takes one SQL name, got %q", fset.Position(c.Pos()), directive, args)
	}
	return "", false, nil
}

func (p *pkg) analyze(fd *ast.FuncDecl, sqlName string, scope fileScope) (*procedure, error) {
	pos := p.fset.Position(fd.Pos())
	where := fmt.Sprintf("%s: %s", pos, fd.Name.Name)
	if !validName(sqlName) {
		return nil, fmt.Errorf("%s: %q is not a valid SQL name (letters, digits, _)", where, sqlName)
	}
	if strings.HasPrefix(sqlName, "heliosdb_") || strings.HasPrefix(sqlName, "_") {
		return nil, fmt.Errorf("%s: the export name %s is reserved", where, sqlName)
	}
	if fd.Recv != nil || fd.Type.TypeParams != nil {
		return nil, fmt.Errorf("%s: a procedure is a plain top-level function (no receiver, no type parameters)", where)
	}
	proc := &procedure{sqlName: sqlName, goName: fd.Name.Name, pos: pos}
	for _, field := range fd.Type.Params.List {
		if _, ok := field.Type.(*ast.Ellipsis); ok {
			return nil, fmt.Errorf("%s: variadic parameters have no SQL mapping", where)
		}
		typ, err := p.scalarOf(field.Type, scope, true)
		if err != nil {
			return nil, fmt.Errorf("%s: parameter %s", where, err)
		}
		names := field.Names
		if len(names) == 0 {
			names = []*ast.Ident{ast.NewIdent(fmt.Sprintf("arg%d", len(proc.params)))}
		}
		for _, n := range names {
			name := snake(n.Name)
			if n.Name == "_" {
				name = fmt.Sprintf("arg%d", len(proc.params))
			}
			proc.params = append(proc.params, param{name: name, typ: typ})
		}
	}
	var results []ast.Expr
	if fd.Type.Results != nil {
		for _, field := range fd.Type.Results.List {
			n := len(field.Names)
			if n == 0 {
				n = 1
			}
			for i := 0; i < n; i++ {
				results = append(results, field.Type)
			}
		}
	}
	if len(results) > 0 && isError(results[len(results)-1]) {
		proc.hasError = true
		results = results[:len(results)-1]
	}
	switch len(results) {
	case 0:
		proc.result.none = true
	case 1:
		r, err := p.resultOf(results[0], scope)
		if err != nil {
			return nil, fmt.Errorf("%s: result %s", where, err)
		}
		proc.result = r
	default:
		return nil, fmt.Errorf("%s: a procedure returns at most one value and an error", where)
	}
	return proc, nil
}

func isError(e ast.Expr) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == "error"
}

var builtin = map[string]kind{
	"int64": kInt64, "int": kInt64, "int32": kInt32, "float64": kFloat64,
	"float32": kFloat32, "bool": kBool, "string": kString,
}

const supported = "int64, int, int32, float64, float32, bool, string, []byte, heliosdb.JSON, json.RawMessage or a pointer to one"

func (p *pkg) scalarOf(e ast.Expr, scope fileScope, allowPtr bool) (scalar, error) {
	if star, ok := e.(*ast.StarExpr); ok && allowPtr {
		s, err := p.scalarOf(star.X, scope, false)
		s.nullable = true
		return s, err
	}
	return p.plainScalar(e, scope, 0)
}

func (p *pkg) plainScalar(e ast.Expr, scope fileScope, depth int) (scalar, error) {
	text := exprString(p.fset, e)
	switch t := e.(type) {
	case *ast.Ident:
		if k, ok := builtin[t.Name]; ok {
			return scalar{kind: k, goType: t.Name}, nil
		}
		if under, ok := p.named[t.Name]; ok && depth < 8 {
			s, err := p.plainScalar(under, scope, depth+1)
			if err == nil {
				s.goType = t.Name
				return s, nil
			}
		}
	case *ast.ArrayType:
		if id, ok := t.Elt.(*ast.Ident); ok && t.Len == nil && (id.Name == "byte" || id.Name == "uint8") {
			return scalar{kind: kBytes, goType: "[]byte"}, nil
		}
	case *ast.SelectorExpr:
		if x, ok := t.X.(*ast.Ident); ok {
			if scope.sdk != "" && x.Name == scope.sdk && t.Sel.Name == "JSON" {
				return scalar{kind: kJSON, goType: "heliosdb.JSON"}, nil
			}
			if scope.json != "" && x.Name == scope.json && t.Sel.Name == "RawMessage" {
				return scalar{kind: kJSON, goType: "json.RawMessage"}, nil
			}
		}
	}
	return scalar{}, fmt.Errorf("type %s has no SQL mapping (use %s)", text, supported)
}

func (p *pkg) resultOf(e ast.Expr, scope fileScope) (result, error) {
	if arr, ok := e.(*ast.ArrayType); ok && arr.Len == nil {
		if id, ok := arr.Elt.(*ast.Ident); ok {
			if st, ok := p.structs[id.Name]; ok {
				cols, err := p.columns(id.Name, st, scope)
				return result{table: cols}, err
			}
		}
	}
	inner := e
	ptr := ""
	if star, ok := e.(*ast.StarExpr); ok {
		inner, ptr = star.X, "*"
	}
	if id, ok := inner.(*ast.Ident); ok {
		if _, ok := p.structs[id.Name]; ok {
			return result{json: ptr + id.Name}, nil
		}
	}
	s, err := p.scalarOf(e, scope, true)
	if err != nil {
		return result{}, fmt.Errorf("%v, a []S for a table or a struct S for a JSON object", err)
	}
	return result{scalar: &s}, nil
}

func (p *pkg) columns(name string, st *ast.StructType, scope fileScope) ([]column, error) {
	var cols []column
	for _, f := range st.Fields.List {
		if len(f.Names) == 0 {
			return nil, fmt.Errorf("row type %s: embedded fields are not supported", name)
		}
		sqlName := ""
		if f.Tag != nil {
			tag, _ := strconv.Unquote(f.Tag.Value)
			sqlName = reflect.StructTag(tag).Get(tagKey)
		}
		if sqlName == "-" {
			continue
		}
		typ, err := p.scalarOf(f.Type, scope, true)
		if err != nil {
			return nil, fmt.Errorf("row type %s, field %s: %v", name, f.Names[0].Name, err)
		}
		for _, n := range f.Names {
			col := sqlName
			if col == "" {
				col = snake(n.Name)
			}
			if !validName(col) {
				return nil, fmt.Errorf("row type %s, field %s: %q is not a valid column name", name, n.Name, col)
			}
			cols = append(cols, column{name: col, field: n.Name, typ: typ})
		}
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("row type %s has no columns", name)
	}
	return cols, nil
}

func exprString(fset *token.FileSet, e ast.Expr) string {
	var b bytes.Buffer
	_ = format.Node(&b, fset, e)
	return b.String()
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r < unicode.MaxASCII && unicode.IsLetter(r) || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// snake converts a Go name to snake_case: CustomerID -> customer_id,
// orderTotal -> order_total, HTTPServer -> http_server.
func snake(name string) string {
	rs := []rune(name)
	var b strings.Builder
	for i, r := range rs {
		if unicode.IsUpper(r) {
			prevLower := i > 0 && (unicode.IsLower(rs[i-1]) || unicode.IsDigit(rs[i-1]))
			nextLower := i > 0 && i+1 < len(rs) && unicode.IsUpper(rs[i-1]) && unicode.IsLower(rs[i+1])
			if prevLower || nextLower {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// --- writing the wrappers ----------------------------------------------------------

type writer struct {
	b        bytes.Buffer
	usesJSON bool
	usesSDK  bool
}

func (w *writer) line(format string, args ...any) {
	fmt.Fprintf(&w.b, format, args...)
	w.b.WriteByte('\n')
}

func render(pkgName string, procs []*procedure) ([]byte, error) {
	body := &writer{}
	for _, p := range procs {
		body.procedure(p)
	}
	var w writer
	w.line("// Code generated by heliosdb-gen. DO NOT EDIT.")
	w.line("")
	w.line("//go:build wasm")
	w.line("")
	w.line("package %s", pkgName)
	w.line("")
	// Prefixed import names cannot clash with the package's own identifiers.
	imports := []string{"heliosdbabi " + strconv.Quote(abiPath)}
	if body.usesJSON {
		imports = append(imports, "heliosdbjson "+strconv.Quote("encoding/json"))
	}
	if body.usesSDK {
		imports = append(imports, "heliosdbsdk "+strconv.Quote(sdkPath))
	}
	sort.Strings(imports)
	w.line("import (")
	for _, imp := range imports {
		w.line("\t%s", imp)
	}
	w.line(")")
	w.line("")
	w.line("// The SDK exports heliosdb_abi_version, heliosdb_alloc and heliosdb_free.")
	w.line("var _ = heliosdbabi.Fail")
	w.b.Write(body.b.Bytes())
	src, err := format.Source(w.b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("generated code does not parse (a heliosdb-gen bug): %v\n%s", err, w.b.Bytes())
	}
	return src, nil
}

func (w *writer) procedure(p *procedure) {
	var wasmParams, args []string
	var pre []string
	for i, a := range p.params {
		info := kindInfo[a.typ.kind]
		if a.typ.kind.numeric() {
			wasmParams = append(wasmParams, fmt.Sprintf("p%d %s", i, info.wasm[0]))
		} else {
			wasmParams = append(wasmParams, fmt.Sprintf("p%dPtr, p%dLen uint32", i, i))
		}
		value := w.argValue(i, a.typ)
		if !a.typ.nullable {
			args = append(args, value)
			continue
		}
		isNull := fmt.Sprintf("heliosdbabi.IsNull(%d)", i)
		if !a.typ.kind.numeric() {
			isNull = fmt.Sprintf("p%dLen == 0 && %s", i, isNull)
		}
		pre = append(pre,
			fmt.Sprintf("var a%d *%s", i, w.localType(a.typ)),
			fmt.Sprintf("if !(%s) {", isNull),
			fmt.Sprintf("\tv := %s", value),
			fmt.Sprintf("\ta%d = &v", i),
			"}")
		args = append(args, fmt.Sprintf("a%d", i))
	}
	resType := ""
	zero := "return"
	if s := p.result.scalar; s != nil && s.kind.numeric() {
		resType = " " + kindInfo[s.kind].res
		zero = "return 0"
	}
	w.line("")
	w.line("// %s exports %s as the procedure", wrapperName+p.sqlName, p.goName)
	w.line("//")
	w.line("//\t%s", p.sqlSignature())
	w.line("//")
	w.line("//go:wasmexport %s", p.sqlName)
	w.line("func %s%s(%s)%s {", wrapperName, p.sqlName, strings.Join(wasmParams, ", "), resType)
	for _, s := range pre {
		w.line("\t%s", s)
	}
	call := fmt.Sprintf("%s(%s)", p.goName, strings.Join(args, ", "))
	switch {
	case p.result.none && p.hasError:
		w.line("\tif err := %s; err != nil {", call)
		w.line("\t\theliosdbabi.Fail(err)")
		w.line("\t}")
		w.line("}")
		return
	case p.result.none:
		w.line("\t%s", call)
		w.line("}")
		return
	case p.hasError:
		w.line("\tr, err := %s", call)
		w.line("\tif err != nil {")
		w.line("\t\theliosdbabi.Fail(err)")
		w.line("\t\t%s", zero)
		w.line("\t}")
	default:
		w.line("\tr := %s", call)
	}
	w.result(p.result, zero)
	w.line("}")
	w.batch(p)
}

// batchWidth is the byte width of a kind in a batch column, and the abi
// reader and writer of its values (docs/abi.md section 9).
var batchWidth = map[kind]struct {
	size     int
	get, put string
}{
	kInt64:   {8, "I64", "PutI64"},
	kInt32:   {4, "I32", "PutI32"},
	kFloat64: {8, "F64", "PutF64"},
	kFloat32: {4, "F32", "PutF32"},
	kBool:    {4, "I32", "PutI32"},
}

// batch writes <name>__batch for a procedure whose parameters and result
// are all plain numbers: whole columns per guest call, one Go call per row.
// A failing row records its error and ends the batch there.
func (w *writer) batch(p *procedure) {
	s := p.result.scalar
	if s == nil || s.nullable || !s.kind.numeric() {
		return
	}
	rowBytes, prefix := 0, []int{}
	for _, a := range p.params {
		if a.typ.nullable || !a.typ.kind.numeric() {
			return
		}
		prefix = append(prefix, rowBytes)
		rowBytes += batchWidth[a.typ.kind].size
	}
	out := batchWidth[s.kind]
	name := p.sqlName + "__batch"
	w.line("")
	w.line("// %s is the batch entry point of %s (docs/abi.md section 9).", wrapperName+name, p.sqlName)
	w.line("//")
	w.line("//go:wasmexport %s", name)
	w.line("func %s%s(count int32, argsPtr, outPtr uint32) int32 {", wrapperName, name)
	w.line("\tn := int(count)")
	if len(p.params) > 0 {
		w.line("\targs := heliosdbabi.BatchBuffer(argsPtr, uint32(n*%d))", rowBytes)
	}
	w.line("\tout := heliosdbabi.BatchBuffer(outPtr, uint32(n*%d))", out.size)
	w.line("\tfor i := 0; i < n; i++ {")
	var args []string
	for i, a := range p.params {
		bw := batchWidth[a.typ.kind]
		v := fmt.Sprintf("heliosdbabi.%s(args, n*%d+i*%d)", bw.get, prefix[i], bw.size)
		if a.typ.kind == kBool {
			v += " != 0"
		}
		if a.typ.goType != kindInfo[a.typ.kind].base {
			v = fmt.Sprintf("%s(%s)", w.localType(a.typ), v)
		}
		args = append(args, v)
	}
	call := fmt.Sprintf("%s(%s)", p.goName, strings.Join(args, ", "))
	if p.hasError {
		w.line("\t\tr, err := %s", call)
		w.line("\t\tif err != nil {")
		w.line("\t\t\theliosdbabi.Fail(err)")
		w.line("\t\t\treturn int32(i)")
		w.line("\t\t}")
	} else {
		w.line("\t\tr := %s", call)
	}
	value := fmt.Sprintf("%s(r)", kindInfo[s.kind].res)
	if s.kind == kBool {
		w.line("\t\tv := int32(0)")
		w.line("\t\tif r {")
		w.line("\t\t\tv = 1")
		w.line("\t\t}")
		value = "v"
	}
	w.line("\t\theliosdbabi.%s(out, i*%d, %s)", out.put, out.size, value)
	w.line("\t}")
	w.line("\treturn count")
	w.line("}")
}

// argValue is the Go expression of argument i as the procedure's type.
func (w *writer) argValue(i int, t scalar) string {
	var v string
	switch t.kind {
	case kBool:
		v = fmt.Sprintf("p%d != 0", i)
	case kString:
		v = fmt.Sprintf("heliosdbabi.String(p%dPtr, p%dLen)", i, i)
	case kBytes:
		v = fmt.Sprintf("heliosdbabi.Bytes(p%dPtr, p%dLen)", i, i)
	case kJSON:
		v = fmt.Sprintf("heliosdbabi.Bytes(p%dPtr, p%dLen)", i, i)
	default:
		v = fmt.Sprintf("p%d", i)
	}
	if t.goType == kindInfo[t.kind].base {
		return v
	}
	return fmt.Sprintf("%s(%s)", w.localType(t), v)
}

// localType is the generated file's spelling of a scalar's Go type.
func (w *writer) localType(t scalar) string {
	switch t.goType {
	case "heliosdb.JSON":
		w.usesSDK = true
		return "heliosdbsdk.JSON"
	case "json.RawMessage":
		w.usesJSON = true
		return "heliosdbjson.RawMessage"
	}
	return t.goType
}

func (w *writer) result(r result, zero string) {
	switch {
	case r.table != nil:
		names := make([]string, len(r.table))
		for i, c := range r.table {
			names[i] = strconv.Quote(c.name)
		}
		w.line("\tt := heliosdbabi.NewTable(%s)", strings.Join(names, ", "))
		w.line("\tfor i := range r {")
		for _, c := range r.table {
			w.cell(c)
		}
		w.line("\t}")
		w.line("\tt.Return()")
	case r.json != "":
		w.usesJSON = true
		if strings.HasPrefix(r.json, "*") {
			w.line("\tif r == nil {")
			w.line("\t\theliosdbabi.ReturnNull()")
			w.line("\t\treturn")
			w.line("\t}")
		}
		w.line("\tdata, err := heliosdbjson.Marshal(r)")
		w.line("\tif err != nil {")
		w.line("\t\theliosdbabi.Fail(err)")
		w.line("\t\treturn")
		w.line("\t}")
		w.line("\theliosdbabi.ReturnJSON(data)")
	default:
		s := *r.scalar
		v := "r"
		if s.nullable {
			w.line("\tif r == nil {")
			w.line("\t\theliosdbabi.ReturnNull()")
			w.line("\t\t%s", zero)
			w.line("\t}")
			v = "*r"
		}
		w.scalarResult(s, v)
	}
}

func (w *writer) scalarResult(s scalar, v string) {
	base := kindInfo[s.kind].base
	if s.goType != base {
		v = fmt.Sprintf("%s(%s)", base, v)
	}
	switch s.kind {
	case kBool:
		w.line("\tif %s {", v)
		w.line("\t\treturn 1")
		w.line("\t}")
		w.line("\treturn 0")
	case kString:
		w.line("\theliosdbabi.ReturnText(%s)", v)
	case kBytes:
		w.line("\theliosdbabi.ReturnBlob(%s)", v)
	case kJSON:
		w.line("\tif %s == nil {", v)
		w.line("\t\theliosdbabi.ReturnNull()")
		w.line("\t\treturn")
		w.line("\t}")
		w.line("\theliosdbabi.ReturnJSON(%s)", v)
	default:
		w.line("\treturn %s", v)
	}
}

func (w *writer) cell(c column) {
	v := "r[i]." + c.field
	indent := "\t\t"
	if c.typ.nullable {
		w.line("\t\tif %s == nil {", v)
		w.line("\t\t\tt.Null()")
		w.line("\t\t} else {")
		v, indent = "*"+v, "\t\t\t"
	}
	base := kindInfo[c.typ.kind].base
	if c.typ.goType != base {
		v = fmt.Sprintf("%s(%s)", base, v)
	}
	switch c.typ.kind {
	case kInt64:
		w.line("%st.Int64(%s)", indent, v)
	case kInt32:
		w.line("%st.Int64(int64(%s))", indent, v)
	case kFloat64:
		w.line("%st.Float64(%s)", indent, v)
	case kFloat32:
		w.line("%st.Float64(float64(%s))", indent, v)
	case kBool:
		w.line("%st.Bool(%s)", indent, v)
	case kString:
		w.line("%st.Text(%s)", indent, v)
	case kBytes:
		w.line("%st.Blob(%s)", indent, v)
	case kJSON:
		w.line("%st.Text(string(%s))", indent, v)
	}
	if c.typ.nullable {
		w.line("\t\t}")
	}
}
