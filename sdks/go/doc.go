// Package heliosdb is the Go SDK for HeliosDB WASM stored procedures: the
// guest side of the host API (docs/abi.md, Basic ABI), for Go 1.24+ built
// with GOOS=wasip1 GOARCH=wasm -buildmode=c-shared. It stays within the
// subset TinyGo compiles (no reflection, no goroutines, standard library only).
//
// A procedure is an ordinary Go function marked with a directive comment;
// the heliosdb-gen generator (cmd/heliosdb-gen, run by heliosdb-wasm build)
// writes the //go:wasmexport wrapper that converts arguments and results:
//
//	//heliosdb:procedure calculate_discount
//	func CalculateDiscount(customerID int64, orderTotal float64) (float64, error) {
//		row, err := heliosdb.QueryRow("SELECT tier FROM customers WHERE id = ?", customerID)
//		if errors.Is(err, heliosdb.ErrNoRows) {
//			return 0, heliosdb.UserError("CUSTOMER_NOT_FOUND", "no such customer")
//		} else if err != nil {
//			return 0, err
//		}
//		...
//	}
//
// The host calls: Query, QueryRow, Execute, Begin, Commit, Rollback,
// Transaction, Now, Log, Fetch and Get (capability network:<host>), Digest
// and HMAC (capability crypto). Failed host calls return an *Error whose Code is
// the WIT error case; UserError makes the error a procedure fails with.
//
// The package also exports the Basic ABI's guest functions
// heliosdb_abi_version, heliosdb_alloc and heliosdb_free, so importing it
// (directly or through the generated wrappers) makes a module a HeliosDB
// module.
package heliosdb
