package heliosdb

import (
	"math"
	"unicode/utf8"

	"github.com/heliosdb/heliosdb-wasm/sdks/go/internal/host"
	"github.com/heliosdb/heliosdb-wasm/sdks/go/internal/wire"
)

// Rows is a query result: column names and every row, read into guest
// memory at once. Cells are decoded when they are read (the result keeps the
// host's buffer plus 4 bytes per cell), addressed by row index and column
// name; asking for a column the query does not have panics (a programming
// error, like an index out of range).
type Rows struct {
	columns []string
	buf     []byte   // the rows buffer the host wrote (docs/abi.md section 6)
	cells   []uint32 // offset of every cell's tag in buf, row-major
}

// Len is the number of rows.
func (r *Rows) Len() int {
	if len(r.columns) == 0 {
		return 0
	}
	return len(r.cells) / len(r.columns)
}

// Columns are the result's column names, in order.
func (r *Rows) Columns() []string { return r.columns }

// Row returns row i (0-based).
func (r *Rows) Row(i int) Row {
	if i < 0 || i >= r.Len() {
		panic("heliosdb: row index " + itoa(i) + " out of range (" + itoa(r.Len()) + " rows)")
	}
	return Row{rows: r, i: i}
}

// Column returns the index of the named column, or -1.
func (r *Rows) Column(name string) int {
	for i, c := range r.columns {
		if c == name {
			return i
		}
	}
	return -1
}

func (r *Rows) column(name string) int {
	i := r.Column(name)
	if i < 0 {
		msg := "heliosdb: the result has no column \"" + name + "\" (columns:"
		for _, c := range r.columns {
			msg += " " + c
		}
		panic(msg + ")")
	}
	return i
}

// cell decodes the value at a cell offset (validated by decodeRows).
func (r *Rows) cell(at uint32) Value {
	b := r.buf[at:]
	switch b[0] {
	case host.TagInteger:
		return Value{kind: KindInteger, bits: le64(b[1:])}
	case host.TagReal:
		return Value{kind: KindReal, bits: le64(b[1:])}
	case host.TagText, host.TagBlob:
		n := uint32(b[1]) | uint32(b[2])<<8 | uint32(b[3])<<16 | uint32(b[4])<<24
		v := Value{kind: KindText, data: bytesString(b[5 : 5+n])}
		if b[0] == host.TagBlob {
			v.kind = KindBlob
		}
		return v
	case host.TagBoolean:
		return BoolValue(b[1] != 0)
	}
	return Null
}

