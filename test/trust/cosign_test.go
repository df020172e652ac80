package trust

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/crwrap/crwrap/internal/signature"
	"github.com/crwrap/crwrap/test/registryd"
)

// cosignModule is the cosign the interop tests build from the Go module proxy.
const cosignModule = "github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5"

// cosign returns a cosign binary: $COSIGN, else one built by `go install` from the module
// proxy into the user cache directory (kept, so that only the first run pays for the build:
// ~4 CPU-minutes).
func cosign(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("COSIGN"); p != "" {
		return p
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		prerequisite(t, "a user cache directory for the cosign build: %v", err)
	}
	gobin := filepath.Join(cache, "crwrap-test", "cosign-"+cosignModule[strings.LastIndex(cosignModule, "@")+1:])
	bin := filepath.Join(gobin, "cosign")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		prerequisite(t, "the go tool to build %s", cosignModule)
	}
	cmd := exec.Command(goTool, "install", cosignModule)
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		prerequisite(t, "go install %s: %v\n%s", cosignModule, err, out)
	}
	return bin
}

// cosignEnv keeps cosign off the network (no TUF root, no Rekor) and away from the user's
// own cosign state.
func cosignEnv(t *testing.T, r *registryd.Registry) []string {
	home := t.TempDir()
	return []string{"DOCKER_CONFIG=" + r.DockerConfig, "HOME=" + home, "TUF_ROOT=" + filepath.Join(home, "tuf"),
		"SIGSTORE_NO_CACHE=1", "COSIGN_PASSWORD=", "COSIGN_EXPERIMENTAL=0"}
}

// TestCosignVerifiesCrwrapSignatures: `cosign verify --key` accepts what signature.Sign
// pushed, for ECDSA P-256 and Ed25519 keys made by openssl, and rejects another key's.
func TestCosignVerifiesCrwrapSignatures(t *testing.T) {
	bin := cosign(t)
	r := registryd.Start(t, registryd.Options{TLS: true, Auth: true})
	t.Setenv("DOCKER_CONFIG", r.DockerConfig)
	opts := []remote.Option{remote.WithTransport(r.Transport()), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	dir := t.TempDir()
	_, otherPub := opensslKeys(t, dir, "other", "ec")

	for _, alg := range []string{"ec", "ed25519"} {
		t.Run(alg, func(t *testing.T) {
			key, pub := opensslKeys(t, dir, alg, alg)
			ref := pushRandom(t, r, "cosign/"+alg, opts)
			s, err := signature.LoadSigner(key)
			if err != nil {
				t.Fatal(err)
			}
			if err := signature.Sign(context.Background(), ref, s, opts...); err != nil {
				t.Fatal(err)
			}
			verify := func(pub string) (string, error) {
				return run(t, cosignEnv(t, r), bin, "verify", "--key", pub, "--insecure-ignore-tlog",
					"--registry-cacert", r.CACert, "--output", "json", ref.String())
			}
			out, err := verify(pub)
			if err != nil {
				t.Fatalf("cosign verify --key %s: %v", filepath.Base(pub), err)
			}
			if !strings.Contains(out, ref.DigestStr()) {
				t.Fatalf("cosign's verified payload does not name %s", ref.DigestStr())
			}
			if _, err := verify(otherPub); err == nil {
				t.Fatal("cosign verify accepted the signature with another key")
			}
		})
	}
}

// TestCrwrapVerifiesCosignSignatures: signature.Verify accepts what `cosign sign --key`
// pushed (a cosign-generated ECDSA P-256 key pair, no transparency log).
func TestCrwrapVerifiesCosignSignatures(t *testing.T) {
	bin := cosign(t)
	r := registryd.Start(t, registryd.Options{TLS: true, Auth: true})
	t.Setenv("DOCKER_CONFIG", r.DockerConfig)
	opts := []remote.Option{remote.WithTransport(r.Transport()), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	dir := t.TempDir()
	env := cosignEnv(t, r)
	cmd := exec.Command(bin, "generate-key-pair")
	cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	ref := pushRandom(t, r, "cosign/by-cosign", opts)
	if _, err := run(t, env, bin, "sign", "--key", filepath.Join(dir, "cosign.key"), "--tlog-upload=false",
		"--registry-cacert", r.CACert, "--yes", ref.String()); err != nil {
		t.Fatalf("cosign sign: %v", err)
	}
	v, err := signature.LoadVerifier(filepath.Join(dir, "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := signature.Verify(context.Background(), ref, v, opts...); err != nil {
		t.Fatalf("verify cosign's signature: %v", err)
	}
	other, err := signature.LoadVerifier(filepath.Join("..", "..", "internal", "signature", "testdata", "ecdsa.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := signature.Verify(context.Background(), ref, other, opts...); !errors.Is(err, signature.ErrUntrusted) {
		t.Fatalf("verify cosign's signature with another key: %v, want ErrUntrusted", err)
	}
}

// pushRandom pushes a small random image to repo:v1 and returns its digest reference.
func pushRandom(t *testing.T, r *registryd.Registry, repo string, opts []remote.Option) name.Digest {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(r.Ref(repo + ":v1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img, opts...); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return tag.Context().Digest(d.String())
}
