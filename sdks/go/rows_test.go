package heliosdb

import (
	"errors"
	"math"
	"testing"

	"github.com/heliosdb/heliosdb-wasm/sdks/go/internal/wire"
)

// rowsBuffer encodes a rows buffer as the host does (docs/abi.md section 6).
func rowsBuffer(columns []string, cells ...func([]byte) []byte) []byte {
	b := wire.AppendU32(nil, uint32(len(columns)))
	for _, c := range columns {
		b = wire.AppendU32(b, uint32(len(c)))
		b = append(b, c...)
	}
	b = wire.AppendU32(b, uint32(len(cells)/len(columns)))
	for _, cell := range cells {
		b = cell(b)
	}
	return b
}

func i64(v int64) func([]byte) []byte { return func(b []byte) []byte { return wire.AppendInt(b, v) } }
func f64(v float64) func([]byte) []byte {
	return func(b []byte) []byte { return wire.AppendReal(b, v) }
}
func text(v string) func([]byte) []byte {
	return func(b []byte) []byte { return wire.AppendText(b, v) }
}
func blob(v []byte) func([]byte) []byte {
	return func(b []byte) []byte { return wire.AppendBlob(b, v) }
}
func boolean(v bool) func([]byte) []byte {
	return func(b []byte) []byte { return wire.AppendBool(b, v) }
}
func null() func([]byte) []byte { return wire.AppendNull }

func TestDecodeRows(t *testing.T) {
	buf := rowsBuffer([]string{"n", "tier", "spent", "data", "ok"},
		i64(3), text("gold"), f64(609.99), blob([]byte{1, 2}), boolean(true),
		i64(-7), null(), f64(0), blob(nil), boolean(false),
	)
	rows, err := decodeRows(buf)
	if err != nil {
		t.Fatal(err)
	}
	if rows.Len() != 2 || len(rows.Columns()) != 5 {
		t.Fatalf("got %d rows, %v", rows.Len(), rows.Columns())
	}
	if rows.Int64(0, "n") != 3 || rows.String(0, "tier") != "gold" || rows.Float64(0, "spent") != 609.99 {
		t.Errorf("row 0: %v %q %v", rows.Int64(0, "n"), rows.String(0, "tier"), rows.Float64(0, "spent"))
	}
	if string(rows.Bytes(0, "data")) != "\x01\x02" || !rows.Bool(0, "ok") {
		t.Errorf("row 0 blob/bool")
	}
	if rows.Int64(1, "n") != -7 || !rows.IsNull(1, "tier") || rows.String(1, "tier") != "" || rows.Bool(1, "ok") {
		t.Errorf("row 1")
	}
	if rows.Float64(0, "n") != 3 || rows.Int64(0, "spent") != 609 {
		t.Errorf("numeric conversions")
	}
	var n int64
	var tier *string
	var spent float64
	var data []byte
	var ok bool
	if err := rows.Row(1).Scan(&n, &tier, &spent, &data, &ok); err != nil || n != -7 || tier != nil {
		t.Errorf("scan: %v %v %v", err, n, tier)
	}
	if err := rows.Row(0).Scan(&n); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("scan with too few destinations: %v", err)
	}
	if v := rows.Row(0).Values(); len(v) != 5 || v[1].Kind() != KindText || v[4].String() != "true" {
		t.Errorf("values: %v", v)
	}
}

func TestDecodeRowsRejectsMalformed(t *testing.T) {
	good := rowsBuffer([]string{"a"}, text("x"))
	for i := 0; i < len(good); i++ {
		if _, err := decodeRows(good[:i]); err == nil {
			t.Errorf("truncated at %d: no error", i)
		}
	}
	if _, err := decodeRows(append(good, 0)); err == nil {
		t.Error("trailing byte: no error")
	}
	bad := rowsBuffer([]string{"a"}, func(b []byte) []byte { return append(b, 9) })
	if _, err := decodeRows(bad); err == nil {
		t.Error("unknown tag: no error")
	}
}

func TestMissingColumnPanics(t *testing.T) {
	rows, _ := decodeRows(rowsBuffer([]string{"a"}, i64(1)))
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	rows.Int64(0, "b")
}

func TestEncodeParams(t *testing.T) {
	s := "s"
	var nilInt *int64
	got, err := encodeParams([]any{nil, int64(1), 2, int32(3), 1.5, float32(0.5), true, "hé", []byte{7},
		JSON(`{}`), &s, nilInt, TextValue("v"), uint64(9)})
	if err != nil {
		t.Fatal(err)
	}
	want := wire.AppendU32(nil, 14)
	want = wire.AppendNull(want)
	want = wire.AppendInt(want, 1)
	want = wire.AppendInt(want, 2)
	want = wire.AppendInt(want, 3)
	want = wire.AppendReal(want, 1.5)
	want = wire.AppendReal(want, 0.5)
	want = wire.AppendBool(want, true)
	want = wire.AppendText(want, "hé")
	want = wire.AppendBlob(want, []byte{7})
	want = wire.AppendText(want, "{}")
	want = wire.AppendText(want, "s")
	want = wire.AppendNull(want)
	want = wire.AppendText(want, "v")
	want = wire.AppendInt(want, 9)
	if string(got) != string(want) {
		t.Errorf("encoding:\n got %x\nwant %x", got, want)
	}
	if b, err := encodeParams(nil); b != nil || err != nil {
		t.Errorf("no parameters: %x %v", b, err)
	}
	for _, bad := range []any{struct{}{}, uint64(math.MaxUint64), "\xff", map[string]int{}} {
		if _, err := encodeParams([]any{bad}); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%T: %v", bad, err)
		}
	}
}

func TestErrors(t *testing.T) {
	err := UserError("CUSTOMER_NOT_FOUND", "no customer with id 42")
	if err.Error() != "CUSTOMER_NOT_FOUND: no customer with id 42" {
		t.Error(err.Error())
	}
	if !errors.Is(err, ErrUser) || !errors.Is(err, &Error{Code: CodeUserError, UserCode: "CUSTOMER_NOT_FOUND"}) {
		t.Error("errors.Is user error")
	}
	if errors.Is(err, ErrSQL) || errors.Is(err, &Error{Code: CodeUserError, UserCode: "OTHER"}) {
		t.Error("errors.Is matched a different code")
	}
	var he *Error
	if !errors.As(err, &he) || he.UserCode != "CUSTOMER_NOT_FOUND" {
		t.Error("errors.As")
	}
	if (&Error{Code: CodeConstraint, Message: "UNIQUE"}).Error() != "constraint: UNIQUE" {
		t.Error("host error text")
	}
}
