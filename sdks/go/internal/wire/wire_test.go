package wire

import "testing"

func TestRoundTrip(t *testing.T) {
	b := AppendU32(nil, 0xdeadbeef)
	b = AppendU64(b, 0x0102030405060708)
	b = AppendU32(b, 3)
	b = append(b, "abc"...)
	r := NewReader(b)
	if r.U32() != 0xdeadbeef || r.U64() != 0x0102030405060708 || r.String() != "abc" || r.Remaining() != 0 || r.Bad {
		t.Fatal("round trip")
	}
	if r.U8() != 0 || !r.Bad {
		t.Fatal("reading past the end must mark the reader bad")
	}
	PutU32(b, 0, 1)
	if NewReader(b).U32() != 1 {
		t.Fatal("PutU32")
	}
}
