//go:build !wasm

package plugin

import "unsafe"

// Outside wasm there is no host; this lets plugin packages compile and
// test their pure logic on a workstation.
func hostCountInWindow(unsafe.Pointer, uint32, int64) int64 {
	panic("heliosdb: the host API is only available inside a wasm module")
}
