// The conformance world (tests/conformance/conformance.wit) in Go.
package main

import (
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"
)

// Numbered is one row of numbered_rows.
type Numbered struct {
	I     int64   `heliosdb:"i"`
	Label string  `heliosdb:"label"`
	Half  float64 `heliosdb:"half"`
}

//heliosdb:procedure echo_i64
func EchoI64(x int64) (int64, error) { return x, nil }

//heliosdb:procedure echo_i32
func EchoI32(x int32) (int32, error) { return x, nil }

//heliosdb:procedure echo_f64
func EchoF64(x float64) (float64, error) { return x, nil }

//heliosdb:procedure echo_f32
func EchoF32(x float32) (float32, error) { return x, nil }

//heliosdb:procedure echo_bool
func EchoBool(x bool) (bool, error) { return x, nil }

//heliosdb:procedure echo_text
func EchoText(x string) (string, error) { return x, nil }

//heliosdb:procedure echo_blob
func EchoBlob(x []byte) ([]byte, error) {
	if x == nil {
		x = []byte{} // an empty BLOB, not NULL
	}
	return x, nil
}

//heliosdb:procedure echo_nullable
func EchoNullable(x *int64) (*int64, error) { return x, nil }

//heliosdb:procedure text_chars
func TextChars(x string) (int64, error) { return int64(utf8.RuneCountInString(x)), nil }

//heliosdb:procedure blob_sum
func BlobSum(x []byte) (int64, error) {
	var sum int64
	for _, b := range x {
		sum += int64(b)
	}
	return sum, nil
}

//heliosdb:procedure numbered_rows
func NumberedRows(n int64) ([]Numbered, error) {
	out := make([]Numbered, 0, n)
	for i := int64(1); i <= n; i++ {
		out = append(out, Numbered{I: i, Label: "row " + strconv.FormatInt(i, 10), Half: float64(i) / 2})
	}
	return out, nil
}

//heliosdb:procedure make_json
func MakeJSON(name string, n int64) (heliosdb.JSON, error) {
	var b strings.Builder
	b.WriteString(`{"name":`)
	b.WriteString(strconv.Quote(name))
	b.WriteString(`,"n":`)
	b.WriteString(strconv.FormatInt(n, 10))
	b.WriteString(`,"tags":["a","b"]}`)
	return heliosdb.JSON(b.String()), nil
}

func countWhere(sql string, arg any) (int64, error) {
	rows, err := heliosdb.Query(sql, arg)
	if err != nil {
		return 0, err
	}
	if rows.Len() == 0 {
		return 0, nil
	}
	return rows.Int64(0, "n"), nil
}

//heliosdb:procedure count_label
func CountLabel(label string) (int64, error) {
	return countWhere("SELECT count(*) AS n FROM conf_items WHERE label = ?", label)
}

//heliosdb:procedure query_error_case
func QueryErrorCase() (string, error) {
	_, err := heliosdb.Query("SELEKT 1")
	var he *heliosdb.Error
	if errors.As(err, &he) {
		return string(he.Code), nil
	}
	return "no error", nil
}

//heliosdb:procedure query_error_raise
func QueryErrorRaise() (int64, error) {
	if _, err := heliosdb.Query("SELEKT 1"); err != nil {
		return 0, err
	}
	return 0, nil
}

//heliosdb:procedure raise_user_error
func RaiseUserError(code, message string) (int64, error) {
	return 0, heliosdb.UserError(code, message)
}

func insert(id int64) error {
	_, err := heliosdb.Execute("INSERT INTO conf_items(id, label) VALUES (?, 'tx')", id)
	return err
}

func count(id int64) (int64, error) {
	return countWhere("SELECT count(*) AS n FROM conf_items WHERE id = ?", id)
}

//heliosdb:procedure tx_commit
func TxCommit(id int64) (int64, error) {
	if err := heliosdb.Transaction(func() error { return insert(id) }); err != nil {
		return 0, err
	}
	return count(id)
}

//heliosdb:procedure tx_rollback
func TxRollback(id int64) (int64, error) {
	if err := heliosdb.Begin(); err != nil {
		return 0, err
	}
	if err := insert(id); err != nil {
		return 0, err
	}
	if err := heliosdb.Rollback(); err != nil {
		return 0, err
	}
	return count(id)
}

//heliosdb:procedure insert_then_trap
func InsertThenTrap(id int64) (int64, error) {
	if err := insert(id); err != nil {
		return 0, err
	}
	panic("trapping on purpose after an insert")
}

//heliosdb:procedure log_levels
func LogLevels() (int64, error) {
	heliosdb.Log.Trace("t")
	heliosdb.Log.Debug("d")
	heliosdb.Log.Info("i")
	heliosdb.Log.Warn("w")
	heliosdb.Log.Error("e")
	return 5, nil
}

//heliosdb:procedure now_micros
func NowMicros() (int64, error) { return heliosdb.Now(), nil }

//heliosdb:procedure trap
func Trap() (int64, error) { panic("trapping on purpose") }

var sink int64

//heliosdb:procedure spin
func Spin() (int64, error) {
	for {
		sink++ // a global write the compiler cannot drop
	}
}

var kept [][]byte

//heliosdb:procedure allocate_mib
func AllocateMiB(mib int64) (int64, error) {
	// One MiB at a time, every page touched, all kept.
	blocks := make([][]byte, 0, mib)
	for i := int64(0); i < mib; i++ {
		block := make([]byte, 1<<20)
		for page := 0; page < len(block); page += 4096 {
			block[page] = 1
		}
		blocks = append(blocks, block)
	}
	kept = blocks
	n := int64(len(kept))
	kept = nil
	return n, nil
}

//heliosdb:procedure read_secret
func ReadSecret() (int64, error) {
	rows, err := heliosdb.Query("SELECT x FROM conf_secret")
	if err != nil {
		return 0, err
	}
	if rows.Len() == 0 {
		return 0, nil
	}
	return rows.Int64(0, "x"), nil
}

//heliosdb:procedure sha256_hex
func Sha256Hex(x []byte) (string, error) {
	sum, err := heliosdb.Digest("sha256", x)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(sum), nil
}

//heliosdb:procedure hmac_sha256_hex
func HMACSha256Hex(key, data []byte) (string, error) {
	mac, err := heliosdb.HMAC("sha256", key, data)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(mac), nil
}

//heliosdb:procedure fetch_text
func FetchText(url string) (string, error) {
	resp, err := heliosdb.Get(url)
	if err != nil {
		return "", err
	}
	return strconv.Itoa(resp.Status) + " " + string(resp.Body), nil
}

func main() {}
