package signature

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/crwrap/crwrap/test/registryd"
)

func TestPayload(t *testing.T) {
	ref, err := name.NewDigest("registry.example.com:5000/team/app@sha256:" + strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Payload(ref)
	if err != nil {
		t.Fatal(err)
	}
	// cosign v2's payload for this reference (sigstore/sigstore pkg/signature/payload).
	want := `{"critical":{"identity":{"docker-reference":"registry.example.com:5000/team/app"},` +
		`"image":{"docker-manifest-digest":"sha256:` + strings.Repeat("ab", 32) + `"},` +
		`"type":"cosign container image signature"},"optional":null}`
	if string(got) != want {
		t.Fatalf("payload\n got %s\nwant %s", got, want)
	}
	tag, err := Tag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if tag.String() != "registry.example.com:5000/team/app:sha256-"+strings.Repeat("ab", 32)+".sig" {
		t.Fatalf("tag %s", tag)
	}
}

func loadKeys(t *testing.T, key, pub string) (*Signer, *Verifier) {
	t.Helper()
	s, err := LoadSigner(filepath.Join("testdata", key))
	if err != nil {
		t.Fatal(err)
	}
	v, err := LoadVerifier(filepath.Join("testdata", pub))
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// pushImage pushes a small random image to repo:tag and returns its digest reference.
func pushImage(t *testing.T, r *registryd.Registry, repo string, opts []remote.Option) name.Digest {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(r.Ref(repo + ":v1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img, opts...); err != nil {
		t.Fatalf("push %s: %v", tag, err)
	}
	d, _ := img.Digest()
	return tag.Context().Digest(d.String())
}

// pushSigImage writes a hand-made signature image for ref: one layer per payload/annotation.
func pushSigImage(t *testing.T, ref name.Digest, layers []mutate.Addendum, opts []remote.Option) {
	t.Helper()
	tag, _ := Tag(ref)
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layers...)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img, opts...); err != nil {
		t.Fatal(err)
	}
}

func TestSignVerifyRegistry(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		opts registryd.Options
	}{
		{"plain", registryd.Options{}},
		{"tls-auth", registryd.Options{TLS: true, Auth: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := registryd.Start(t, tc.opts)
			opts := []remote.Option{remote.WithTransport(r.Transport())}
			if tc.opts.Auth {
				t.Setenv("DOCKER_CONFIG", r.DockerConfig)
				opts = append(opts, remote.WithAuthFromKeychain(authn.DefaultKeychain))
			}
			for _, k := range []struct{ key, pub string }{{"ecdsa.key", "ecdsa.pub"}, {"ed25519.key", "ed25519.pub"}} {
				t.Run(k.key, func(t *testing.T) {
					s, v := loadKeys(t, k.key, k.pub)
					ref := pushImage(t, r, "sign/"+strings.TrimSuffix(k.key, ".key"), opts)
					if err := Verify(ctx, ref, v, opts...); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "not signed") {
						t.Fatalf("verify before signing: %v", err)
					}
					if err := Sign(ctx, ref, s, opts...); err != nil {
						t.Fatal(err)
					}
					if err := Verify(ctx, ref, v, opts...); err != nil {
						t.Fatalf("verify: %v", err)
					}
					checkLayout(t, ref, opts, 1)
					// Signing again with the same key adds nothing.
					if err := Sign(ctx, ref, s, opts...); err != nil {
						t.Fatal(err)
					}
					checkLayout(t, ref, opts, 1)
				})
			}
		})
	}
}

