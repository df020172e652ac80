package trust

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/crwrap/crwrap/internal/layercrypt"
	"github.com/crwrap/crwrap/test/registryd"
)

const marker = "crwrap-interop-marker-41d2"

// skopeo is the skopeo command line with the global and source/destination flags that reach r with its
// policy of the test's own (accept anything); callers add r's certificate and credentials.
func skopeo(t *testing.T, r *registryd.Registry) []string {
	t.Helper()
	bin := need(t, "skopeo", "skopeo")
	policy := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{bin, "--policy", policy}
}

// TestSkopeoDecryptsCrwrapLayers: a layer encrypted by layercrypt and pushed to a TLS,
// password-protected registry is decrypted by `skopeo copy --decryption-key`.
func TestSkopeoDecryptsCrwrapLayers(t *testing.T) {
	r := registryd.Start(t, registryd.Options{TLS: true, Auth: true})
	sk := skopeo(t, r)
	dir := t.TempDir()
	key, pub := opensslKeys(t, dir, "enc", "ec")
	t.Setenv("DOCKER_CONFIG", r.DockerConfig)
	opts := []remote.Option{remote.WithTransport(r.Transport()), remote.WithAuthFromKeychain(authn.DefaultKeychain)}

	plain := bytes.Repeat([]byte("page "+marker+" "), 4096)
	pk, err := layercrypt.LoadPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := layercrypt.Encrypt(static.NewLayer(plain, types.OCILayer), pk)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.Append(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON),
		mutate.Addendum{Layer: enc, Annotations: enc.Annotations()})
	if err != nil {
		t.Fatal(err)
	}
	ref := r.Ref("interop/enc:v1")
	tag, _ := name.NewTag(ref)
	if err := remote.Write(tag, img, opts...); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(dir, "out")
	args := append(sk, "copy", "--src-cert-dir", r.CertDir, "--src-authfile", filepath.Join(r.DockerConfig, "config.json"),
		"--decryption-key", key, "docker://"+ref, "dir:"+out)
	if _, err := run(t, nil, args...); err != nil {
		t.Fatalf("skopeo copy --decryption-key: %v", err)
	}
	pd, err := layercrypt.Plaintext(descriptorOf(t, enc))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(out, pd.Digest.Hex))
	if err != nil {
		t.Fatalf("skopeo wrote no plaintext blob %s: %v", pd.Digest, err)
	}
	if !bytes.Equal(got, plain) {
		t.Fatalf("skopeo decrypted %d bytes, not the %d plaintext bytes", len(got), len(plain))
	}

	// Without the key skopeo cannot make the plaintext either.
	args = append(sk, "copy", "--src-cert-dir", r.CertDir, "--src-authfile", filepath.Join(r.DockerConfig, "config.json"),
		"--decryption-key", filepath.Join("..", "..", "internal", "layercrypt", "testdata", "other-ec.key"), "docker://"+ref, "dir:"+filepath.Join(dir, "out2"))
	if _, err := run(t, nil, args...); err == nil {
		if b, err := os.ReadFile(filepath.Join(dir, "out2", pd.Digest.Hex)); err == nil && bytes.Equal(b, plain) {
			t.Fatal("skopeo decrypted the layer with another key")
		}
	}
}

// TestCrwrapDecryptsSkopeoLayers: a layer skopeo encrypted (`--encryption-key jwe:PUB`) is
// decrypted by layercrypt with the private key.
func TestCrwrapDecryptsSkopeoLayers(t *testing.T) {
	r := registryd.Start(t, registryd.Options{TLS: true, Auth: true})
	sk := skopeo(t, r)
	dir := t.TempDir()
	key, pub := opensslKeys(t, dir, "enc", "rsa")
	t.Setenv("DOCKER_CONFIG", r.DockerConfig)
	opts := []remote.Option{remote.WithTransport(r.Transport()), remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithContext(context.Background())}

	plain := bytes.Repeat([]byte("page "+marker+" "), 4096)
	img, err := mutate.Append(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON),
		mutate.Addendum{Layer: static.NewLayer(plain, types.OCILayer)})
	if err != nil {
		t.Fatal(err)
	}
	lp, err := layout.Write(filepath.Join(dir, "oci"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	ref := r.Ref("interop/skopeo-enc:v1")
	args := append(sk, "copy", "--dest-cert-dir", r.CertDir, "--dest-authfile", filepath.Join(r.DockerConfig, "config.json"),
		"--encryption-key", "jwe:"+pub, "oci:"+filepath.Join(dir, "oci"), "docker://"+ref)
	if _, err := run(t, nil, args...); err != nil {
		t.Fatalf("skopeo copy --encryption-key: %v", err)
	}

	blobs, err := r.Blobs()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		if data, _ := os.ReadFile(b); bytes.Contains(data, []byte(marker)) {
			t.Fatalf("skopeo left plaintext in the registry: %s", b)
		}
	}

	tag, _ := name.NewTag(ref)
	pulled, err := remote.Image(tag, opts...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := pulled.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	desc := m.Layers[0]
	l, err := pulled.LayerByDigest(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := layercrypt.LoadPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := layercrypt.Decrypt(bytes.NewReader(nil), desc, priv); err == nil {
		t.Fatal("Decrypt accepted a layer that records no plaintext digest")
	}
	if _, err := layercrypt.DecryptForeign(bytes.NewReader(nil), desc, otherKey(t)); !errors.Is(err, layercrypt.ErrWrongKey) {
		t.Fatalf("decrypt with another key: %v, want ErrWrongKey", err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	pr, err := layercrypt.DecryptForeign(rc, desc, priv)
	if err != nil {
		t.Fatalf("decrypt skopeo's layer (%s): %v", desc.MediaType, err)
	}
	got, err := io.ReadAll(pr)
	if err != nil {
		t.Fatalf("decrypt skopeo's layer: %v", err)
	}
	// containers/image gzips an uncompressed layer before encrypting it.
	if strings.Contains(string(desc.MediaType), "gzip") {
		zr, err := gzip.NewReader(bytes.NewReader(got))
		if err != nil {
			t.Fatal(err)
		}
		if got, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, plain) {
		t.Fatalf("decrypted %d bytes (%s), not the plaintext", len(got), desc.MediaType)
	}
}

func otherKey(t *testing.T) *layercrypt.PrivateKey {
	k, err := layercrypt.LoadPrivateKey(filepath.Join("..", "..", "internal", "layercrypt", "testdata", "other-ec.key"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}
