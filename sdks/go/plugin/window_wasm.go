//go:build wasm

package plugin

import "unsafe"

// The key is passed as unsafe.Pointer: arguments of bodyless functions
// escape, so the string cannot move while the host reads it.
//
//go:wasmimport heliosdb count_in_window
func hostCountInWindow(key unsafe.Pointer, keyLen uint32, windowMs int64) int64
