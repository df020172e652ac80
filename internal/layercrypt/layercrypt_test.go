package layercrypt

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containers/ocicrypt"
	ocicfg "github.com/containers/ocicrypt/config"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/crwrap/crwrap/test/registryd"
)

// testdata keys were written by OpenSSL 3.0 (openssl genpkey, openssl genrsa -traditional,
// openssl pkey -pubout); encrypted.key with -aes-256-cbc. They are test keys only.

func TestLoadKeys(t *testing.T) {
	for _, tc := range []struct {
		file    string
		public  bool
		wantErr string
	}{
		{file: "ec.pub", public: true},
		{file: "other-ec.pub", public: true},
		{file: "rsa.pub", public: true},
		{file: "rsa1024.pub", public: true, wantErr: "RSA key of 1024 bits is too small"},
		{file: "ed25519.pub", public: true, wantErr: "Ed25519 keys cannot encrypt layers"},
		{file: "x25519.pub", public: true, wantErr: "X25519 keys cannot encrypt layers"},
		{file: "ec.key", public: true, wantErr: "this is a private key"},
		{file: "ec.key"},
		{file: "other-ec.key"},
		{file: "rsa.key"},
		{file: "rsa-pkcs1.key"},
		{file: "rsa1024.key", wantErr: "RSA key of 1024 bits is too small"},
		{file: "ed25519.key", wantErr: "Ed25519 keys cannot decrypt layers"},
		{file: "encrypted.key", wantErr: "the key is encrypted"},
		{file: "ec.pub", wantErr: "this is a public key"},
		{file: "missing.key", wantErr: "no such file"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			var err error
			prefix := "load decryption key " + path + ": "
			if tc.public {
				_, err = LoadPublicKey(path)
				prefix = "load encryption key " + path + ": "
			} else {
				_, err = LoadPrivateKey(path)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), prefix) {
				t.Fatalf("got %v, want an error starting %q containing %q", err, prefix, tc.wantErr)
			}
		})
	}
}

const marker = "crwrap-secret-marker-7f3a9c"

func plainLayer() v1.Layer {
	data := bytes.Repeat([]byte("heap page "+marker+" "), 5000)
	return static.NewLayer(data, types.OCILayer)
}

