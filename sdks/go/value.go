package heliosdb

import (
	"math"
	"strconv"
	"unsafe"
)

// JSON is JSON text: as a parameter or result type of a procedure it maps to
// SQL JSON, as a query parameter it binds as text.
type JSON []byte

// Kind is the storage class of a Value.
type Kind uint8

// The value kinds of docs/abi.md section 5. Query results report SQLite's
// storage classes, so booleans come back as KindInteger.
const (
	KindNull Kind = iota
	KindInteger
	KindReal
	KindText
	KindBlob
	KindBoolean
)

var kindNames = [...]string{"NULL", "INTEGER", "REAL", "TEXT", "BLOB", "BOOLEAN"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Value is one SQL value of a query result (or a query parameter). The
// accessors convert between the numeric kinds and return the zero value
// for NULL and for kinds that do not convert.
type Value struct {
	kind Kind
	bits uint64 // integer, real (as IEEE bits) or boolean (0/1)
	data string // text, or a blob's bytes (32 bytes per value in all)
}

// Null is the SQL NULL.
var Null = Value{}

// Int64Value and the other constructors build a Value, e.g. to pass as a
// query parameter.
func Int64Value(v int64) Value { return Value{kind: KindInteger, bits: uint64(v)} }

func Float64Value(v float64) Value { return Value{kind: KindReal, bits: math.Float64bits(v)} }

func TextValue(v string) Value { return Value{kind: KindText, data: v} }

// BlobValue does not copy v: do not modify it while the Value is in use.
func BlobValue(v []byte) Value { return Value{kind: KindBlob, data: bytesString(v)} }

func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

func BoolValue(v bool) Value {
	if v {
		return Value{kind: KindBoolean, bits: 1}
	}
	return Value{kind: KindBoolean}
}

// Kind is the value's storage class.
func (v Value) Kind() Kind { return v.kind }

// IsNull reports whether the value is SQL NULL.
func (v Value) IsNull() bool { return v.kind == KindNull }

// Int64 returns an integer or boolean as is, a real truncated toward zero.
func (v Value) Int64() int64 {
	switch v.kind {
	case KindInteger, KindBoolean:
		return int64(v.bits)
	case KindReal:
		return int64(math.Float64frombits(v.bits))
	}
	return 0
}

// Float64 returns a real as is, an integer or boolean converted.
func (v Value) Float64() float64 {
	switch v.kind {
	case KindReal:
		return math.Float64frombits(v.bits)
	case KindInteger, KindBoolean:
		return float64(int64(v.bits))
	}
	return 0
}

// Bool is true for a non-zero integer, real or boolean.
func (v Value) Bool() bool {
	switch v.kind {
	case KindInteger, KindBoolean:
		return v.bits != 0
	case KindReal:
		return math.Float64frombits(v.bits) != 0
	}
	return false
}

// Text returns text, or a blob's bytes as a string; "" otherwise.
func (v Value) Text() string {
	if v.kind == KindText || v.kind == KindBlob {
		return v.data
	}
	return ""
}

// Bytes returns a copy of a blob's bytes, or of text; nil otherwise.
func (v Value) Bytes() []byte {
	if v.kind == KindText || v.kind == KindBlob {
		return []byte(v.data)
	}
	return nil
}

// String formats the value: text as is, numbers as Go formats them, NULL
// as "NULL" and a blob as its bytes.
func (v Value) String() string {
	switch v.kind {
	case KindNull:
		return "NULL"
	case KindInteger:
		return strconv.FormatInt(int64(v.bits), 10)
	case KindReal:
		return strconv.FormatFloat(math.Float64frombits(v.bits), 'g', -1, 64)
	case KindBoolean:
		return strconv.FormatBool(v.bits != 0)
	}
	return v.Text()
}
