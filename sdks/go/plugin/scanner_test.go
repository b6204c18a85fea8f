package plugin

import (
	"encoding/json"
	"math/rand"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"
)

// asciiJSON writes s as Python's json.dumps does by default (ensure_ascii):
// every non-ASCII character as \uXXXX, astral ones as surrogate pairs.
func asciiJSON(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteString(`\` + string(r))
		case r < 0x20 || r >= 0x7f:
			if r > 0xffff {
				hi, lo := utf16.EncodeRune(r)
				b.WriteString(`\u` + hex4(hi) + `\u` + hex4(lo))
			} else {
				b.WriteString(`\u` + hex4(r))
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func hex4(r rune) string {
	s := strconv.FormatInt(int64(r), 16)
	return strings.Repeat("0", 4-len(s)) + s
}

func scanString(t *testing.T, text string) (string, error) {
	t.Helper()
	var out string
	err := decode([]byte(text), func(s *scanner) { out = s.str() })
	return out, err
}

// Strings read back exactly whichever way they were escaped.
func TestScannerStrings(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	alphabet := []rune("aZ09 \"\\/\b\f\n\r\t\x00\x1f\x7fé€😀\u2028\uffff𝄞")
	for i := 0; i < 2000; i++ {
		rs := make([]rune, rng.Intn(12))
		for j := range rs {
			rs[j] = alphabet[rng.Intn(len(alphabet))]
		}
		want := string(rs)
		goJSON, _ := json.Marshal(want)
		for _, text := range []string{string(goJSON), asciiJSON(want), string(appendString(nil, want))} {
			got, err := scanString(t, text)
			if err != nil || got != want {
				t.Fatalf("%s: got %q %v, want %q", text, got, err, want)
			}
		}
	}
	// Lone surrogates become U+FFFD, as in encoding/json.
	for text, want := range map[string]string{
		`"\ud83d"`:       "\ufffd",
		`"\ud83dx"`:      "\ufffdx",
		`"\ude00\ud83d"`: "\ufffd\ufffd",
		`"\ud83d\u0041"`: "\ufffdA",
		`"\ud83d\ude00"`: "😀",
		`"\u00E9\u00e9"`: "éé",
		"\"a\xffb\"":     "a\ufffdb",
		"\"\\n\xff\"":    "\n\ufffd",
		`"\/"`:           "/",
		`""`:             "",
	} {
		got, err := scanString(t, text)
		var viaJSON string
		_ = json.Unmarshal([]byte(text), &viaJSON)
		if err != nil || got != want || got != viaJSON {
			t.Errorf("%s: got %q %v, want %q (encoding/json: %q)", text, got, err, want, viaJSON)
		}
	}
	for _, bad := range []string{`"abc`, `"\x"`, `"\u12"`, `"\u12g4"`, "\"a\nb\"", `abc`, `"a" "b"`, `"\`} {
		if got, err := scanString(t, bad); err == nil {
			t.Errorf("%q read as %q", bad, got)
		}
	}
}

func TestScannerNumbers(t *testing.T) {
	for _, good := range []string{"0", "-0", "12", "-12", "1.5", "1e5", "1E+5", "-1.25e-3", "123456789012345678901234567890"} {
		var got string
		if err := decode([]byte(" "+good+" "), func(s *scanner) { got = s.number() }); err != nil || got != good {
			t.Errorf("%s: got %q %v", good, got, err)
		}
		if !json.Valid([]byte(good)) {
			t.Errorf("%s is not JSON", good)
		}
	}
	for _, bad := range []string{"", "-", "01", "1.", ".5", "1e", "1e+", "+1", "0x10", "1.5.5", "--1"} {
		if err := decode([]byte(bad), func(s *scanner) { s.number() }); err == nil {
			t.Errorf("%q read as a number", bad)
		}
	}
	for text, want := range map[string]int64{
		"0": 0, "-0": 0, "7": 7, "-7": -7, "99999999999999999": 99999999999999999,
		"999999999999999999": 999999999999999999, "9223372036854775807": 9223372036854775807,
		"-9223372036854775808": -9223372036854775808, "9007199254740993": 9007199254740993,
	} {
		var got int64
		if err := decode([]byte(text), func(s *scanner) { got = s.int64() }); err != nil || got != want {
			t.Errorf("%s: got %d %v", text, got, err)
		}
	}
	for _, bad := range []string{"9223372036854775808", "1.0", "1e2", "01", "-", "", "1x"} {
		if err := decode([]byte(bad), func(s *scanner) { s.int64() }); err == nil {
			t.Errorf("%q read as an int64", bad)
		}
	}
}

// Members a later engine adds are skipped, whatever they hold.
func TestScannerSkipsUnknownMembers(t *testing.T) {
	req := `{"future": {"a": [1, -2.5e3, "x\"]", true, false, null, NaN, -Infinity, Infinity, {}, []]},
		"ctx": {"user": "u", "later": [[["deep"]]], "query-id": 3},
		"columns": ["c"], "rows": [[{"text": "v"}]], "more": "}"}`
	var r PostExecutionRequest
	if err := r.UnmarshalJSON([]byte(req)); err != nil {
		t.Fatal(err)
	}
	if r.Ctx.User != "u" || r.Ctx.QueryID != 3 || r.Rows[0][0].Text() != "v" {
		t.Fatalf("%+v", r)
	}
	for _, bad := range []string{
		`{"x": tru}`, `{"x": [1,]}`, `{"x": {"a" 1}}`, `{"x": 1,}`, `{"x": 1}}`, `{"x": undefined}`,
		`{"ctx": {"connection": [["a"]]}}`, `{"ctx": {"connection": [["a", "b", "c"]]}}`,
		`{"ctx": {"session": [["a", 1]]}}`, `{"columns": [1]}`, `{"rows": [1]}`,
	} {
		var r PostExecutionRequest
		if err := r.UnmarshalJSON([]byte(bad)); err == nil {
			t.Errorf("%s: read as %+v", bad, r)
		}
	}
}

// Everything the scanner accepts is JSON (apart from the non-finite
// reals), and it reads SQL values from arbitrary JSON without panicking.
func FuzzUnmarshalValue(f *testing.F) {
	for _, seed := range []string{`"null"`, `{"integer": -5}`, `{"real": 1e-3}`, `{"text": "\u00e9"}`, `{"blob": [1, 2]}`, `{"boolean": true}`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		v, err := UnmarshalValue([]byte(text))
		if err != nil {
			return
		}
		if !json.Valid(quoteNonFinite([]byte(text))) {
			t.Fatalf("accepted %q, which is not JSON", text)
		}
		if v.Kind() == heliosdb.KindText && !utf8.ValidString(v.Text()) {
			t.Fatalf("%q: text %q is not UTF-8", text, v.Text())
		}
	})
}

// Requests never panic the decoder, whatever arrives.
func FuzzPostExecutionRequest(f *testing.F) {
	f.Add(`{"ctx": {"query-id": 1, "user": "u", "connection": [["a", "b"]], "session": [], "tables": [], "config": "{}"}, "columns": ["a"], "rows": [[{"integer": 1}, "null"]]}`)
	f.Add(`{"rows": [[{"real": NaN}, {"blob": []}]], "x": [{"y": -Infinity}]}`)
	f.Fuzz(func(t *testing.T, text string) {
		var r PostExecutionRequest
		if r.UnmarshalJSON([]byte(text)) == nil && !json.Valid(quoteNonFinite([]byte(text))) {
			t.Fatalf("accepted %q, which is not JSON", text)
		}
	})
}