func pub(t *testing.T, f string) *PublicKey {
	t.Helper()
	k, err := LoadPublicKey(filepath.Join("testdata", f))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func priv(t *testing.T, f string) *PrivateKey {
	t.Helper()
	k, err := LoadPrivateKey(filepath.Join("testdata", f))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func readAll(t *testing.T, open func() (io.ReadCloser, error)) []byte {
	t.Helper()
	rc, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func descriptor(t *testing.T, l *Layer) v1.Descriptor {
	t.Helper()
	d, _ := l.Digest()
	s, _ := l.Size()
	mt, _ := l.MediaType()
	return v1.Descriptor{MediaType: mt, Size: s, Digest: d, Annotations: l.Annotations()}
}

func TestEncryptDecrypt(t *testing.T) {
	plain := plainLayer()
	want := readAll(t, plain.Compressed)
	wantDigest, _ := plain.Digest()
	for _, tc := range []struct{ pub, priv string }{{"ec.pub", "ec.key"}, {"rsa.pub", "rsa.key"}} {
		t.Run(tc.pub, func(t *testing.T) {
			enc, err := Encrypt(plain, pub(t, tc.pub))
			if err != nil {
				t.Fatal(err)
			}
			desc := descriptor(t, enc)
			if desc.MediaType != types.OCILayer+MediaTypeSuffix {
				t.Fatalf("media type %s", desc.MediaType)
			}
			for _, a := range []string{KeysAnnotation, PubOptsAnnotation} {
				if desc.Annotations[a] == "" {
					t.Fatalf("no %s annotation", a)
				}
			}
			if desc.Annotations[PlaintextDigestAnnotation] != wantDigest.String() {
				t.Fatalf("plaintext digest annotation %q, want %s", desc.Annotations[PlaintextDigestAnnotation], wantDigest)
			}
			c1 := readAll(t, enc.Compressed)
			c2 := readAll(t, enc.Compressed)
			if !bytes.Equal(c1, c2) || int64(len(c1)) != desc.Size {
				t.Fatal("the ciphertext is not the same on each read, or not of its size")
			}
			if h, _, _ := v1.SHA256(bytes.NewReader(c1)); h != desc.Digest {
				t.Fatalf("ciphertext digest %s, layer says %s", h, desc.Digest)
			}
			if bytes.Contains(c1, []byte(marker)) || bytes.Contains(c1, want[:64]) {
				t.Fatal("ciphertext contains plaintext")
			}
			pd, err := Plaintext(desc)
			if err != nil || pd.Digest != wantDigest || pd.MediaType != types.OCILayer || pd.Annotations != nil {
				t.Fatalf("Plaintext(desc) = %+v, %v", pd, err)
			}

			r, err := Decrypt(bytes.NewReader(c1), desc, priv(t, tc.priv))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("decrypted %d bytes (%v), want the %d plaintext bytes", len(got), err, len(want))
			}

			// Another key: a clear error before any byte.
			if _, err := Decrypt(bytes.NewReader(c1), desc, priv(t, "other-ec.key")); !errors.Is(err, ErrWrongKey) {
				t.Fatalf("other key: %v, want ErrWrongKey", err)
			}
			// A flipped ciphertext byte: the stream fails at its end.
			bad := bytes.Clone(c1)
			bad[len(bad)/2] ^= 1
			r, err = Decrypt(bytes.NewReader(bad), desc, priv(t, tc.priv))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(r); !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("tampered ciphertext: %v, want ErrDigestMismatch", err)
			}
			// A truncated blob likewise.
			r, _ = Decrypt(bytes.NewReader(c1[:len(c1)-1]), desc, priv(t, tc.priv))
			if _, err := io.ReadAll(r); !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("truncated ciphertext: %v, want ErrDigestMismatch", err)
			}
			// A manifest naming another plaintext.
			lie := desc
			lie.Annotations = enc.Annotations()
			lie.Annotations[PlaintextDigestAnnotation] = "sha256:" + strings.Repeat("0", 64)
			if _, err := Decrypt(bytes.NewReader(c1), lie, priv(t, tc.priv)); !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("other plaintext digest: %v, want ErrDigestMismatch", err)
			}
			// Not encrypted at all.
			plainDesc := desc
			plainDesc.MediaType = types.OCILayer
			if _, err := Decrypt(bytes.NewReader(c1), plainDesc, priv(t, tc.priv)); !errors.Is(err, ErrNotEncrypted) {
				t.Fatalf("plain media type: %v, want ErrNotEncrypted", err)
			}
		})
	}

	t.Run("PKCS#1 RSA key", func(t *testing.T) {
		k := priv(t, "rsa-pkcs1.key")
		enc, err := Encrypt(plain, k.Public())
		if err != nil {
			t.Fatal(err)
		}
		r, err := Decrypt(bytes.NewReader(readAll(t, enc.Compressed)), descriptor(t, enc), k)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%v", err)
		}
	})

	t.Run("two recipients", func(t *testing.T) {
		enc, err := Encrypt(plain, pub(t, "ec.pub"), pub(t, "rsa.pub"))
		if err != nil {
			t.Fatal(err)
		}
		c := readAll(t, enc.Compressed)
		for _, k := range []string{"ec.key", "rsa.key"} {
			r, err := Decrypt(bytes.NewReader(c), descriptor(t, enc), priv(t, k))
			if err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: %v", k, err)
			}
		}
	})
}

// TestOcicryptInterop checks the format against ocicrypt's own EncryptLayer/DecryptLayer
// (which imgcrypt and containers/image call), both ways.
func TestOcicryptInterop(t *testing.T) {
	plain := plainLayer()
	want := readAll(t, plain.Compressed)
	wantDigest, _ := plain.Digest()
	pubPEM, _ := os.ReadFile(filepath.Join("testdata", "ec.pub"))
	privPEM, _ := os.ReadFile(filepath.Join("testdata", "ec.key"))

	t.Run("ocicrypt decrypts ours", func(t *testing.T) {
		enc, err := Encrypt(plain, pub(t, "ec.pub"))
		if err != nil {
			t.Fatal(err)
		}
		d := descriptor(t, enc)
		dc, err := ocicfg.DecryptWithPrivKeys([][]byte{privPEM}, [][]byte{nil})
		if err != nil {
			t.Fatal(err)
		}
		// ocicrypt v1.3 returns no digest here (its AES-CTR Decrypt drops it): not compared.
		r, _, err := ocicrypt.DecryptLayer(dc.DecryptConfig, bytes.NewReader(readAll(t, enc.Compressed)),
			ocispec.Descriptor{MediaType: string(d.MediaType), Digest: digest.Digest(d.Digest.String()), Size: d.Size, Annotations: d.Annotations}, false)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("ocicrypt: %d bytes, %v", len(got), err)
		}
	})

	t.Run("we decrypt ocicrypt's", func(t *testing.T) {
		ec, err := ocicfg.EncryptWithJwe([][]byte{pubPEM})
		if err != nil {
			t.Fatal(err)
		}
		r, fin, err := ocicrypt.EncryptLayer(ec.EncryptConfig, bytes.NewReader(want),
			ocispec.Descriptor{MediaType: string(types.OCILayer), Digest: digest.Digest(wantDigest.String()), Size: int64(len(want))})
		if err != nil {
			t.Fatal(err)
		}
		c, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		ann, err := fin()
		if err != nil {
			t.Fatal(err)
		}
		h, _, _ := v1.SHA256(bytes.NewReader(c))
		desc := v1.Descriptor{MediaType: types.OCILayer + MediaTypeSuffix, Digest: h, Size: int64(len(c)), Annotations: ann}
		// ocicrypt records no plaintext digest in the manifest: Decrypt refuses, DecryptForeign
		// checks the HMAC only.
		if _, err := Decrypt(bytes.NewReader(c), desc, priv(t, "ec.key")); err == nil || !strings.Contains(err.Error(), "no "+PlaintextDigestAnnotation+" annotation") {
			t.Fatalf("Decrypt of a layer without the plaintext digest: %v", err)
		}
		pr, err := DecryptForeign(bytes.NewReader(c), desc, priv(t, "ec.key"))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(pr); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("decrypt ocicrypt's layer: %v", err)
		}
		c[0] ^= 1
		pr, _ = DecryptForeign(bytes.NewReader(c), desc, priv(t, "ec.key"))
		if _, err := io.ReadAll(pr); !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("tampered foreign layer: %v, want the HMAC failure", err)
		}
	})
}

