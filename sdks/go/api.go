package heliosdb

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/heliosdb/heliosdb-wasm/sdks/go/internal/host"
)

func itoa(i int) string { return strconv.Itoa(i) }

// Query runs one read statement with ? parameters (see encodeParams for the
// Go types that bind) and returns every row. A denied capability, an SQL
// error or a limit comes back as an *Error.
func Query(sql string, params ...any) (*Rows, error) {
	encoded, err := encodeParams(params)
	if err != nil {
		return nil, err
	}
	if !utf8.ValidString(sql) {
		return nil, invalidSQL()
	}
	buf, status := host.Query(sql, encoded)
	if status != host.StatusOK {
		return nil, hostError(status)
	}
	return decodeRows(buf)
}

// QueryRow runs Query and returns its first row, or ErrNoRows.
func QueryRow(sql string, params ...any) (Row, error) {
	rows, err := Query(sql, params...)
	if err != nil {
		return Row{}, err
	}
	if rows.Len() == 0 {
		return Row{}, ErrNoRows
	}
	return rows.Row(0), nil
}

// Execute runs one write statement with ? parameters and returns the
// number of rows it changed.
func Execute(sql string, params ...any) (int64, error) {
	encoded, err := encodeParams(params)
	if err != nil {
		return 0, err
	}
	if !utf8.ValidString(sql) {
		return 0, invalidSQL()
	}
	changed, status := host.Execute(sql, encoded)
	if status != host.StatusOK {
		return 0, hostError(status)
	}
	return changed, nil
}

// Now is the host's wall-clock time in microseconds since the Unix epoch.
func Now() int64 { return host.Now() }

// Begin opens a nested transaction (a savepoint inside the caller's
// transaction); close it with Commit or Rollback before returning.
func Begin() error { return status(host.BeginTx()) }

// Commit releases the innermost transaction opened by Begin.
func Commit() error { return status(host.CommitTx()) }

// Rollback rolls back the innermost transaction opened by Begin.
func Rollback() error { return status(host.RollbackTx()) }

// Transaction runs fn in a nested transaction: committed when fn returns
// nil, rolled back when it returns an error (which Transaction returns) or
// panics.
func Transaction(fn func() error) error {
	if err := Begin(); err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			_ = Rollback()
		}
	}()
	if err := fn(); err != nil {
		done = true
		_ = Rollback()
		return err
	}
	if err := Commit(); err != nil {
		return err // the deferred Rollback closes the savepoint
	}
	done = true
	return nil
}

func invalidSQL() error {
	return &Error{Code: CodeInvalidArgument, Message: "the SQL text is not valid UTF-8"}
}

func status(s int32) error {
	if s == host.StatusOK {
		return nil
	}
	return hostError(s)
}

// Logger writes lines to the procedure log (the engine's db.logs()).
type Logger struct{}

// Log is the procedure log: heliosdb.Log.Info("...").
var Log Logger

func (Logger) Trace(msg string) { logAt(0, msg) }
func (Logger) Debug(msg string) { logAt(1, msg) }
func (Logger) Info(msg string)  { logAt(2, msg) }
func (Logger) Warn(msg string)  { logAt(3, msg) }
func (Logger) Error(msg string) { logAt(4, msg) }

func logAt(level int, msg string) {
	if !utf8.ValidString(msg) {
		msg = strings.ToValidUTF8(msg, "\uFFFD")
	}
	host.Log(level, msg)
}
