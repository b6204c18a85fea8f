module example.com/heliosdb/plugins/pii_masking

go 1.24

require github.com/heliosdb/heliosdb-wasm/sdks/go v0.0.0

replace github.com/heliosdb/heliosdb-wasm/sdks/go => ../../../../sdks/go
