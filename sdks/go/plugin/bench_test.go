package plugin

import (
	"strconv"
	"strings"
	"testing"

	heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"
)

func benchRequest(n int) heliosdb.JSON {
	var b strings.Builder
	b.WriteString(`{"ctx": {"query-id": 7, "user": "bob", "database": "shop", "application-name": "psql", "connection": [["user", "bob"]], "session": [], "tables": ["people"], "config": "{}"}, "columns": ["id", "name", "ssn", "email", "phone"], "rows": [`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		s := strconv.Itoa(i)
		b.WriteString(`[{"integer": ` + s + `}, {"text": "n` + s + `"}, {"text": "` + s + `-45-6789"}, {"text": "u` + s + `@example.com"}, {"text": "+1 555 123 4567"}]`)
	}
	b.WriteString("]}")
	return heliosdb.JSON(b.String())
}

// BenchmarkPostExecution decodes 1000 rows and writes them back.
func BenchmarkPostExecution(b *testing.B) {
	req := benchRequest(1000)
	b.ReportAllocs()
	for range b.N {
		_, err := HandlePostExecution(req, func(_ *Context, _ []string, rows [][]heliosdb.Value) (Verdict, error) {
			return ReplaceRows(rows), nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
