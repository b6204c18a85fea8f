package heliosdb

import (
	"strings"
	"unicode/utf8"

	"github.com/heliosdb/heliosdb-wasm/sdks/go/internal/host"
	"github.com/heliosdb/heliosdb-wasm/sdks/go/internal/wire"
)

// Request is an HTTP request for Fetch. Headers are (name, value) pairs, in
// order; an empty Method is GET.
type Request struct {
	Method  string
	URL     string
	Headers [][2]string
	Body    []byte
}

// Response is the host's answer to a Fetch: every status, 4xx and 5xx
// included, is a Response rather than an error.
type Response struct {
	Status  int
	Headers [][2]string
	Body    []byte
}

// Header returns the value of the first header named name (compared
// case-insensitively), or "".
func (r *Response) Header(name string) string {
	for _, h := range r.Headers {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}

// Fetch sends req through the host (http-fetch), which needs the
// capability network:<host> for the URL's host; redirects are followed
// only to granted hosts. A host without the grant is an access-denied
// *Error, a malformed URL or a refused connection invalid-argument; an
// oversized body or the call's deadline end the whole call (limit-exceeded).
func Fetch(req Request) (*Response, error) {
	encoded, err := encodeRequest(req)
	if err != nil {
		return nil, err
	}
	buf, status := host.HTTPFetch(encoded)
	if status != host.StatusOK {
		return nil, hostError(status)
	}
	return decodeResponse(buf)
}

// Get fetches url with a GET request and no headers.
func Get(url string) (*Response, error) {
	return Fetch(Request{Method: "GET", URL: url})
}

// encodeRequest encodes req as docs/abi.md section 4 specifies:
// method: str, url: str, u32 nheaders, nheaders × (name: str, value: str), body: bytes.
func encodeRequest(req Request) ([]byte, error) {
	method := req.Method
	if method == "" {
		method = "GET"
	}
	if !utf8.ValidString(method) {
		return nil, badRequest("the method is not valid UTF-8")
	}
	if !utf8.ValidString(req.URL) {
		return nil, badRequest("the URL is not valid UTF-8")
	}
	n := 16 + len(method) + len(req.URL) + len(req.Body)
	for i, h := range req.Headers {
		if !utf8.ValidString(h[0]) || !utf8.ValidString(h[1]) {
			return nil, badRequest("header " + itoa(i+1) + " is not valid UTF-8")
		}
		n += 8 + len(h[0]) + len(h[1])
	}
	b := make([]byte, 0, n)
	b = appendStr(b, method)
	b = appendStr(b, req.URL)
	b = wire.AppendU32(b, uint32(len(req.Headers)))
	for _, h := range req.Headers {
		b = appendStr(b, h[0])
		b = appendStr(b, h[1])
	}
	b = wire.AppendU32(b, uint32(len(req.Body)))
	return append(b, req.Body...), nil
}

func appendStr(b []byte, s string) []byte {
	return append(wire.AppendU32(b, uint32(len(s))), s...)
}

// decodeResponse checks and decodes a response buffer:
// u32 status, u32 nheaders, nheaders × (name: str, value: str), body: bytes.
func decodeResponse(buf []byte) (*Response, error) {
	rd := wire.NewReader(buf)
	resp := &Response{Status: int(rd.U32())}
	nheaders := int(rd.U32())
	if rd.Bad || nheaders > rd.Remaining()/8 {
		return nil, malformedResponse()
	}
	if nheaders > 0 {
		resp.Headers = make([][2]string, nheaders)
		for i := range resp.Headers {
			resp.Headers[i] = [2]string{rd.String(), rd.String()}
		}
	}
	resp.Body = rd.Bytes()
	if rd.Bad || rd.Remaining() != 0 {
		return nil, malformedResponse()
	}
	if resp.Body == nil {
		resp.Body = []byte{}
	}
	return resp, nil
}

func badRequest(what string) error {
	return &Error{Code: CodeInvalidArgument, Message: "Fetch: " + what}
}

func malformedResponse() error {
	return &Error{Code: CodeInvalidArgument, Message: "malformed HTTP response buffer from the host"}
}
