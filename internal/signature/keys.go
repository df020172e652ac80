package signature

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/crwrap/crwrap/internal/pemfile"
)

// Signer signs payloads with a private key loaded by LoadSigner.
type Signer struct {
	key      crypto.Signer
	verifier *Verifier
}

// Verifier checks signatures with a public key loaded by LoadVerifier.
type Verifier struct {
	key crypto.PublicKey
}

// LoadSigner reads a PEM private key (PKCS#8 "PRIVATE KEY" or SEC 1 "EC PRIVATE KEY"),
// ECDSA P-256 or Ed25519, as `openssl genpkey` writes it.
func LoadSigner(path string) (*Signer, error) {
	s, err := loadSigner(path)
	if err != nil {
		return nil, fmt.Errorf("load signing key %s: %w", path, err)
	}
	return s, nil
}

// LoadVerifier reads a PEM public key (PKIX "PUBLIC KEY"), ECDSA P-256 or Ed25519, as
// `openssl pkey -pubout` writes it.
func LoadVerifier(path string) (*Verifier, error) {
	v, err := loadVerifier(path)
	if err != nil {
		return nil, fmt.Errorf("load verify key %s: %w", path, err)
	}
	return v, nil
}

// NewSigner wraps an ECDSA P-256 or Ed25519 private key.
func NewSigner(key crypto.Signer) (*Signer, error) {
	v, err := NewVerifier(key.Public())
	if err != nil {
		return nil, err
	}
	return &Signer{key: key, verifier: v}, nil
}

// NewVerifier wraps an ECDSA P-256 or Ed25519 public key.
func NewVerifier(key crypto.PublicKey) (*Verifier, error) {
	if err := checkKeyType(key); err != nil {
		return nil, err
	}
	return &Verifier{key: key}, nil
}

// Verifier is the public half of the signer's key.
func (s *Signer) Verifier() *Verifier { return s.verifier }

// Sign signs payload: ECDSA over its SHA-256 digest (ASN.1), Ed25519 over the payload itself.
func (s *Signer) Sign(payload []byte) ([]byte, error) {
	switch s.key.(type) {
	case ed25519.PrivateKey, *ed25519.PrivateKey:
		return s.key.Sign(rand.Reader, payload, crypto.Hash(0))
	default:
		sum := sha256.Sum256(payload)
		return s.key.Sign(rand.Reader, sum[:], crypto.SHA256)
	}
}

// Verify reports whether sig is a signature of payload by this key.
func (v *Verifier) Verify(payload, sig []byte) bool {
	switch k := v.key.(type) {
	case *ecdsa.PublicKey:
		sum := sha256.Sum256(payload)
		return ecdsa.VerifyASN1(k, sum[:], sig)
	case ed25519.PublicKey:
		return ed25519.Verify(k, payload, sig)
	}
	return false
}

// Algorithm names the key type ("ecdsa-p256" or "ed25519").
func (v *Verifier) Algorithm() string {
	if _, ok := v.key.(ed25519.PublicKey); ok {
		return "ed25519"
	}
	return "ecdsa-p256"
}

func loadSigner(path string) (*Signer, error) {
	block, err := pemfile.ReadKey(path)
	if err != nil {
		return nil, err
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("the key is encrypted; store it unencrypted (openssl pkey -in KEY -out PLAIN) and protect the file instead")
	case "RSA PRIVATE KEY":
		return nil, errors.New("RSA keys are not supported; use ECDSA P-256 or Ed25519")
	case "PUBLIC KEY":
		return nil, errors.New("this is a public key; signing needs the private key")
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", block.Type, err)
	}
	if k, ok := key.(ed25519.PrivateKey); ok {
		key = k // value form, as crypto/x509 returns it
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%T keys are not supported; use ECDSA P-256 or Ed25519", key)
	}
	return NewSigner(signer)
}

func loadVerifier(path string) (*Verifier, error) {
	block, err := pemfile.ReadKey(path)
	if err != nil {
		return nil, err
	}
	switch block.Type {
	case "PUBLIC KEY":
	case "PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "RSA PRIVATE KEY":
		return nil, errors.New("this is a private key; verifying needs only the public key (openssl pkey -in KEY -pubout)")
	case "RSA PUBLIC KEY":
		return nil, errors.New("RSA keys are not supported; use ECDSA P-256 or Ed25519")
	default:
		return nil, fmt.Errorf("PEM block %q is not a public key", block.Type)
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse PUBLIC KEY: %w", err)
	}
	return NewVerifier(key)
}

func checkKeyType(key crypto.PublicKey) error {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("ECDSA curve %s is not supported; use P-256", k.Curve.Params().Name)
		}
		return nil
	case ed25519.PublicKey:
		return nil
	case *rsa.PublicKey:
		return errors.New("RSA keys are not supported; use ECDSA P-256 or Ed25519")
	}
	return fmt.Errorf("%T keys are not supported; use ECDSA P-256 or Ed25519", key)
}
