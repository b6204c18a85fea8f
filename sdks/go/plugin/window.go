package plugin

import (
	"unicode/utf8"
	"unsafe"

	heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"
)

// CountInWindow adds one to the counter key (private to the plugin) in the
// current fixed window of windowMs milliseconds and returns its new value:
// the building block of rate limits (WIT plugin-host.count-in-window).
//
// Only a module that calls it imports heliosdb.count_in_window (Go's
// linker drops unreferenced wasm imports), so plugins and procedures that
// do not call it still load on engines without plugin support.
func CountInWindow(key string, windowMs int64) (int64, error) {
	if windowMs <= 0 {
		return 0, &heliosdb.Error{Code: heliosdb.CodeInvalidArgument,
			Message: "count_in_window: the window must be at least 1 ms"}
	}
	if !utf8.ValidString(key) {
		// The host traps on invalid UTF-8; an error is kinder.
		return 0, &heliosdb.Error{Code: heliosdb.CodeInvalidArgument,
			Message: "count_in_window: the key is not valid UTF-8"}
	}
	return hostCountInWindow(unsafe.Pointer(unsafe.StringData(key)), uint32(len(key)), windowMs), nil
}
