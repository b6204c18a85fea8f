package host

import "unsafe"

// maxAlloc bounds one heliosdb_alloc request; larger ones return 0, which the
// host reports as limit-exceeded instead of the Go runtime aborting.
const maxAlloc = 1 << 30

// live keeps every buffer allocated for the host reachable (Go's and TinyGo's
// collectors never move objects, so the address stays valid) until the SDK
// takes it over with Take or the guest frees it with heliosdb_free.
var live = map[uintptr][]byte{}

func alloc(size, align uint32) uintptr {
	if size == 0 || size > maxAlloc {
		return 0
	}
	if align == 0 {
		align = 1
	}
	if align&(align-1) != 0 {
		return 0
	}
	buf := make([]byte, int(size)+int(align)-1)
	p := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	off := (uintptr(align) - p%uintptr(align)) % uintptr(align)
	live[p+off] = buf[off : off+uintptr(size)]
	return p + off
}

func free(ptr uintptr) { delete(live, ptr) }

// Take returns the guest-owned buffer (ptr, n) that the host filled, and
// stops tracking it: from here on the ordinary garbage collector owns it.
// (0, 0) is the empty buffer.
func Take(ptr, n uint32) []byte {
	if n == 0 {
		if ptr != 0 {
			free(uintptr(ptr))
		}
		return nil
	}
	b, ok := live[uintptr(ptr)]
	if !ok || uint32(len(b)) < n {
		panic("heliosdb: the host passed a buffer that heliosdb_alloc did not allocate")
	}
	free(uintptr(ptr))
	return b[:n]
}

// TakeString is Take as a string, without copying (the bytes are never
// written again).
func TakeString(ptr, n uint32) string {
	b := Take(ptr, n)
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// out is the 8-byte out area of the fallible calls: static data, so it never
// moves, and one is enough because host calls never nest.
var out [1]uint64

func outPtr() unsafe.Pointer { return unsafe.Pointer(&out[0]) }

func outBuffer() []byte { return Take(uint32(out[0]), uint32(out[0]>>32)) }

func strPtr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

func bytesPtr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

// Query runs heliosdb_query; on status 0 it returns the rows buffer.
func Query(sql string, params []byte) ([]byte, int32) {
	status := hostQuery(strPtr(sql), uint32(len(sql)), bytesPtr(params), uint32(len(params)), outPtr())
	if status != StatusOK {
		return nil, status
	}
	return outBuffer(), StatusOK
}

// Execute runs heliosdb_execute; on status 0 it returns the changed row count.
func Execute(sql string, params []byte) (int64, int32) {
	status := hostExecute(strPtr(sql), uint32(len(sql)), bytesPtr(params), uint32(len(params)), outPtr())
	if status != StatusOK {
		return 0, status
	}
	return int64(out[0]), StatusOK
}

// GetParam returns the tag of argument index and its payload: the 8 bytes
// of a number or boolean as bits, or the owned text/blob buffer.
func GetParam(index int) (tag int32, bits uint64, buf []byte) {
	tag = hostGetParam(uint32(index), outPtr())
	switch tag {
	case TagText, TagBlob:
		return tag, 0, outBuffer()
	case TagNull:
		return tag, 0, nil
	}
	return tag, out[0], nil
}

// Return sets the call's result (heliosdb_return).
func Return(tag int32, payload []byte) {
	hostReturn(uint32(tag), bytesPtr(payload), uint32(len(payload)))
}

// ReturnString is Return for text without copying.
func ReturnString(s string) { hostReturn(TagText, strPtr(s), uint32(len(s))) }

// Log appends a line to the procedure log (level 0 trace .. 4 error).
func Log(level int, msg string) { hostLog(uint32(level), strPtr(msg), uint32(len(msg))) }

func BeginTx() int32    { return hostBeginTx() }
func CommitTx() int32   { return hostCommitTx() }
func RollbackTx() int32 { return hostRollbackTx() }

// Now is the host's clock in microseconds since the Unix epoch.
func Now() int64 { return hostNow() }

// Error records a user error; the export must return right after.
func Error(code, msg string) {
	hostError(strPtr(code), uint32(len(code)), strPtr(msg), uint32(len(msg)))
}

// LastError returns the status and message of the last failed host call.
func LastError() (int32, string) {
	status := hostLastError(outPtr())
	if status == StatusOK {
		return StatusOK, ""
	}
	b := outBuffer()
	return status, string(b)
}

// HTTPFetch runs heliosdb_http_fetch with an encoded request; on status 0 it
// returns the response buffer.
func HTTPFetch(req []byte) ([]byte, int32) {
	status := hostHTTPFetch(bytesPtr(req), uint32(len(req)), outPtr())
	if status != StatusOK {
		return nil, status
	}
	return outBuffer(), StatusOK
}

// Digest runs heliosdb_digest; on status 0 it returns the digest.
func Digest(alg string, data []byte) ([]byte, int32) {
	status := hostDigest(strPtr(alg), uint32(len(alg)), bytesPtr(data), uint32(len(data)), outPtr())
	if status != StatusOK {
		return nil, status
	}
	return outBuffer(), StatusOK
}

// HMAC runs heliosdb_hmac; on status 0 it returns the MAC.
func HMAC(alg string, key, data []byte) ([]byte, int32) {
	status := hostHMAC(strPtr(alg), uint32(len(alg)), bytesPtr(key), uint32(len(key)),
		bytesPtr(data), uint32(len(data)), outPtr())
	if status != StatusOK {
		return nil, status
	}
	return outBuffer(), StatusOK
}

// InWasm reports whether this build runs inside the engine.
const InWasm = inWasm

// Buffer is a buffer the host allocated with heliosdb_alloc and still owns
// (a batch's columns, docs/abi.md section 9): the host frees it with
// heliosdb_free after the call, so it stays tracked. (0, 0) is empty.
func Buffer(ptr, n uint32) []byte {
	if n == 0 {
		return nil
	}
	b, ok := live[uintptr(ptr)]
	if !ok || uint32(len(b)) < n {
		panic("heliosdb: the host passed a batch buffer that heliosdb_alloc did not allocate")
	}
	return b[:n]
}
