// Package host is the raw Basic ABI (docs/abi.md): the heliosdb host imports,
// the allocator the host writes into, and the buffers it hands over.
//
// Only the packages of this module use it; procedure authors use package
// heliosdb, generated export wrappers use package abi.
package host

// Status codes of the fallible host calls: the WIT error case number plus one.
const (
	StatusOK              = 0
	StatusAccessDenied    = 1
	StatusSQLError        = 2
	StatusConstraint      = 3
	StatusLimitExceeded   = 4
	StatusInvalidArgument = 5
	StatusUserError       = 6
)

// Value tags (docs/abi.md section 5) and the rows tag of heliosdb_return.
const (
	TagNull    = 0
	TagInteger = 1
	TagReal    = 2
	TagText    = 3
	TagBlob    = 4
	TagBoolean = 5
	TagRows    = 6
)

// Version is the Basic ABI version this SDK implements.
const Version = 1
