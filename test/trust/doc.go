// Package trust tests crwrap's checkpoint signatures and layer encryption against the
// ecosystem's own tools, on a real registry (test/registryd) with keys made by openssl:
//
//   - skopeo (Debian) decrypts layers internal/layercrypt encrypted (`skopeo copy
//     --decryption-key`), and layercrypt decrypts layers skopeo encrypted (`--encryption-key
//     jwe:`): the format is ocicrypt's, as containers/image and imgcrypt read it.
//   - cosign v2, built from the Go module proxy, verifies signatures internal/signature pushed
//     (`cosign verify --key` without a transparency log), and internal/signature verifies
//     signatures `cosign sign --key` pushed.
//
// The tests need no root. They fail in CI ($CI set) when a prerequisite (docker-registry,
// skopeo, openssl, the Go toolchain and module proxy for cosign) is missing, and skip
// elsewhere. $COSIGN names a cosign binary to use instead of building one.
package trust
