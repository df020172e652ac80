package config

import (
	"github.com/crwrap/crwrap/internal/layercrypt"
	"github.com/crwrap/crwrap/internal/signature"
)

// The key files are read and parsed when the settings are loaded, so that a missing,
// unreadable or wrong key is a configuration error at start (exit 2, with file:line), not a
// failed push or an untrusted pull minutes later. The loaders' errors name the file.

func setSigningKey(s *Settings, v string) error {
	return keyFile(&s.SigningKey, v, func(p string) error { _, err := signature.LoadSigner(p); return err })
}

func setVerifyKey(s *Settings, v string) error {
	return keyFile(&s.VerifyKey, v, func(p string) error { _, err := signature.LoadVerifier(p); return err })
}

func setEncryptionKey(s *Settings, v string) error {
	return keyFile(&s.EncryptionKey, v, func(p string) error { _, err := layercrypt.LoadPublicKey(p); return err })
}

func setDecryptionKey(s *Settings, v string) error {
	return keyFile(&s.DecryptionKey, v, func(p string) error { _, err := layercrypt.LoadPrivateKey(p); return err })
}

func keyFile(field *string, v string, load func(string) error) error {
	*field = ""
	if v == "" {
		return nil
	}
	p, err := absPath(v)
	if err != nil {
		return err
	}
	*field = p
	return load(p)
}