func le64(b []byte) uint64 {
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// Value returns the cell of row i in column col.
func (r *Rows) Value(i int, col string) Value { return r.Row(i).Value(col) }

// IsNull reports whether the cell of row i in column col is NULL.
func (r *Rows) IsNull(i int, col string) bool { return r.Value(i, col).IsNull() }

// Int64 returns the cell of row i in column col as an int64 (see Value.Int64).
func (r *Rows) Int64(i int, col string) int64 { return r.Value(i, col).Int64() }

// Float64 returns the cell of row i in column col as a float64.
func (r *Rows) Float64(i int, col string) float64 { return r.Value(i, col).Float64() }

// String returns the cell of row i in column col as text.
func (r *Rows) String(i int, col string) string { return r.Value(i, col).Text() }

// Bytes returns the cell of row i in column col as bytes (a copy).
func (r *Rows) Bytes(i int, col string) []byte { return r.Value(i, col).Bytes() }

// Bool returns the cell of row i in column col as a boolean.
func (r *Rows) Bool(i int, col string) bool { return r.Value(i, col).Bool() }

// Row is one row of a Rows.
type Row struct {
	rows *Rows
	i    int
}

// Values are the row's cells in column order.
func (r Row) Values() []Value {
	n := len(r.rows.columns)
	out := make([]Value, n)
	for c := range out {
		out[c] = r.rows.cell(r.rows.cells[r.i*n+c])
	}
	return out
}

// Value returns the cell in column col.
func (r Row) Value(col string) Value {
	return r.rows.cell(r.rows.cells[r.i*len(r.rows.columns)+r.rows.column(col)])
}

func (r Row) IsNull(col string) bool     { return r.Value(col).IsNull() }
func (r Row) Int64(col string) int64     { return r.Value(col).Int64() }
func (r Row) Float64(col string) float64 { return r.Value(col).Float64() }
func (r Row) String(col string) string   { return r.Value(col).Text() }
func (r Row) Bytes(col string) []byte    { return r.Value(col).Bytes() }
func (r Row) Bool(col string) bool       { return r.Value(col).Bool() }

// Scan copies the row's cells, in column order, into dest: pointers to
// int64, int32, int, float64, float32, bool, string, []byte, Value or
// *int64/*float64/*string/*bool (set to nil for NULL). A NULL scanned into a
// non-pointer destination stores the zero value.
func (r Row) Scan(dest ...any) error {
	cells := r.Values()
	if len(dest) != len(cells) {
		return &Error{Code: CodeInvalidArgument, Message: "Scan: " + itoa(len(dest)) +
			" destinations for " + itoa(len(cells)) + " columns"}
	}
	for i, d := range dest {
		v := cells[i]
		switch p := d.(type) {
		case *int64:
			*p = v.Int64()
		case *int32:
			*p = int32(v.Int64())
		case *int:
			*p = int(v.Int64())
		case *float64:
			*p = v.Float64()
		case *float32:
			*p = float32(v.Float64())
		case *bool:
			*p = v.Bool()
		case *string:
			*p = v.Text()
		case *[]byte:
			*p = v.Bytes()
		case *JSON:
			*p = JSON(v.Bytes())
		case *Value:
			*p = v
		case **int64:
			*p = nil
			if !v.IsNull() {
				x := v.Int64()
				*p = &x
			}
		case **float64:
			*p = nil
			if !v.IsNull() {
				x := v.Float64()
				*p = &x
			}
		case **string:
			*p = nil
			if !v.IsNull() {
				x := v.Text()
				*p = &x
			}
		case **bool:
			*p = nil
			if !v.IsNull() {
				x := v.Bool()
				*p = &x
			}
		default:
			return &Error{Code: CodeInvalidArgument, Message: "Scan: unsupported destination for column " +
				r.rows.columns[i]}
		}
	}
	return nil
}

// decodeRows checks the rows encoding of docs/abi.md section 6 and indexes
// its cells.
func decodeRows(buf []byte) (*Rows, error) {
	rd := wire.NewReader(buf)
	ncols := int(rd.U32())
	if ncols > rd.Remaining()/4 {
		return nil, malformed()
	}
	rows := &Rows{columns: make([]string, ncols), buf: buf}
	for i := range rows.columns {
		rows.columns[i] = rd.String()
	}
	nrows := int(rd.U32())
	if rd.Bad || (ncols > 0 && nrows > rd.Remaining()/ncols) {
		return nil, malformed()
	}
	rows.cells = make([]uint32, nrows*ncols)
	for i := range rows.cells {
		rows.cells[i] = uint32(len(buf) - rd.Remaining())
		switch rd.U8() {
		case host.TagNull:
		case host.TagInteger, host.TagReal:
			rd.U64()
		case host.TagText, host.TagBlob:
			rd.Bytes()
		case host.TagBoolean:
			rd.U8()
		default:
			return nil, malformed()
		}
	}
	if rd.Bad || rd.Remaining() != 0 {
		return nil, malformed()
	}
	return rows, nil
}

func malformed() error {
	return &Error{Code: CodeInvalidArgument, Message: "malformed rows buffer from the host"}
}

// encodeParams encodes a parameter list (docs/abi.md section 5).
func encodeParams(params []any) ([]byte, error) {
	if len(params) == 0 {
		return nil, nil
	}
	b := wire.AppendU32(make([]byte, 0, 16*len(params)), uint32(len(params)))
	for i, p := range params {
		switch v := p.(type) {
		case nil:
			b = wire.AppendNull(b)
		case Value:
			if v.kind == KindText && !utf8.ValidString(v.data) {
				return nil, badParam(i, "is not valid UTF-8")
			}
			b = appendValue(b, v)
		case int64:
			b = wire.AppendInt(b, v)
		case int:
			b = wire.AppendInt(b, int64(v))
		case int32:
			b = wire.AppendInt(b, int64(v))
		case int16:
			b = wire.AppendInt(b, int64(v))
		case int8:
			b = wire.AppendInt(b, int64(v))
		case uint8:
			b = wire.AppendInt(b, int64(v))
		case uint16:
			b = wire.AppendInt(b, int64(v))
		case uint32:
			b = wire.AppendInt(b, int64(v))
		case uint:
			if uint64(v) > math.MaxInt64 {
				return nil, badParam(i, "is out of range for a SQL integer")
			}
			b = wire.AppendInt(b, int64(v))
		case uint64:
			if v > math.MaxInt64 {
				return nil, badParam(i, "is out of range for a SQL integer")
			}
			b = wire.AppendInt(b, int64(v))
		case float64:
			b = wire.AppendReal(b, v)
		case float32:
			b = wire.AppendReal(b, float64(v))
		case bool:
			b = wire.AppendBool(b, v)
		case string:
			if !utf8.ValidString(v) {
				return nil, badParam(i, "is not valid UTF-8 (bind it as []byte for a BLOB)")
			}
			b = wire.AppendText(b, v)
		case []byte:
			b = wire.AppendBlob(b, v)
		case JSON:
			if !utf8.Valid(v) {
				return nil, badParam(i, "is not valid UTF-8")
			}
			b = wire.AppendU32(append(b, host.TagText), uint32(len(v)))
			b = append(b, v...)
		case *int64:
			if v == nil {
				b = wire.AppendNull(b)
			} else {
				b = wire.AppendInt(b, *v)
			}
		case *float64:
			if v == nil {
				b = wire.AppendNull(b)
			} else {
				b = wire.AppendReal(b, *v)
			}
		case *string:
			if v == nil {
				b = wire.AppendNull(b)
			} else if !utf8.ValidString(*v) {
				return nil, badParam(i, "is not valid UTF-8")
			} else {
				b = wire.AppendText(b, *v)
			}
		case *bool:
			if v == nil {
				b = wire.AppendNull(b)
			} else {
				b = wire.AppendBool(b, *v)
			}
		default:
			return nil, badParam(i, "has an unsupported Go type (use an integer, float, "+
				"bool, string, []byte, heliosdb.JSON, heliosdb.Value, nil or a pointer to "+
				"int64/float64/string/bool)")
		}
	}
	return b, nil
}

func appendValue(b []byte, v Value) []byte {
	switch v.kind {
	case KindInteger:
		return wire.AppendInt(b, int64(v.bits))
	case KindReal:
		return wire.AppendReal(b, math.Float64frombits(v.bits))
	case KindText:
		return wire.AppendText(b, v.data)
	case KindBlob:
		b = wire.AppendU32(append(b, host.TagBlob), uint32(len(v.data)))
		return append(b, v.data...)
	case KindBoolean:
		return wire.AppendBool(b, v.bits != 0)
	}
	return wire.AppendNull(b)
}

func badParam(i int, what string) error {
	return &Error{Code: CodeInvalidArgument, Message: "query parameter " + itoa(i+1) + " " + what}
}
