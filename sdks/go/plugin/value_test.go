package plugin

import (
	"math"
	"testing"

	heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"
)

func sameValue(a, b heliosdb.Value) bool {
	if a.Kind() != b.Kind() {
		return false
	}
	switch a.Kind() {
	case heliosdb.KindReal:
		x, y := a.Float64(), b.Float64()
		return math.Float64bits(x) == math.Float64bits(y) || math.IsNaN(x) && math.IsNaN(y)
	case heliosdb.KindInteger, heliosdb.KindBoolean:
		return a.Int64() == b.Int64()
	}
	return a.Text() == b.Text()
}

func TestValueJSON(t *testing.T) {
	for _, c := range []struct {
		v    heliosdb.Value
		json string
	}{
		{heliosdb.Null, `"null"`},
		{heliosdb.Int64Value(5), `{"integer":5}`},
		{heliosdb.Int64Value(math.MaxInt64), `{"integer":9223372036854775807}`},
		{heliosdb.Int64Value(math.MinInt64), `{"integer":-9223372036854775808}`},
		{heliosdb.Int64Value(1<<53 + 1), `{"integer":9007199254740993}`},
		{heliosdb.Float64Value(1.5), `{"real":1.5}`},
		{heliosdb.Float64Value(2), `{"real":2.0}`},
		{heliosdb.Float64Value(math.Copysign(0, -1)), `{"real":-0.0}`},
		{heliosdb.Float64Value(1e300), `{"real":1e+300}`},
		{heliosdb.Float64Value(math.Inf(1)), `{"real":Infinity}`},
		{heliosdb.Float64Value(math.Inf(-1)), `{"real":-Infinity}`},
		{heliosdb.TextValue(""), `{"text":""}`},
		{heliosdb.TextValue("a\"\\\n\x00<&>é😀\u2028"), `{"text":"a\"\\\n\u0000<&>é😀\u2028"}`},
		{heliosdb.BlobValue([]byte{}), `{"blob":[]}`},
		{heliosdb.BlobValue([]byte{0, 1, 255}), `{"blob":[0,1,255]}`},
		{heliosdb.BoolValue(true), `{"boolean":true}`},
		{heliosdb.BoolValue(false), `{"boolean":false}`},
	} {
		if got := string(MarshalValue(c.v)); got != c.json {
			t.Errorf("%v: marshaled %s, want %s", c.v, got, c.json)
		}
		back, err := UnmarshalValue(quoteNonFinite([]byte(c.json)))
		if err != nil {
			t.Errorf("%s: %v", c.json, err)
		} else if !sameValue(back, c.v) {
			t.Errorf("%s: read back %v (%v), want %v", c.json, back, back.Kind(), c.v)
		}
	}
	// SQLite has no NaN; it goes out as NULL, as the engine would store it.
	if got := string(MarshalValue(heliosdb.Float64Value(math.NaN()))); got != `"null"` {
		t.Errorf("NaN: %s", got)
	}
	// Invalid UTF-8 cannot reach the engine as text.
	if got := string(MarshalValue(heliosdb.TextValue("a\xffb"))); got != `{"text":"a\ufffdb"}` {
		t.Errorf("invalid UTF-8: %s", got)
	}
}

func TestValueJSONInput(t *testing.T) {
	for in, want := range map[string]heliosdb.Value{
		` { "integer" : -12 } `:         heliosdb.Int64Value(-12),
		`{"real":3}`:                    heliosdb.Float64Value(3),
		`{"real":1e400}`:                heliosdb.Float64Value(math.Inf(1)),
		`{"text":"\u00e9\ud83d\ude00"}`: heliosdb.TextValue("é😀"),
	} {
		got, err := UnmarshalValue([]byte(in))
		if err != nil || !sameValue(got, want) {
			t.Errorf("%s: got %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{
		``, `null`, `"NULL"`, `"allow"`, `5`, `[]`, `{}`,
		`{"integer":1.0}`, `{"integer":1e3}`, `{"integer":9223372036854775808}`, `{"integer":"5"}`,
		`{"real":"x"}`, `{"text":5}`, `{"blob":"AAE="}`, `{"blob":[256]}`, `{"blob":[-1]}`,
		`{"blob":[1.5]}`, `{"boolean":1}`, `{"integer":1,"text":"a"}`, `{"float":1}`,
		`{"integer":1} 2`,
	} {
		if v, err := UnmarshalValue([]byte(bad)); err == nil {
			t.Errorf("%s: read as %v", bad, v)
		}
	}
}

func TestQuoteNonFinite(t *testing.T) {
	in := `{"a":"NaN Infinity \"Infinity","b":[NaN,-Infinity,Infinity]}`
	want := `{"a":"NaN Infinity \"Infinity","b":["NaN","-Infinity","Infinity"]}`
	if got := string(quoteNonFinite([]byte(in))); got != want {
		t.Fatalf("got %s", got)
	}
	plain := []byte(`{"a":1}`)
	if got := quoteNonFinite(plain); &got[0] != &plain[0] {
		t.Fatal("JSON without non-finite numbers is copied")
	}
}
