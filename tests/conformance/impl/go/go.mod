module example.com/heliosdb/conformance

go 1.24

require github.com/heliosdb/heliosdb-wasm/sdks/go v0.0.0

replace github.com/heliosdb/heliosdb-wasm/sdks/go => ../../../../sdks/go
