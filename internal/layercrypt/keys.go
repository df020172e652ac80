package layercrypt

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/crwrap/crwrap/internal/pemfile"
)

const (
	minRSABits = 2048
)

// PublicKey is a recipient a layer is encrypted for.
type PublicKey struct {
	pem []byte // one PUBLIC KEY block, as ocicrypt's JWE key wrapper parses it
}

// PrivateKey decrypts layers encrypted for its public key.
type PrivateKey struct {
	pem []byte // one private key block
	pub any
}

// LoadPublicKey reads the PEM public key (PKIX "PUBLIC KEY", ECDSA or RSA >= 2048 bits)
// layers are encrypted for, as `openssl pkey -pubout` writes it.
func LoadPublicKey(path string) (*PublicKey, error) {
	k, err := loadPublicKey(path)
	if err != nil {
		return nil, fmt.Errorf("load encryption key %s: %w", path, err)
	}
	return k, nil
}

// LoadPrivateKey reads the unencrypted PEM private key (PKCS#8, SEC 1 or PKCS#1; ECDSA or
// RSA >= 2048 bits) that decrypts layers, as `openssl genpkey` writes it.
func LoadPrivateKey(path string) (*PrivateKey, error) {
	k, err := loadPrivateKey(path)
	if err != nil {
		return nil, fmt.Errorf("load decryption key %s: %w", path, err)
	}
	return k, nil
}

// Public is the public half of k (for tests and for checking a key pair).
func (k *PrivateKey) Public() *PublicKey {
	der, err := x509.MarshalPKIXPublicKey(k.pub)
	if err != nil { // impossible: the key was parsed and checked by LoadPrivateKey
		panic(err)
	}
	return &PublicKey{pem: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}
}

func loadPublicKey(path string) (*PublicKey, error) {
	block, err := pemfile.ReadKey(path)
	if err != nil {
		return nil, err
	}
	switch block.Type {
	case "PUBLIC KEY":
	case "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("this is a private key; the checkpoint side needs only the public key (openssl pkey -in KEY -pubout)")
	default:
		return nil, fmt.Errorf("PEM block %q is not a public key", block.Type)
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse PUBLIC KEY: %w", err)
	}
	if err := checkKey(key); err != nil {
		return nil, err
	}
	return &PublicKey{pem: pem.EncodeToMemory(block)}, nil
}

func loadPrivateKey(path string) (*PrivateKey, error) {
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
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("the key is encrypted; store it unencrypted (openssl pkey -in KEY -out PLAIN) in a Secret instead")
	case "PUBLIC KEY":
		return nil, errors.New("this is a public key; decrypting needs the private key")
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", block.Type, err)
	}
	var pub any
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		pub = &k.PublicKey
	case *rsa.PrivateKey:
		pub = &k.PublicKey
	default:
		return nil, fmt.Errorf("%s keys cannot decrypt layers; use an ECDSA or RSA key", keyKind(key))
	}
	if err := checkKey(pub); err != nil {
		return nil, err
	}
	return &PrivateKey{pem: pem.EncodeToMemory(block), pub: pub}, nil
}

func checkKey(key any) error {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("ECDSA curve %s is not supported; use P-256, P-384 or P-521", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key of %d bits is too small; use at least %d", k.N.BitLen(), minRSABits)
		}
		return nil
	}
	return fmt.Errorf("%s keys cannot encrypt layers (JWE recipients are ECDSA or RSA keys)", keyKind(key))
}

func keyKind(key any) string {
	switch key.(type) {
	case ed25519.PublicKey, ed25519.PrivateKey:
		return "Ed25519"
	case *ecdh.PublicKey, *ecdh.PrivateKey:
		return "X25519"
	}
	return fmt.Sprintf("%T", key)
}
