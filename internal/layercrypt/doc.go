// Package layercrypt encrypts checkpoint layers before they are pushed, so a registry holds
// only ciphertext of the app's memory, in the OCI image encryption format of ocicrypt (as
// containerd's imgcrypt, skopeo, podman and buildah read it).
//
// An encrypted layer's media type is the original's with "+encrypted"; its blob is the
// original blob in AES-256-CTR with an HMAC-SHA256 over the ciphertext; the layer key, the
// nonce and the original blob's digest are wrapped in a JWE for each recipient public key
// (annotation org.opencontainers.image.enc.keys.jwe); the cipher name and HMAC are in
// org.opencontainers.image.enc.pubopts. crwrap adds the original blob's digest in the clear
// as PlaintextDigestAnnotation, so a signed manifest names the plaintext too, and Decrypt
// checks the decrypted stream against it.
//
// Keys are PEM files: a PKIX "PUBLIC KEY" encrypts (checkpoint side), its private key
// (PKCS#8 "PRIVATE KEY", SEC 1 "EC PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY") decrypts (restore
// side). JWE recipients are ECDSA (P-256, P-384, P-521: ECDH-ES+A256KW) or RSA of at least
// 2048 bits (RSA-OAEP), ocicrypt's choices; Ed25519 keys are signing keys only.
//
// The package uses ocicrypt's block cipher and JWE key wrapper directly, not its top-level
// package: that one registers key providers from OCICRYPT_KEYPROVIDER_CONFIG at init, which
// would let the environment make crwrap run other programs.
package layercrypt
