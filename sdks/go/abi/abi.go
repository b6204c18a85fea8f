// Package abi is the Basic-ABI side of procedure exports: what the
// //go:wasmexport wrappers written by heliosdb-gen call to take arguments
// and hand back results (docs/abi.md sections 3 and 4).
//
// Procedure authors normally never import it. It is public so that an
// export can also be written by hand:
//
//	//go:wasmexport greet
//	func greet(namePtr, nameLen uint32) {
//		name := abi.String(namePtr, nameLen)
//		abi.ReturnText("hello " + name)
//	}
package abi

import (
	"encoding/binary"
	"errors"
	"math"
	"unicode/utf8"

	heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"
	"github.com/heliosdb/heliosdb-wasm/sdks/go/internal/host"
	"github.com/heliosdb/heliosdb-wasm/sdks/go/internal/wire"
)

// String takes over a TEXT argument (ptr, len): the host allocated it with
// heliosdb_alloc and handed it to the guest.
func String(ptr, n uint32) string { return host.TakeString(ptr, n) }

// Bytes takes over a BLOB argument.
func Bytes(ptr, n uint32) []byte { return host.Take(ptr, n) }

// JSON takes over a JSON argument.
func JSON(ptr, n uint32) heliosdb.JSON { return heliosdb.JSON(host.Take(ptr, n)) }

// IsNull reports whether argument index (0-based, in SQL order) is NULL.
// Only a procedure created CALLED ON NULL INPUT ever sees NULL arguments
// (numbers then arrive as 0, text and blobs as an empty buffer).
func IsNull(index int) bool {
	tag, _, buf := host.GetParam(index)
	_ = buf // a text/blob copy the garbage collector reclaims
	return tag == host.TagNull
}

// ReturnNull makes the call's result SQL NULL (it wins over the export's
// wasm result).
func ReturnNull() { host.Return(host.TagNull, nil) }

// ReturnText sets a TEXT result.
func ReturnText(s string) {
	if !utf8.ValidString(s) {
		Fail(&heliosdb.Error{Code: heliosdb.CodeInvalidArgument, Message: "the TEXT result is not valid UTF-8"})
		return
	}
	host.ReturnString(s)
}

// ReturnBlob sets a BLOB result.
func ReturnBlob(b []byte) { host.Return(host.TagBlob, b) }

// ReturnJSON sets a JSON result (the engine checks that it parses).
func ReturnJSON(b []byte) {
	if !utf8.Valid(b) {
		Fail(&heliosdb.Error{Code: heliosdb.CodeInvalidArgument, Message: "the JSON result is not valid UTF-8"})
		return
	}
	host.Return(host.TagText, b)
}

// ReturnInt64 sets an integer result through heliosdb_return.
func ReturnInt64(v int64) { host.Return(host.TagInteger, wire.AppendU64(nil, uint64(v))) }

// ReturnFloat64 sets a real result through heliosdb_return.
func ReturnFloat64(v float64) { host.Return(host.TagReal, wire.AppendU64(nil, math.Float64bits(v))) }

// ReturnBool sets a boolean result through heliosdb_return.
func ReturnBool(v bool) {
	if v {
		host.Return(host.TagBoolean, []byte{1})
	} else {
		host.Return(host.TagBoolean, []byte{0})
	}
}

// Fail makes the call fail with err; the export must return right after
// (its wasm result is ignored). A user error (heliosdb.UserError) keeps its
// code; a host error that escapes (say an SQL error from heliosdb.Query)
// fails with a user error whose code is the WIT case ("sql-error", ...),
// because the Basic ABI has no other way out; any other error fails with
// the code heliosdb.DefaultUserCode and err.Error() as the message.
func Fail(err error) {
	code, msg := heliosdb.DefaultUserCode, err.Error()
	var he *heliosdb.Error
	if errors.As(err, &he) {
		msg = he.Message
		if he.Code == heliosdb.CodeUserError && he.UserCode != "" {
			code = he.UserCode
		} else {
			code = string(he.Code)
		}
		if he != err { // wrapped: keep the wrapping context in the message
			msg = err.Error()
		}
	}
	if !utf8.ValidString(msg) {
		msg = string([]rune(msg)) // replaces invalid bytes with U+FFFD
	}
	if !utf8.ValidString(code) {
		code = heliosdb.DefaultUserCode
	}
	host.Error(code, msg)
}

