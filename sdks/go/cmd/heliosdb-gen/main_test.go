package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func writePackage(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	sdk, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	mod := "module example.com/p\n\ngo 1.24\n\nrequire " + sdkPath + " v0.0.0\n\nreplace " + sdkPath + " => " + sdk + "\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func signatures(procs []*procedure) []string {
	var out []string
	for _, p := range procs {
		out = append(out, p.sqlSignature())
	}
	return out
}

// The examples declare exactly the signatures of examples/README.md.
func TestExamples(t *testing.T) {
	want := map[string]string{
		"calculate_discount": "calculate_discount(customer_id BIGINT, order_total DOUBLE) RETURNS DOUBLE",
		"validate_order":     "validate_order(customer_id BIGINT, order_total DOUBLE) RETURNS BOOLEAN",
		"detect_fraud":       "detect_fraud(customer_id BIGINT, amount DOUBLE) RETURNS JSON",
		"aggregate_sales":    "aggregate_sales(from_date TEXT, to_date TEXT) RETURNS TABLE(region TEXT, orders BIGINT, revenue DOUBLE)",
	}
	for name, sig := range want {
		dir := filepath.Join("..", "..", "..", "..", "examples", name, "go")
		if _, err := os.Stat(dir); err != nil {
			t.Skipf("examples not found: %v", err)
		}
		procs, _, err := generate(dir, defaultOut)
		if err != nil {
			t.Fatal(err)
		}
		if got := signatures(procs); len(got) != 1 || got[0] != sig {
			t.Errorf("%s: got %v, want %s", name, got, sig)
		}
	}
}

const allTypes = `package main

import (
	"encoding/json"

	hdb "github.com/heliosdb/heliosdb-wasm/sdks/go"
)

type Cents int64

type Row struct {
	ID     int64   ` + "`heliosdb:\"id\"`" + `
	Name   *string
	Small  int32
	Ratio  float32
	Flag   bool
	Data   []byte
	Doc    hdb.JSON
	Price  Cents
	hidden int ` + "`heliosdb:\"-\"`" + `
}

type Report struct {
	N int ` + "`json:\"n\"`" + `
}

//heliosdb:procedure
func Numbers(a int64, b int, c int32, d float64, e float32, f bool, g Cents) (float64, error) {
	return 0, nil
}

//heliosdb:procedure texts
func Texts(s string, b []byte, j hdb.JSON, r json.RawMessage) (string, error) { return "", nil }

//heliosdb:procedure
func Nullable(a *int64, s *string, f *bool) *float64 { return nil }

//heliosdb:procedure
func Table(n int32) ([]Row, error) { return nil, nil }

//heliosdb:procedure
func Object() (*Report, error) { return nil, nil }

//heliosdb:procedure
func Raw() json.RawMessage { return nil }

//heliosdb:procedure
func Blob() []byte { return nil }

//heliosdb:procedure
func Flag() bool { return true }

//heliosdb:procedure
func Cost() (Cents, error) { return 0, nil }

//heliosdb:procedure
func Fails() error { return nil }

//heliosdb:procedure
func Nothing() {}

func main() {}
`

func TestAllTypes(t *testing.T) {
	dir := writePackage(t, allTypes)
	procs, src, err := generate(dir, defaultOut)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"numbers(a BIGINT, b BIGINT, c INTEGER, d DOUBLE, e REAL, f BOOLEAN, g BIGINT) RETURNS DOUBLE",
		"texts(s TEXT, b BLOB, j JSON, r JSON) RETURNS TEXT",
		"nullable(a BIGINT, s TEXT, f BOOLEAN) RETURNS DOUBLE CALLED ON NULL INPUT",
		"table(n INTEGER) RETURNS TABLE(id BIGINT, name TEXT, small INTEGER, ratio REAL, flag BOOLEAN, data BLOB, doc JSON, price BIGINT)",
		"object() RETURNS JSON",
		"raw() RETURNS JSON",
		"blob() RETURNS BLOB",
		"flag() RETURNS BOOLEAN",
		"cost() RETURNS BIGINT",
		"fails() RETURNS VOID",
		"nothing() RETURNS VOID",
	}
	got := signatures(procs)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("signatures:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := os.WriteFile(filepath.Join(dir, defaultOut), src, 0o644); err != nil {
		t.Fatal(err)
	}
	if testing.Short() {
		return
	}
	// The generated wrappers compile, with the wasm signatures of docs/abi.md.
	wasm := filepath.Join(dir, "p.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", wasm, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s\n%s", err, out, src)
	}
}

func TestRejects(t *testing.T) {
	cases := map[string]string{
		"func F(x uint64) {}":                                            "type uint64 has no SQL mapping",
		"func F() map[string]int { return nil }":                         "has no SQL mapping",
		"func F() (int64, int64) { return 0, 0 }":                        "at most one value",
		"func F(xs ...int64) {}":                                         "variadic",
		"type T struct{}\nfunc (T) F() {}":                               "plain top-level function",
		"func F[T any]() {}":                                             "plain top-level function",
		"type R struct{ M map[string]int }\nfunc F() []R { return nil }": "field M",
	}
	for body, msg := range cases {
		src := "package main\n\n//heliosdb:procedure\n" + body + "\n\nfunc main() {}\n"
		if strings.HasPrefix(body, "type ") {
			lines := strings.SplitN(body, "\n", 2)
			src = "package main\n\n" + lines[0] + "\n\n//heliosdb:procedure\n" + lines[1] + "\n\nfunc main() {}\n"
		}
		_, _, err := generate(writePackage(t, src), defaultOut)
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: got %v, want an error containing %q", body, err, msg)
		}
	}
	for src, msg := range map[string]string{
		"package main\nfunc main() {}\n":                                                           "no function is marked",
		"package main\n// heliosdb:procedure\nfunc F() {}\n":                                       "without a space",
		"package main\n//heliosdb:procedure a b\nfunc F() {}\n":                                    "one SQL name",
		"package main\n//heliosdb:procedure bad-name\nfunc F() {}\n":                               "not a valid SQL name",
		"package main\n//heliosdb:procedure heliosdb_alloc\nfunc F() {}\n":                         "reserved",
		"package main\n//heliosdb:procedure x\nfunc F() {}\n//heliosdb:procedure x\nfunc G() {}\n": "also defined",
	} {
		_, _, err := generate(writePackage(t, src), defaultOut)
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: got %v, want an error containing %q", src, err, msg)
		}
	}
}

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{
		"CalculateDiscount": "calculate_discount", "customerID": "customer_id", "HTTPServer": "http_server",
		"orderTotal": "order_total", "x": "x", "from_date": "from_date", "ID": "id", "Sha256Sum": "sha256_sum",
	} {
		if got := snake(in); got != want {
			t.Errorf("snake(%q) = %q, want %q", in, got, want)
		}
	}
}
