package signature

import (
	"path/filepath"
	"strings"
	"testing"
)

// testdata keys were written by OpenSSL 3.0: `openssl genpkey` (PKCS#8), `openssl ecparam
// -genkey` (SEC 1 after EC PARAMETERS), `openssl pkey -pubout` (PKIX); encrypted.key with
// -aes-256-cbc. They are test keys and sign nothing else.

func TestLoadSigner(t *testing.T) {
	for _, tc := range []struct {
		file, wantErr, alg string
	}{
		{file: "ecdsa.key", alg: "ecdsa-p256"},
		{file: "ecdsa-sec1.key", alg: "ecdsa-p256"},
		{file: "ed25519.key", alg: "ed25519"},
		{file: "p384.key", wantErr: "ECDSA curve P-384 is not supported"},
		{file: "rsa.key", wantErr: "RSA keys are not supported"},
		{file: "encrypted.key", wantErr: "the key is encrypted"},
		{file: "ecdsa.pub", wantErr: "this is a public key"},
		{file: "garbage.key", wantErr: "no PEM block"},
		{file: "truncated.key", wantErr: "parse PRIVATE KEY"},
		{file: "missing.key", wantErr: "no such file"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			s, err := LoadSigner(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("LoadSigner: got %v, want error containing %q", err, tc.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "load signing key "+path+": ") || strings.Contains(err.Error(), "\n") {
					t.Fatalf("error is not one line naming the file: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Verifier().Algorithm(); got != tc.alg {
				t.Fatalf("algorithm %s, want %s", got, tc.alg)
			}
		})
	}
}

func TestLoadVerifier(t *testing.T) {
	for _, tc := range []struct {
		file, wantErr string
	}{
		{file: "ecdsa.pub"},
		{file: "ed25519.pub"},
		{file: "p384.pub", wantErr: "ECDSA curve P-384 is not supported"},
		{file: "rsa.pub", wantErr: "RSA keys are not supported"},
		{file: "ecdsa.key", wantErr: "this is a private key"},
		{file: "garbage.key", wantErr: "no PEM block"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			_, err := LoadVerifier(path)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "load verify key "+path+": ") {
				t.Fatalf("LoadVerifier: got %v, want error naming %s containing %q", err, path, tc.wantErr)
			}
		})
	}
}

func TestSignVerifyPayload(t *testing.T) {
	payload := []byte(`{"critical":{}}`)
	for _, tc := range []struct {
		key, pub string
		ok       bool
	}{
		{"ecdsa.key", "ecdsa.pub", true},
		{"ed25519.key", "ed25519.pub", true},
		{"ecdsa-sec1.key", "ecdsa.pub", false},
		{"ed25519.key", "other-ed25519.pub", false},
		{"ecdsa.key", "ed25519.pub", false},
	} {
		t.Run(tc.key+"/"+tc.pub, func(t *testing.T) {
			s, err := LoadSigner(filepath.Join("testdata", tc.key))
			if err != nil {
				t.Fatal(err)
			}
			v, err := LoadVerifier(filepath.Join("testdata", tc.pub))
			if err != nil {
				t.Fatal(err)
			}
			sig, err := s.Sign(payload)
			if err != nil {
				t.Fatal(err)
			}
			if got := v.Verify(payload, sig); got != tc.ok {
				t.Fatalf("Verify = %v, want %v", got, tc.ok)
			}
			if !s.Verifier().Verify(payload, sig) {
				t.Fatal("signer's own public key rejects its signature")
			}
			if s.Verifier().Verify(append(payload, ' '), sig) {
				t.Fatal("signature verifies over another payload")
			}
		})
	}
}
