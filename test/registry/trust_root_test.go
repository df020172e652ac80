package registry

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/crwrap/crwrap/test/harness"
)

// opensslKey writes a key pair as `openssl genpkey` and `openssl pkey -pubout` write them;
// algo is "ed25519" or "ec" (P-256).
func opensslKey(t *testing.T, algo string) (priv, pub string) {
	t.Helper()
	dir := t.TempDir()
	priv, pub = filepath.Join(dir, "key.pem"), filepath.Join(dir, "pub.pem")
	args := []string{"genpkey", "-algorithm", "ed25519", "-out", priv}
	if algo == "ec" {
		args = []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", priv}
	}
	if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
		prerequisite(t, "openssl genpkey: %v: %s", err, out)
	}
	if out, err := exec.Command("openssl", "pkey", "-in", priv, "-pubout", "-out", pub).CombinedOutput(); err != nil {
		t.Fatalf("openssl pkey -pubout: %v: %s", err, out)
	}
	return priv, pub
}

// With cr.checkpoint.verify-key a restore accepts only a checkpoint signed by the pair:
// unsigned and another key's signature are cold starts (untrusted), the pair's is restored.
func TestSignedCheckpoints(t *testing.T) {
	a := newTestApp(t, "-warmup", "200ms", "-heap", "8")
	reg := startRegistry(t, registryOptions{})
	signKey, verifyKey := opensslKey(t, "ed25519")
	otherKey, _ := opensslKey(t, "ec")

	tests := []struct {
		name    string
		signing string // cr.checkpoint.signing-key of the checkpoint node
		reason  string // "" for restored
	}{
		{"unsigned", "", "untrusted"},
		{"another key", otherKey, "untrusted"},
		{"signed", signKey, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var extra []string
			if tt.signing != "" {
				extra = append(extra, "cr.checkpoint.signing-key="+tt.signing)
			}
			want, _ := newNode(t).checkpoint(a, reg.repo(), reg.env(), extra...)
			n := newNode(t)
			p := n.restoreReady(a, reg.repo(), reg.env(), "cr.checkpoint.verify-key="+verifyKey)
			defer harness.Stop(t, p)
			if tt.reason != "" {
				harness.AssertFallback(t, p, tt.reason)
				if got := n.cacheEntries(); len(got) > 0 {
					t.Errorf("an untrusted checkpoint reached the cache: %v", got)
				}
				return
			}
			harness.AssertRestored(t, p)
			if got := harness.MustGet(t, a.url(""), "/value"); got != want {
				t.Errorf("/value = %q, want %q", got, want)
			}
		})
	}
}

// With cr.checkpoint.encryption-key no blob in the registry's storage holds the value the
// app had in memory (it does without); the restore side decrypts with the private key, and
// without it starts cold (untrusted).
func TestEncryptedCheckpoints(t *testing.T) {
	a := newTestApp(t, "-warmup", "200ms", "-heap", "8")
	priv, pub := opensslKey(t, "ec")

	t.Run("plaintext", func(t *testing.T) { // the marker is found when it is there
		reg := startRegistry(t, registryOptions{})
		marker, _ := newNode(t).checkpoint(a, reg.repo(), reg.env())
		if !storageHolds(t, reg, marker) {
			t.Fatalf("the app's value %q is in no blob of an unencrypted push: the check below proves nothing", marker)
		}
	})
	reg := startRegistry(t, registryOptions{})
	marker, _ := newNode(t).checkpoint(a, reg.repo(), reg.env(), "cr.checkpoint.encryption-key="+pub)
	if storageHolds(t, reg, marker) {
		t.Errorf("a blob in the registry holds the app's in-memory value %q in plaintext", marker)
	}

	p := newNode(t).restoreReady(a, reg.repo(), reg.env())
	harness.AssertFallback(t, p, "untrusted")
	harness.Stop(t, p)

	p = newNode(t).restoreReady(a, reg.repo(), reg.env(), "cr.checkpoint.decryption-key="+priv)
	harness.AssertRestored(t, p)
	if got := harness.MustGet(t, a.url(""), "/value"); got != marker {
		t.Errorf("/value = %q, want %q", got, marker)
	}
	harness.Stop(t, p)
}

// storageHolds reports whether any blob in the registry's storage contains s.
func storageHolds(t *testing.T, reg *testRegistry, s string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(reg.storage, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || found {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		found = bytes.Contains(b, []byte(s))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