// checkLayout asserts the signature image is laid out as cosign writes it.
func checkLayout(t *testing.T, ref name.Digest, opts []remote.Option, layers int) {
	t.Helper()
	tag, _ := Tag(ref)
	img, err := remote.Image(tag, opts...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Fatalf("manifest %s, config %s: want OCI manifest and config", m.MediaType, m.Config.MediaType)
	}
	if len(m.Layers) != layers {
		t.Fatalf("%d signature layers, want %d", len(m.Layers), layers)
	}
	want, _ := Payload(ref)
	for _, l := range m.Layers {
		if l.MediaType != PayloadMediaType {
			t.Fatalf("layer media type %s", l.MediaType)
		}
		if _, err := base64.StdEncoding.DecodeString(l.Annotations[Annotation]); err != nil || l.Annotations[Annotation] == "" {
			t.Fatalf("annotation %s = %q", Annotation, l.Annotations[Annotation])
		}
		got, err := readLayer(img, l)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("payload %s, want %s", got, want)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	ctx := context.Background()
	r := registryd.Start(t, registryd.Options{})
	opts := []remote.Option{remote.WithTransport(r.Transport())}
	s, v := loadKeys(t, "ecdsa.key", "ecdsa.pub")
	other, otherV := loadKeys(t, "ed25519.key", "ed25519.pub")
	signed := pushImage(t, r, "reject/a", opts)
	unsigned := pushImage(t, r, "reject/b", opts)
	if err := Sign(ctx, signed, s, opts...); err != nil {
		t.Fatal(err)
	}
	sigOf := func(s *Signer, p []byte) string {
		b, err := s.Sign(p)
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(b)
	}
	layer := func(p []byte, ann map[string]string) mutate.Addendum {
		return mutate.Addendum{Layer: static.NewLayer(p, PayloadMediaType), Annotations: ann}
	}

	// Another key also signs the signed image: both keys verify, the layers add up.
	if err := Sign(ctx, signed, other, opts...); err != nil {
		t.Fatal(err)
	}
	checkLayout(t, signed, opts, 2)
	if err := Verify(ctx, signed, otherV, opts...); err != nil {
		t.Fatalf("second key: %v", err)
	}

	for _, tc := range []struct {
		name    string
		setup   func() name.Digest
		wantErr string
	}{
		{"unsigned", func() name.Digest { return unsigned }, "not signed (no sha256-"},
		{"other key", func() name.Digest {
			ref := pushImage(t, r, "reject/c", opts)
			if err := Sign(ctx, ref, other, opts...); err != nil {
				t.Fatal(err)
			}
			return ref
		}, "signed by another key"},
		{"payload for another digest", func() name.Digest {
			// A genuine signature of the signed image, copied to the unsigned one's tag.
			p, _ := Payload(signed)
			ref := pushImage(t, r, "reject/a", opts) // same repository, other digest
			pushSigImage(t, ref, []mutate.Addendum{layer(p, map[string]string{Annotation: sigOf(s, p)})}, opts)
			return ref
		}, "signature is for another image " + signed.DigestStr()},
		{"payload for another repository", func() name.Digest {
			ref := pushImage(t, r, "reject/d", opts)
			p, _ := Payload(ref.Context().Registry.Repo("elsewhere").Digest(ref.DigestStr()))
			pushSigImage(t, ref, []mutate.Addendum{layer(p, map[string]string{Annotation: sigOf(s, p)})}, opts)
			return ref
		}, "signature is for another repository " + r.Host + "/elsewhere"},
		{"tampered signature", func() name.Digest {
			ref := pushImage(t, r, "reject/e", opts)
			p, _ := Payload(ref)
			b, _ := s.Sign(p)
			b[len(b)-1] ^= 1
			pushSigImage(t, ref, []mutate.Addendum{layer(p, map[string]string{Annotation: base64.StdEncoding.EncodeToString(b)})}, opts)
			return ref
		}, "signed by another key"},
		{"no annotation", func() name.Digest {
			ref := pushImage(t, r, "reject/f", opts)
			p, _ := Payload(ref)
			pushSigImage(t, ref, []mutate.Addendum{layer(p, nil)}, opts)
			return ref
		}, "signature layer without " + Annotation},
		{"not base64", func() name.Digest {
			ref := pushImage(t, r, "reject/g", opts)
			p, _ := Payload(ref)
			pushSigImage(t, ref, []mutate.Addendum{layer(p, map[string]string{Annotation: "%%%"})}, opts)
			return ref
		}, "signature is not base64"},
		{"wrong media type", func() name.Digest {
			ref := pushImage(t, r, "reject/h", opts)
			p, _ := Payload(ref)
			pushSigImage(t, ref, []mutate.Addendum{{Layer: static.NewLayer(p, types.OCILayer), Annotations: map[string]string{Annotation: sigOf(s, p)}}}, opts)
			return ref
		}, "is not a signature"},
		{"signed garbage", func() name.Digest {
			ref := pushImage(t, r, "reject/i", opts)
			p := []byte("not json")
			pushSigImage(t, ref, []mutate.Addendum{layer(p, map[string]string{Annotation: sigOf(s, p)})}, opts)
			return ref
		}, "signed payload is not JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := tc.setup()
			err := Verify(ctx, ref, v, opts...)
			if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Verify: got %v, want ErrUntrusted with %q", err, tc.wantErr)
			}
		})
	}

	t.Run("cosign optional annotations", func(t *testing.T) {
		// cosign sign -a k=v puts annotations in "optional": same image, other bytes.
		ref := pushImage(t, r, "reject/j", opts)
		var p simpleSigning
		b, _ := Payload(ref)
		_ = json.Unmarshal(b, &p)
		p.Optional = map[string]any{"k": "v"}
		b, _ = json.Marshal(p)
		pushSigImage(t, ref, []mutate.Addendum{layer(b, map[string]string{Annotation: sigOf(s, b)})}, opts)
		if err := Verify(ctx, ref, v, opts...); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("newest signatures first, bounded", func(t *testing.T) {
		ref := pushImage(t, r, "reject/k", opts)
		p, _ := Payload(ref)
		good := layer(p, map[string]string{Annotation: sigOf(s, p)})
		junk := mutate.Addendum{Layer: static.NewLayer([]byte("junk"), types.OCILayer)}
		many := make([]mutate.Addendum, maxSignatures)
		for i := range many {
			many[i] = junk
		}
		pushSigImage(t, ref, append(append([]mutate.Addendum{}, many...), good), opts)
		if err := Verify(ctx, ref, v, opts...); err != nil {
			t.Fatalf("newest signature good: %v", err)
		}
		pushSigImage(t, ref, append([]mutate.Addendum{good}, many...), opts)
		err := Verify(ctx, ref, v, opts...)
		if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "only the newest 100 of 101 signatures read") {
			t.Fatalf("good signature beyond the bound: %v", err)
		}
	})

	t.Run("registry down", func(t *testing.T) {
		r.Stop()
		err := Verify(ctx, signed, v, opts...)
		if err == nil || errors.Is(err, ErrUntrusted) {
			t.Fatalf("Verify with the registry down: %v, want a registry error that is not ErrUntrusted", err)
		}
	})
}
