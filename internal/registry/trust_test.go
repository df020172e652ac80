package registry

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/crwrap/crwrap/internal/checkpoint"
	"github.com/crwrap/crwrap/internal/layercrypt"
	"github.com/crwrap/crwrap/internal/signature"
)

// keyPair writes a new ECDSA P-256 key pair as PEM files (PKCS#8 and PKIX, as openssl writes).
func keyPair(t *testing.T) (priv, pub string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p8, _ := x509.MarshalPKCS8PrivateKey(k)
	pk, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	dir := t.TempDir()
	priv, pub = filepath.Join(dir, "key.pem"), filepath.Join(dir, "pub.pem")
	_ = os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600)
	_ = os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pk}), 0o600)
	return priv, pub
}

func TestSignedAndEncryptedRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir, _ := fakeCheckpoint(t)
	repo := testRepo(t)
	signPriv, signPub := keyPair(t)
	_, otherPub := keyPair(t)
	encPriv, encPub := keyPair(t)
	signer, err := signature.LoadSigner(signPriv)
	if err != nil {
		t.Fatal(err)
	}
	verifier, _ := signature.LoadVerifier(signPub)
	other, _ := signature.LoadVerifier(otherPub)
	recipient, err := layercrypt.LoadPublicKey(encPub)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := layercrypt.LoadPrivateKey(encPriv)
	if err != nil {
		t.Fatal(err)
	}
	r, err := checkpoint.Open(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p, err := PushTo(ctx, r, repo, SignWith(signer), EncryptFor(recipient))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := push(t, dir, repo.Registry.Repo("team/plain"))
	if err != nil {
		t.Fatal(err)
	}

	if _, err := Resolve(ctx, p.Ref, Want{}, VerifyWith(other)); !errors.Is(err, ErrUntrusted) {
		t.Errorf("verify with another key: %v, want ErrUntrusted", err)
	}
	if _, err := Resolve(ctx, plain.Ref, Want{}, VerifyWith(verifier)); !errors.Is(err, ErrUntrusted) {
		t.Errorf("verify an unsigned image: %v, want ErrUntrusted", err)
	}
	res, err := Resolve(ctx, p.Ref, Want{}, VerifyWith(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Pull(ctx, res, t.TempDir()); !errors.Is(err, ErrUntrusted) {
		t.Errorf("pull of encrypted layers without a key: %v, want ErrUntrusted", err)
	}
	out := t.TempDir()
	if _, err := Pull(ctx, res, out, DecryptWith(dec)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(out, "checkpoint/pages-1.img"))
	if !bytes.Equal(b, bytes.Repeat([]byte("page"), 1<<19)) {
		t.Error("pages-1.img differs after an encrypted round trip")
	}
}
