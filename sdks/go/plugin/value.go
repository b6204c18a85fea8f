package plugin

import (
	"bytes"
	"math"
	"strconv"
	"unicode/utf8"

	heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"
)

// AppendValue appends the JSON form of an SQL value (WIT types.value):
// "null", {"integer": n}, {"real": x}, {"text": s}, {"blob": [bytes]} or
// {"boolean": b}.
func AppendValue(b []byte, v heliosdb.Value) []byte {
	switch v.Kind() {
	case heliosdb.KindInteger:
		b = append(b, `{"integer":`...)
		b = strconv.AppendInt(b, v.Int64(), 10)
	case heliosdb.KindReal:
		f := v.Float64()
		if math.IsNaN(f) {
			// SQLite has no NaN: the engine stores it as NULL anyway.
			return append(b, `"null"`...)
		}
		b = append(b, `{"real":`...)
		b = appendFloat(b, f)
	case heliosdb.KindText:
		b = append(b, `{"text":`...)
		b = appendString(b, v.Text())
	case heliosdb.KindBlob:
		b = append(b, `{"blob":[`...)
		data := v.Text() // the blob's bytes without a copy
		for i := 0; i < len(data); i++ {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, uint64(data[i]), 10)
		}
		b = append(b, ']')
	case heliosdb.KindBoolean:
		b = append(b, `{"boolean":`...)
		b = strconv.AppendBool(b, v.Bool())
	default:
		return append(b, `"null"`...)
	}
	return append(b, '}')
}

// appendFloat writes a real so that it reads back as a real: "2.0", not
// "2" (which a JSON reader would take for an integer). Infinities are
// written as Python's json module writes and reads them, since plain JSON
// has no spelling for them and SQLite does have them.
func appendFloat(b []byte, f float64) []byte {
	switch {
	case math.IsInf(f, 1):
		return append(b, "Infinity"...)
	case math.IsInf(f, -1):
		return append(b, "-Infinity"...)
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, 'g', -1, 64)
	if bytes.IndexAny(b[start:], ".e") < 0 {
		b = append(b, ".0"...)
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString writes a JSON string without encoding/json's HTML escaping;
// invalid UTF-8 becomes U+FFFD, as the engine would refuse it.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		// Copy the run of bytes that need no escaping in one go.
		run := i
		for run < len(s) && s[run] >= 0x20 && s[run] < utf8.RuneSelf && s[run] != '"' && s[run] != '\\' && s[run] != 0x7f {
			run++
		}
		if run > i {
			b = append(b, s[i:run]...)
			i = run
			continue
		}
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else if r == '\u2028' || r == '\u2029' {
			// Valid JSON, but not valid JavaScript: escaped as encoding/json does.
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// MarshalValue is AppendValue into a new slice.
func MarshalValue(v heliosdb.Value) []byte { return AppendValue(nil, v) }

// UnmarshalValue reads the JSON form of one SQL value. Integers are parsed
// from their digits, so every int64 survives exactly.
func UnmarshalValue(data []byte) (heliosdb.Value, error) {
	var v heliosdb.Value
	err := decode(data, func(s *scanner) { v = s.value() })
	if err != nil {
		return heliosdb.Null, err
	}
	return v, nil
}

// wireValue gives heliosdb.Value (a type of another package) the JSON form
// inside structs that encoding/json reads and writes.
type wireValue struct{ v heliosdb.Value }

func (w *wireValue) UnmarshalJSON(data []byte) (err error) {
	w.v, err = UnmarshalValue(data)
	return err
}

func (w wireValue) MarshalJSON() ([]byte, error) { return MarshalValue(w.v), nil }

var nonFinite = map[string]float64{
	"NaN":       math.NaN(),
	"Infinity":  math.Inf(1),
	"-Infinity": math.Inf(-1),
}

// quoteNonFinite turns the bare NaN, Infinity and -Infinity that Python's
// json module writes for non-finite reals (and SQLite stores infinities)
// into strings, which encoding/json can read; the "real" case accepts them.
// Text inside JSON strings is left alone.
func quoteNonFinite(data []byte) []byte {
	if !bytes.Contains(data, []byte("NaN")) && !bytes.Contains(data, []byte("Infinity")) {
		return data
	}
	out := make([]byte, 0, len(data)+16)
	inString := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inString {
			out = append(out, c)
			if c == '\\' && i+1 < len(data) {
				i++
				out = append(out, data[i])
			} else if c == '"' {
				inString = false
			}
			continue
		}
		if c == '"' {
			inString = true
			out = append(out, c)
			continue
		}
		replaced := false
		for _, word := range [...]string{"-Infinity", "Infinity", "NaN"} {
			if bytes.HasPrefix(data[i:], []byte(word)) {
				out = append(append(append(out, '"'), word...), '"')
				i += len(word) - 1
				replaced = true
				break
			}
		}
		if !replaced {
			out = append(out, c)
		}
	}
	return out
}
