package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadKeyFiles(t *testing.T) {
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	sigKey, sigPub := abs("../signature/testdata/ed25519.key"), abs("../signature/testdata/ecdsa.pub")
	encPub, encKey := abs("../layercrypt/testdata/ec.pub"), abs("../layercrypt/testdata/rsa.key")

	t.Run("good", func(t *testing.T) {
		p := writeProps(t, strings.Join([]string{
			KeySigningKey + "=" + sigKey, KeyVerifyKey + "=" + sigPub,
			KeyEncryptionKey + "=" + encPub, KeyDecryptionKey + "=" + encKey,
		}, "\n"))
		s, err := Load(LoadOptions{Path: p, Explicit: true, Args: []string{"app"}})
		if err != nil {
			t.Fatal(err)
		}
		if s.SigningKey != sigKey || s.VerifyKey != sigPub || s.EncryptionKey != encPub || s.DecryptionKey != encKey {
			t.Fatalf("settings %+v", s)
		}
	})

	for _, tc := range []struct{ name, line, want string }{
		{"relative", KeyVerifyKey + "=keys/pub.pem", `FILE:2: cr.checkpoint.verify-key: path "keys/pub.pem" must be absolute`},
		{"missing", KeySigningKey + "=/nonexistent/sign.key",
			"FILE:2: cr.checkpoint.signing-key: load signing key /nonexistent/sign.key: open /nonexistent/sign.key: no such file or directory"},
		{"public key to sign", KeySigningKey + "=" + sigPub,
			"FILE:2: cr.checkpoint.signing-key: load signing key " + sigPub + ": this is a public key; signing needs the private key"},
		{"rsa verify key", KeyVerifyKey + "=" + abs("../signature/testdata/rsa.pub"),
			"FILE:2: cr.checkpoint.verify-key: load verify key " + abs("../signature/testdata/rsa.pub") + ": RSA keys are not supported; use ECDSA P-256 or Ed25519"},
		{"ed25519 encryption key", KeyEncryptionKey + "=" + abs("../layercrypt/testdata/ed25519.pub"),
			"FILE:2: cr.checkpoint.encryption-key: load encryption key " + abs("../layercrypt/testdata/ed25519.pub") + ": Ed25519 keys cannot encrypt layers (JWE recipients are ECDSA or RSA keys)"},
		{"encrypted decryption key", KeyDecryptionKey + "=" + abs("../layercrypt/testdata/encrypted.key"),
			"FILE:2: cr.checkpoint.decryption-key: load decryption key " + abs("../layercrypt/testdata/encrypted.key") +
				": the key is encrypted; store it unencrypted (openssl pkey -in KEY -out PLAIN) in a Secret instead"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeProps(t, "cr.mode=run\n"+tc.line+"\n")
			_, err := Load(LoadOptions{Path: p, Explicit: true, Args: []string{"app"}})
			if err == nil || !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want a config error", err)
			}
			if want := strings.ReplaceAll(tc.want, "FILE", p); err.Error() != want {
				t.Fatalf("got  %s\nwant %s", err, want)
			}
		})
	}
}
