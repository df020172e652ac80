package registry

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// PushDir and PullDir: a directory round trip under the derived tag and an explicit one; a
// pull into an existing directory is fs.ErrExist and leaves it as it was.
func TestPushDirPullDir(t *testing.T) {
	ctx := context.Background()
	dir, m := fakeCheckpoint(t)
	repo := testRepo(t)
	for _, tag := range []string{"", "explicit"} {
		p, err := PushDir(ctx, dir, repo, tag)
		if err != nil {
			t.Fatal(err)
		}
		want := tag
		if want == "" {
			want = TagOf(m)
		}
		if p.Ref.TagStr() != want {
			t.Errorf("pushed as %s, want tag %s", p.Ref, want)
		}
		out := filepath.Join(t.TempDir(), "pulled")
		d, err := PullDir(ctx, p.Ref, out)
		if err != nil || d != p.Digest {
			t.Fatalf("PullDir: %v, digest %v want %v", err, d, p.Digest)
		}
		a, _ := os.ReadFile(filepath.Join(dir, "spec.dump"))
		b, _ := os.ReadFile(filepath.Join(out, "spec.dump"))
		if string(a) != string(b) {
			t.Error("spec.dump differs after the round trip")
		}
		if _, err := PullDir(ctx, p.Ref, out); !errors.Is(err, fs.ErrExist) {
			t.Errorf("PullDir into an existing directory: %v, want fs.ErrExist", err)
		}
		if _, err := os.Stat(filepath.Join(out, "spec.dump")); err != nil {
			t.Errorf("the existing directory changed: %v", err)
		}
	}
	if _, err := PushDir(ctx, filepath.Join(t.TempDir(), "none"), repo, ""); err == nil {
		t.Error("PushDir of a missing directory: no error")
	}
}
