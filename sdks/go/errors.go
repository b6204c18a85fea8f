package heliosdb

import (
	"strconv"

	"github.com/heliosdb/heliosdb-wasm/sdks/go/internal/host"
)

// ErrorCode is a case of the WIT error variant (wit/types.wit).
type ErrorCode string

// The WIT error cases, in the order of their Basic-ABI status codes 1..6.
const (
	CodeAccessDenied    ErrorCode = "access-denied"    // a capability is missing
	CodeSQLError        ErrorCode = "sql-error"        // SQLite rejected the statement
	CodeConstraint      ErrorCode = "constraint"       // a constraint was violated
	CodeLimitExceeded   ErrorCode = "limit-exceeded"   // a resource limit was hit
	CodeInvalidArgument ErrorCode = "invalid-argument" // bad parameter, commit without begin, ...
	CodeUserError       ErrorCode = "user-error"       // raised by a procedure (UserCode says which)
)

// DefaultUserCode is the user-error code of a procedure that fails with an
// error that is not an *Error (errors.New, fmt.Errorf, ...).
const DefaultUserCode = "ERROR"

// Error is a failed host call, or the error a procedure fails with.
type Error struct {
	Code     ErrorCode // the WIT error case
	UserCode string    // the procedure's own code when Code is CodeUserError
	Message  string
}

func (e *Error) Error() string {
	code := string(e.Code)
	if e.Code == CodeUserError && e.UserCode != "" {
		code = e.UserCode
	}
	if e.Message == "" {
		return code
	}
	return code + ": " + e.Message
}

// Is makes errors.Is(err, heliosdb.ErrConstraint) (and any *Error target
// with a Code and optionally a UserCode) match by code, ignoring the message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok || t.Code != e.Code {
		return false
	}
	return t.UserCode == "" || t.UserCode == e.UserCode
}

// Sentinels for errors.Is, one per WIT error case.
var (
	ErrAccessDenied    = &Error{Code: CodeAccessDenied}
	ErrSQL             = &Error{Code: CodeSQLError}
	ErrConstraint      = &Error{Code: CodeConstraint}
	ErrLimitExceeded   = &Error{Code: CodeLimitExceeded}
	ErrInvalidArgument = &Error{Code: CodeInvalidArgument}
	ErrUser            = &Error{Code: CodeUserError}
)

// ErrNoRows is returned by QueryRow when the query produced no row.
var ErrNoRows = &noRows{}

type noRows struct{}

func (*noRows) Error() string { return "heliosdb: no rows in result set" }

// UserError returns the error a procedure fails with: the call fails with
// the WIT user-error carrying code and message, and everything the call
// wrote is rolled back.
func UserError(code, message string) error {
	return &Error{Code: CodeUserError, UserCode: code, Message: message}
}

var statusCodes = [...]ErrorCode{
	host.StatusAccessDenied:    CodeAccessDenied,
	host.StatusSQLError:        CodeSQLError,
	host.StatusConstraint:      CodeConstraint,
	host.StatusLimitExceeded:   CodeLimitExceeded,
	host.StatusInvalidArgument: CodeInvalidArgument,
	host.StatusUserError:       CodeUserError,
}

// hostError turns a non-zero status into an *Error with the host's message.
func hostError(status int32) error {
	code := CodeSQLError
	if status > 0 && int(status) < len(statusCodes) {
		code = statusCodes[status]
	}
	last, msg := host.LastError()
	if last == host.StatusOK {
		msg = "host call failed with status " + strconv.Itoa(int(status))
	}
	return &Error{Code: code, Message: msg}
}
