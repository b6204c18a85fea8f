//go:build !wasm

package host

import "unsafe"

// Outside wasm there is no host: every call panics. This file only lets
// procedure packages compile (go vet, go test of pure logic) on a workstation.

func noHost() { panic("heliosdb: the host API is only available inside a wasm procedure") }

func hostQuery(unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 {
	noHost()
	return 0
}

func hostExecute(unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 {
	noHost()
	return 0
}

func hostGetParam(uint32, unsafe.Pointer) int32 { noHost(); return 0 }

func hostReturn(uint32, unsafe.Pointer, uint32) { noHost() }

func hostLog(uint32, unsafe.Pointer, uint32) { noHost() }

func hostBeginTx() int32 { noHost(); return 0 }

func hostCommitTx() int32 { noHost(); return 0 }

func hostRollbackTx() int32 { noHost(); return 0 }

func hostNow() int64 { noHost(); return 0 }

func hostError(unsafe.Pointer, uint32, unsafe.Pointer, uint32) { noHost() }

func hostLastError(unsafe.Pointer) int32 { noHost(); return 0 }

func hostHTTPFetch(unsafe.Pointer, uint32, unsafe.Pointer) int32 { noHost(); return 0 }

func hostDigest(unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 {
	noHost()
	return 0
}

func hostHMAC(unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 {
	noHost()
	return 0
}

const inWasm = false
