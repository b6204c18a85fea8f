package plugin

import (
	"errors"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"
)

// scanner reads the requests by hand. A post-execution hook sees every
// row of every result, and encoding/json (reflection, and a json.Decoder
// per SQL value) cost about 80 000 fuel units per value, enough to exhaust
// the default fuel limit on a few thousand rows; this costs a small
// fraction of that. It accepts exactly JSON, plus the NaN, Infinity and
// -Infinity that Python's json module writes for non-finite reals.
type scanner struct {
	data []byte
	pos  int
	err  error
}

func (s *scanner) fail(msg string) {
	if s.err == nil {
		s.err = errors.New(msg + " (at byte " + strconv.Itoa(s.pos) + ")")
	}
	s.pos = len(s.data) // stop every loop
}

func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek is the next byte after white space, 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

func (s *scanner) expect(c byte) {
	if s.peek() != c {
		s.fail("expected " + strconv.QuoteRune(rune(c)))
		return
	}
	s.pos++
}

// end checks that nothing but white space follows.
func (s *scanner) end() {
	if s.ws(); s.pos < len(s.data) {
		s.fail("unexpected data after the JSON value")
	}
}

// object calls member for each key; member must read the value.
func (s *scanner) object(member func(key string)) {
	s.expect('{')
	if s.peek() == '}' {
		s.pos++
		return
	}
	for s.err == nil {
		key := s.str()
		s.expect(':')
		member(key)
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return
		default:
			s.fail("expected , or } in an object")
		}
	}
}

// array calls elem for each element; elem must read it. null is an empty
// array, as encoding/json reads it into a slice.
func (s *scanner) array(elem func()) {
	if s.literal("null") {
		return
	}
	s.expect('[')
	if s.peek() == ']' {
		s.pos++
		return
	}
	for s.err == nil {
		elem()
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return
		default:
			s.fail("expected , or ] in an array")
		}
	}
}

// literal consumes word if it comes next.
func (s *scanner) literal(word string) bool {
	s.ws()
	if len(s.data)-s.pos >= len(word) && string(s.data[s.pos:s.pos+len(word)]) == word {
		s.pos += len(word)
		return true
	}
	return false
}

func (s *scanner) str() string {
	if s.peek() != '"' {
		s.fail("expected a string")
		return ""
	}
	s.pos++
	start := s.pos
	ascii := true
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			out := string(s.data[start:s.pos])
			s.pos++
			if !ascii && !utf8.ValidString(out) {
				return string([]rune(out)) // U+FFFD for invalid bytes, as encoding/json
			}
			return out
		case c == '\\':
			return s.escapedStr(start)
		case c < 0x20:
			s.fail("a control character in a string")
			return ""
		case c >= utf8.RuneSelf:
			ascii = false
		}
		s.pos++
	}
	s.fail("an unterminated string")
	return ""
}

// escapedStr continues str from the first backslash.
func (s *scanner) escapedStr(start int) string {
	buf := append(make([]byte, 0, s.pos-start+16), s.data[start:s.pos]...)
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			if !utf8.Valid(buf) {
				return string([]rune(string(buf)))
			}
			return string(buf)
		case c < 0x20:
			s.fail("a control character in a string")
			return ""
		case c != '\\':
			buf = append(buf, c)
			s.pos++
			continue
		}
		s.pos++
		if s.pos >= len(s.data) {
			break
		}
		e := s.data[s.pos]
		s.pos++
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r := s.hex4()
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if s.pos+1 < len(s.data) && s.data[s.pos] == '\\' && s.data[s.pos+1] == 'u' {
					save := s.pos
					s.pos += 2
					r2 = s.hex4()
					if utf16.DecodeRune(r, r2) == utf8.RuneError {
						s.pos, r2 = save, -1 // not a pair: read the second one by itself
					}
				}
				r = utf16.DecodeRune(r, r2)
			}
			buf = utf8.AppendRune(buf, r)
		default:
			s.fail("an invalid escape in a string")
			return ""
		}
	}
	s.fail("an unterminated string")
	return ""
}

