"""One module per guest language: how a procedure project becomes wasm."""