// Table builds a TABLE result: cells are appended row by row, in column
// order, then Return hands the rows buffer (docs/abi.md section 6) to the host.
type Table struct {
	buf    []byte
	ncols  int
	cells  int
	nrowAt int
	err    error
}

// NewTable starts a table result with the given column names.
func NewTable(columns ...string) *Table {
	t := &Table{ncols: len(columns)}
	t.buf = wire.AppendU32(make([]byte, 0, 256), uint32(len(columns)))
	for _, c := range columns {
		t.buf = wire.AppendU32(t.buf, uint32(len(c)))
		t.buf = append(t.buf, c...)
	}
	t.nrowAt = len(t.buf)
	t.buf = wire.AppendU32(t.buf, 0)
	return t
}

func (t *Table) Null()             { t.buf = wire.AppendNull(t.buf); t.cells++ }
func (t *Table) Int64(v int64)     { t.buf = wire.AppendInt(t.buf, v); t.cells++ }
func (t *Table) Float64(v float64) { t.buf = wire.AppendReal(t.buf, v); t.cells++ }
func (t *Table) Bool(v bool)       { t.buf = wire.AppendBool(t.buf, v); t.cells++ }
func (t *Table) Blob(v []byte)     { t.buf = wire.AppendBlob(t.buf, v); t.cells++ }

// Text appends a TEXT cell (or JSON text).
func (t *Table) Text(v string) {
	if t.err == nil && !utf8.ValidString(v) {
		t.err = &heliosdb.Error{Code: heliosdb.CodeInvalidArgument, Message: "a TEXT cell of the table result is not valid UTF-8"}
	}
	t.buf = wire.AppendText(t.buf, v)
	t.cells++
}

// Return sets the table as the call's result.
func (t *Table) Return() {
	if t.err != nil {
		Fail(t.err)
		return
	}
	if t.ncols == 0 || t.cells%t.ncols != 0 {
		panic("heliosdb: a table result needs the same number of cells in every row")
	}
	wire.PutU32(t.buf, t.nrowAt, uint32(t.cells/t.ncols))
	host.Return(host.TagRows, t.buf)
}

// Batch entry points (docs/abi.md section 9): the host lays the argument
// columns out one after another, little-endian, and reads count results back.

// BatchBuffer is the batch buffer (ptr, n) the host allocated.
func BatchBuffer(ptr, n uint32) []byte { return host.Buffer(ptr, n) }

// I64 reads the int64 at off; I32, F64 and F32 read their types alike.
func I64(b []byte, off int) int64   { return int64(le.Uint64(b[off:])) }
func I32(b []byte, off int) int32   { return int32(le.Uint32(b[off:])) }
func F64(b []byte, off int) float64 { return math.Float64frombits(le.Uint64(b[off:])) }
func F32(b []byte, off int) float32 { return math.Float32frombits(le.Uint32(b[off:])) }

// PutI64 writes v at off; PutI32, PutF64 and PutF32 write their types alike.
func PutI64(b []byte, off int, v int64)   { le.PutUint64(b[off:], uint64(v)) }
func PutI32(b []byte, off int, v int32)   { le.PutUint32(b[off:], uint32(v)) }
func PutF64(b []byte, off int, v float64) { le.PutUint64(b[off:], math.Float64bits(v)) }
func PutF32(b []byte, off int, v float32) { le.PutUint32(b[off:], math.Float32bits(v)) }

var le = binary.LittleEndian