func (s *scanner) hex4() rune {
	if len(s.data)-s.pos < 4 {
		s.fail("a short \\u escape")
		return 0
	}
	var r rune
	for _, c := range s.data[s.pos : s.pos+4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			s.fail("an invalid \\u escape")
			return 0
		}
	}
	s.pos += 4
	return r
}

// number returns the text of a JSON number, checked against the grammar.
func (s *scanner) number() string {
	s.ws()
	start := s.pos
	digits := func() int {
		n := 0
		for s.pos < len(s.data) && '0' <= s.data[s.pos] && s.data[s.pos] <= '9' {
			s.pos++
			n++
		}
		return n
	}
	if s.pos < len(s.data) && s.data[s.pos] == '-' {
		s.pos++
	}
	intStart := s.pos
	if digits() == 0 || s.data[intStart] == '0' && s.pos-intStart > 1 {
		s.fail("expected a number")
		return ""
	}
	if s.pos < len(s.data) && s.data[s.pos] == '.' {
		s.pos++
		if digits() == 0 {
			s.fail("expected digits after the decimal point")
			return ""
		}
	}
	if s.pos < len(s.data) && (s.data[s.pos] == 'e' || s.data[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.data) && (s.data[s.pos] == '+' || s.data[s.pos] == '-') {
			s.pos++
		}
		if digits() == 0 {
			s.fail("expected digits in the exponent")
			return ""
		}
	}
	return string(s.data[start:s.pos])
}

// skip reads any value.
func (s *scanner) skip() {
	c := s.peek()
	switch {
	case c == '{':
		s.object(func(string) { s.skip() })
	case c == '[':
		s.array(s.skip)
	case c == '"':
		s.str()
	case s.literal("true"), s.literal("false"), s.literal("null"),
		s.literal("NaN"), s.literal("Infinity"), s.literal("-Infinity"):
	case c == '-' || '0' <= c && c <= '9':
		s.number()
	default:
		s.fail("expected a JSON value")
	}
}

func (s *scanner) strings() []string {
	var out []string
	s.array(func() { out = append(out, s.str()) })
	if out == nil && s.err == nil {
		out = []string{}
	}
	return out
}

func (s *scanner) pairs() [][2]string {
	var out [][2]string
	s.array(func() {
		var p [2]string
		n := 0
		s.array(func() {
			if n < 2 {
				p[n] = s.str()
			} else {
				s.fail("a (name, value) pair has more than two members")
			}
			n++
		})
		if n != 2 {
			s.fail("a (name, value) pair needs two members")
		}
		out = append(out, p)
	})
	return out
}

func (s *scanner) context(c *Context) {
	*c = Context{}
	s.object(func(key string) {
		switch key {
		case "query-id":
			n := s.number()
			id, err := strconv.ParseUint(n, 10, 64)
			if err != nil && s.err == nil {
				s.fail("query-id: " + strconv.Quote(n) + " is not a u64")
			}
			c.QueryID = id
		case "user":
			c.User = s.str()
		case "database":
			c.Database = s.str()
		case "application-name":
			c.ApplicationName = s.str()
		case "connection":
			c.ConnectionParams = s.pairs()
		case "session":
			c.SessionVars = s.pairs()
		case "tables":
			c.Tables = s.strings()
		case "config":
			c.ConfigJSON = s.str()
		default: // a field a later engine adds
			s.skip()
		}
	})
}

// key reads an object key. Keys without escapes are returned as a slice
// of the input, so comparing them allocates nothing.
func (s *scanner) key() []byte {
	if s.peek() == '"' {
		start := s.pos + 1
		for i := start; i < len(s.data); i++ {
			c := s.data[i]
			if c == '"' {
				s.pos = i + 1
				return s.data[start:i]
			}
			if c == '\\' || c < 0x20 {
				break
			}
		}
	}
	return []byte(s.str())
}

