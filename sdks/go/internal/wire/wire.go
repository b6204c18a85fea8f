// Package wire implements the value, parameter-list and rows encodings of
// docs/abi.md sections 5 and 6 (all integers little-endian).
package wire

import (
	"math"
	"unsafe"

	"github.com/heliosdb/heliosdb-wasm/sdks/go/internal/host"
)

// AppendU32 appends a little-endian u32.
func AppendU32(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

// AppendU64 appends a little-endian u64.
func AppendU64(b []byte, v uint64) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24),
		byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56))
}

// PutU32 overwrites a u32 at b[at:].
func PutU32(b []byte, at int, v uint32) {
	b[at], b[at+1], b[at+2], b[at+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

func AppendNull(b []byte) []byte { return append(b, host.TagNull) }

func AppendInt(b []byte, v int64) []byte { return AppendU64(append(b, host.TagInteger), uint64(v)) }

func AppendReal(b []byte, v float64) []byte {
	return AppendU64(append(b, host.TagReal), math.Float64bits(v))
}

func AppendText(b []byte, s string) []byte {
	b = AppendU32(append(b, host.TagText), uint32(len(s)))
	return append(b, s...)
}

func AppendBlob(b []byte, v []byte) []byte {
	b = AppendU32(append(b, host.TagBlob), uint32(len(v)))
	return append(b, v...)
}

func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, host.TagBoolean, 1)
	}
	return append(b, host.TagBoolean, 0)
}

// Reader is a bounds-checked cursor over a buffer the host wrote.
type Reader struct {
	buf []byte
	pos int
	Bad bool // set once the buffer turned out malformed
}

func NewReader(buf []byte) *Reader { return &Reader{buf: buf} }

func (r *Reader) take(n int) []byte {
	if r.Bad || n < 0 || n > len(r.buf)-r.pos {
		r.Bad = true
		return nil
	}
	b := r.buf[r.pos : r.pos+n : r.pos+n]
	r.pos += n
	return b
}

func (r *Reader) U8() byte {
	b := r.take(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *Reader) U32() uint32 {
	b := r.take(4)
	if b == nil {
		return 0
	}
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func (r *Reader) U64() uint64 {
	b := r.take(8)
	if b == nil {
		return 0
	}
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// Bytes returns the next length-prefixed chunk (aliasing the buffer).
func (r *Reader) Bytes() []byte { return r.take(int(r.U32())) }

// String returns the next length-prefixed chunk as a string; it aliases the
// buffer, which the SDK never writes after the host filled it.
func (r *Reader) String() string {
	b := r.Bytes()
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// Remaining is the number of unread bytes.
func (r *Reader) Remaining() int { return len(r.buf) - r.pos }