// TestRegistryHoldsCiphertext pushes an encrypted layer to a real registry: no blob in its
// storage holds the marker, and a pull decrypts to the plaintext.
func TestRegistryHoldsCiphertext(t *testing.T) {
	r := registryd.Start(t, registryd.Options{})
	opts := []remote.Option{remote.WithTransport(r.Transport()), remote.WithContext(context.Background())}
	plain := plainLayer()
	want := readAll(t, plain.Compressed)
	enc, err := Encrypt(plain, pub(t, "ec.pub"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1),
		mutate.Addendum{Layer: enc, Annotations: enc.Annotations()})
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.NewTag(r.Ref("enc/app:v1"))
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("push: %v", err)
	}

	blobs, err := r.Blobs()
	if err != nil || len(blobs) < 3 {
		t.Fatalf("blobs in storage: %v, %v", blobs, err)
	}
	for _, b := range blobs {
		data, err := os.ReadFile(b)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte(marker)) {
			t.Fatalf("registry blob %s holds the plaintext marker", b)
		}
	}

	got, err := remote.Image(ref, opts...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := got.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	desc := m.Layers[0]
	l, err := got.LayerByDigest(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	pr, err := Decrypt(rc, desc, priv(t, "ec.key"))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(pr); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("pulled and decrypted %d bytes, %v; want the plaintext", len(b), err)
	}
	if _, err := Decrypt(bytes.NewReader(nil), desc, priv(t, "other-ec.key")); !errors.Is(err, ErrWrongKey) ||
		!strings.Contains(err.Error(), "layer is not encrypted for this key") {
		t.Fatalf("wrong key: %v", err)
	}
}

// BenchmarkEncrypt measures Encrypt's first pass plus one read of the ciphertext (what a
// push costs over reading the blob), BenchmarkDecrypt a checked decryption, on 64 MiB.
func BenchmarkEncrypt(b *testing.B) {
	data := make([]byte, 64<<20)
	if _, err := rand.Read(data); err != nil {
		b.Fatal(err)
	}
	k, err := LoadPublicKey(filepath.Join("testdata", "ec.pub"))
	if err != nil {
		b.Fatal(err)
	}
	plain := static.NewLayer(data, types.OCILayer)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		l, err := Encrypt(plain, k)
		if err != nil {
			b.Fatal(err)
		}
		rc, _ := l.Compressed()
		if _, err := io.Copy(io.Discard, rc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecrypt(b *testing.B) {
	data := make([]byte, 64<<20)
	if _, err := rand.Read(data); err != nil {
		b.Fatal(err)
	}
	k, err := LoadPrivateKey(filepath.Join("testdata", "ec.key"))
	if err != nil {
		b.Fatal(err)
	}
	l, err := Encrypt(static.NewLayer(data, types.OCILayer), k.Public())
	if err != nil {
		b.Fatal(err)
	}
	rc, _ := l.Compressed()
	c, _ := io.ReadAll(rc)
	d, _ := l.Digest()
	mt, _ := l.MediaType()
	desc := v1.Descriptor{MediaType: mt, Digest: d, Size: int64(len(c)), Annotations: l.Annotations()}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		r, err := Decrypt(bytes.NewReader(c), desc, k)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	}
}