// int64 reads an integer, exactly, without going through float64 or an
// intermediate string for the common short numbers.
func (s *scanner) int64() int64 {
	s.ws()
	start := s.pos
	neg := s.pos < len(s.data) && s.data[s.pos] == '-'
	if neg {
		s.pos++
	}
	var n int64
	digits := 0
	for s.pos < len(s.data) && digits < 18 {
		c := s.data[s.pos]
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
		s.pos++
		digits++
	}
	if digits > 0 && digits < 18 && (digits == 1 || s.data[start+b2i(neg)] != '0') {
		if s.pos >= len(s.data) || !isNumberByte(s.data[s.pos]) {
			if neg {
				return -n
			}
			return n
		}
	}
	// Long, fractional or malformed: the general path.
	s.pos = start
	text := s.number()
	i, err := strconv.ParseInt(text, 10, 64)
	if err != nil && s.err == nil {
		s.fail("SQL value: integer: " + strconv.Quote(text) + " is not a whole number within int64")
	}
	return i
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func isNumberByte(c byte) bool {
	return '0' <= c && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
}

// value reads one SQL value (WIT types.value).
func (s *scanner) value() heliosdb.Value {
	switch s.peek() {
	case '"':
		if name := s.key(); string(name) != "null" && s.err == nil {
			s.fail(`SQL value: a case without payload must be "null", got ` + strconv.Quote(string(name)))
		}
		return heliosdb.Null
	case '{':
	default:
		s.fail(`SQL value: expected "null" or an object with one member`)
		return heliosdb.Null
	}
	s.pos++
	name := s.key()
	s.expect(':')
	var v heliosdb.Value
	switch {
	case string(name) == "integer":
		v = heliosdb.Int64Value(s.int64())
	case string(name) == "text":
		v = heliosdb.TextValue(s.str())
	case string(name) == "real":
		v = heliosdb.Float64Value(s.real())
	case string(name) == "blob":
		data := []byte{}
		s.array(func() {
			n := s.number()
			b, err := strconv.ParseUint(n, 10, 8)
			if err != nil {
				s.fail("SQL value: blob: " + strconv.Quote(n) + " is not a byte")
			}
			data = append(data, byte(b))
		})
		v = heliosdb.BlobValue(data)
	case string(name) == "boolean":
		switch {
		case s.literal("true"):
			v = heliosdb.BoolValue(true)
		case s.literal("false"):
			v = heliosdb.BoolValue(false)
		default:
			s.fail("SQL value: boolean: expected true or false")
		}
	default:
		s.fail("SQL value: unknown case " + strconv.Quote(string(name)))
	}
	if s.peek() != '}' {
		s.fail("SQL value: a case object holds exactly one member")
	}
	s.pos++
	return v
}

func (s *scanner) real() float64 {
	switch {
	case s.literal("NaN"):
		return math.NaN()
	case s.literal("Infinity"):
		return math.Inf(1)
	case s.literal("-Infinity"):
		return math.Inf(-1)
	case s.peek() == '"': // as quoteNonFinite writes them
		if f, ok := nonFinite[s.str()]; ok {
			return f
		}
		s.fail("SQL value: real: expected a number")
		return 0
	}
	n := s.number()
	f, err := strconv.ParseFloat(n, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) && s.err == nil {
		s.fail("SQL value: real: " + strconv.Quote(n) + " is not a number")
	}
	return f
}

// values reads an array of SQL values; width is the capacity to start
// with (the previous row's length), so rows do not grow by appending.
func (s *scanner) values(width int) []heliosdb.Value {
	out := make([]heliosdb.Value, 0, width)
	if s.literal("null") {
		return out
	}
	s.expect('[')
	if s.peek() == ']' {
		s.pos++
		return out
	}
	for s.err == nil {
		out = append(out, s.value())
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return out
		default:
			s.fail("expected , or ] in an array")
		}
	}
	return out
}

func (s *scanner) rows() [][]heliosdb.Value {
	out := [][]heliosdb.Value{}
	width := 0
	s.array(func() {
		row := s.values(width)
		width = len(row)
		out = append(out, row)
	})
	return out
}

// UnmarshalJSON reads a context as the engine sends it; members it does
// not know are skipped.
func (c *Context) UnmarshalJSON(data []byte) error {
	s := &scanner{data: data}
	s.context(c)
	s.end()
	return s.err
}

// decode runs read over all of data.
func decode(data []byte, read func(s *scanner)) error {
	s := &scanner{data: data}
	read(s)
	s.end()
	return s.err
}
