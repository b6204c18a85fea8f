package heliosdb

import (
	"unicode/utf8"

	"github.com/heliosdb/heliosdb-wasm/sdks/go/internal/host"
)

// Digest returns the digest of data computed by the host with algorithm: a
// hashlib name with "-" for "_" ("sha256", "sha512", "sha3-256", "blake2b",
// "md5", ...). Needs the crypto capability (access-denied without it); an
// unknown algorithm is an invalid-argument *Error.
func Digest(algorithm string, data []byte) ([]byte, error) {
	if !utf8.ValidString(algorithm) {
		return nil, badAlgorithm()
	}
	sum, status := host.Digest(algorithm, data)
	if status != host.StatusOK {
		return nil, hostError(status)
	}
	return sum, nil
}

// HMAC returns the HMAC of data under key computed by the host with
// algorithm (names as for Digest). Needs the crypto capability.
func HMAC(algorithm string, key, data []byte) ([]byte, error) {
	if !utf8.ValidString(algorithm) {
		return nil, badAlgorithm()
	}
	mac, status := host.HMAC(algorithm, key, data)
	if status != host.StatusOK {
		return nil, hostError(status)
	}
	return mac, nil
}

func badAlgorithm() error {
	return &Error{Code: CodeInvalidArgument, Message: "the algorithm name is not valid UTF-8"}
}
