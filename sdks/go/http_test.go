package heliosdb

import (
	"bytes"
	"errors"
	"testing"

	"github.com/heliosdb/heliosdb-wasm/sdks/go/internal/wire"
)

func TestEncodeRequest(t *testing.T) {
	got, err := encodeRequest(Request{
		Method:  "POST",
		URL:     "http://127.0.0.1/x",
		Headers: [][2]string{{"Content-Type", "text/plain"}, {"X-A", ""}},
		Body:    []byte("hi"),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("\x04\x00\x00\x00POST" + "\x12\x00\x00\x00http://127.0.0.1/x" + "\x02\x00\x00\x00" +
		"\x0c\x00\x00\x00Content-Type" + "\x0a\x00\x00\x00text/plain" +
		"\x03\x00\x00\x00X-A" + "\x00\x00\x00\x00" + "\x02\x00\x00\x00hi")
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

func TestEncodeRequestDefaults(t *testing.T) {
	got, err := encodeRequest(Request{URL: "u"})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("\x03\x00\x00\x00GET" + "\x01\x00\x00\x00u" + "\x00\x00\x00\x00" + "\x00\x00\x00\x00")
	if !bytes.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestEncodeRequestInvalidUTF8(t *testing.T) {
	for _, req := range []Request{
		{Method: "G\xffT", URL: "u"},
		{URL: "u\xff"},
		{URL: "u", Headers: [][2]string{{"ok", "ok"}, {"X", "\xfe"}}},
	} {
		if _, err := encodeRequest(req); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%q: got %v, want invalid-argument", req.URL, err)
		}
	}
}

// responseBuffer encodes a response as the host does (docs/abi.md section 4).
func responseBuffer(status uint32, headers [][2]string, body []byte) []byte {
	b := wire.AppendU32(nil, status)
	b = wire.AppendU32(b, uint32(len(headers)))
	for _, h := range headers {
		b = appendStr(appendStr(b, h[0]), h[1])
	}
	b = wire.AppendU32(b, uint32(len(body)))
	return append(b, body...)
}

func TestDecodeResponse(t *testing.T) {
	headers := [][2]string{{"Content-Length", "16"}, {"Server", "test"}}
	resp, err := decodeResponse(responseBuffer(200, headers, []byte("hello, procedure")))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || string(resp.Body) != "hello, procedure" || len(resp.Headers) != 2 ||
		resp.Headers[1] != headers[1] {
		t.Fatalf("got %+v", resp)
	}
	if resp.Header("content-length") != "16" || resp.Header("X-Missing") != "" {
		t.Errorf("Header lookup")
	}

	resp, err = decodeResponse(responseBuffer(404, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 404 || resp.Headers != nil || resp.Body == nil || len(resp.Body) != 0 {
		t.Fatalf("empty response: %+v", resp)
	}
}

func TestDecodeResponseMalformed(t *testing.T) {
	good := responseBuffer(200, [][2]string{{"a", "b"}}, []byte("body"))
	for n := 0; n < len(good); n++ {
		if _, err := decodeResponse(good[:n]); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("truncated to %d bytes: got %v", n, err)
		}
	}
	if _, err := decodeResponse(append(good, 0)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("trailing byte: got %v", err)
	}
	huge := wire.AppendU32(wire.AppendU32(nil, 200), 0xffffffff)
	if _, err := decodeResponse(huge); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("huge header count: got %v", err)
	}
}
