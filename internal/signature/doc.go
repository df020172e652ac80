// Package signature signs and verifies checkpoint image manifests in a registry the way cosign
// stores signatures made with a key, so that `cosign verify --key` accepts what crwrap signs and
// crwrap accepts what cosign signs with an ECDSA P-256 key.
//
// A signature of the manifest REPO@sha256:HEX is the image REPO:sha256-HEX.sig: an OCI
// manifest whose layers are each a simple-signing payload (media type
// application/vnd.dev.cosign.simplesigning.v1+json) naming REPO and the manifest digest, with
// the base64 signature of that payload in the layer annotation
// dev.cosignproject.cosign/signature. Signing again with another key appends a layer.
//
// Keys are PEM files as openssl writes them: a PKCS#8 "PRIVATE KEY" (or SEC 1 "EC PRIVATE KEY")
// signs, a PKIX "PUBLIC KEY" verifies. ECDSA P-256 signs the SHA-256 digest of the payload
// (ASN.1 signature); Ed25519 signs the payload itself (pure Ed25519), which is what cosign's
// key-based verification checks for an Ed25519 public key.
//
// The registry protocol is go-containerregistry's; the crypto is Go's. No transparency log
// and no certificates are involved: trust is the verify key alone.
package signature
