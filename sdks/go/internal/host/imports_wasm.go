//go:build wasm

package host

import "unsafe"

// The host imports of docs/abi.md section 4. Pointers are passed as
// unsafe.Pointer (an i32 in wasm); Go treats the arguments of these bodyless
// functions as escaping, so everything passed here lives on the heap or in
// static data and cannot move while the host reads it.

//go:wasmimport heliosdb heliosdb_query
func hostQuery(sql unsafe.Pointer, sqlLen uint32, params unsafe.Pointer, paramsLen uint32, out unsafe.Pointer) int32

//go:wasmimport heliosdb heliosdb_execute
func hostExecute(sql unsafe.Pointer, sqlLen uint32, params unsafe.Pointer, paramsLen uint32, out unsafe.Pointer) int32

//go:wasmimport heliosdb heliosdb_get_param
func hostGetParam(index uint32, out unsafe.Pointer) int32

//go:wasmimport heliosdb heliosdb_return
func hostReturn(tag uint32, ptr unsafe.Pointer, length uint32)

//go:wasmimport heliosdb heliosdb_log
func hostLog(level uint32, ptr unsafe.Pointer, length uint32)

//go:wasmimport heliosdb heliosdb_begin_tx
func hostBeginTx() int32

//go:wasmimport heliosdb heliosdb_commit_tx
func hostCommitTx() int32

//go:wasmimport heliosdb heliosdb_rollback_tx
func hostRollbackTx() int32

//go:wasmimport heliosdb heliosdb_now
func hostNow() int64

//go:wasmimport heliosdb heliosdb_error
func hostError(code unsafe.Pointer, codeLen uint32, msg unsafe.Pointer, msgLen uint32)

//go:wasmimport heliosdb heliosdb_last_error
func hostLastError(out unsafe.Pointer) int32

//go:wasmimport heliosdb heliosdb_http_fetch
func hostHTTPFetch(req unsafe.Pointer, reqLen uint32, out unsafe.Pointer) int32

//go:wasmimport heliosdb heliosdb_digest
func hostDigest(alg unsafe.Pointer, algLen uint32, data unsafe.Pointer, dataLen uint32, out unsafe.Pointer) int32

//go:wasmimport heliosdb heliosdb_hmac
func hostHMAC(alg unsafe.Pointer, algLen uint32, key unsafe.Pointer, keyLen uint32, data unsafe.Pointer, dataLen uint32, out unsafe.Pointer) int32

// heliosdb_abi_version marks this module as a HeliosDB module.
//
//go:wasmexport heliosdb_abi_version
func abiVersion() int32 { return Version }

// heliosdb_alloc: the host asks for a buffer it then owns-and-hands-over.
//
//go:wasmexport heliosdb_alloc
func heliosdbAlloc(size, align uint32) uint32 { return uint32(alloc(size, align)) }

// heliosdb_free releases a buffer from heliosdb_alloc (the SDK calls it;
// the host never does).
//
//go:wasmexport heliosdb_free
func heliosdbFree(ptr, size, align uint32) { free(uintptr(ptr)) }

const inWasm = true
