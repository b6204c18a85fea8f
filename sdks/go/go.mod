module github.com/heliosdb/heliosdb-wasm/sdks/go

go 1.24
