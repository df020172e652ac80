package cr

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A checkpoint holds process memory: every file and directory of it is root-only
// (DESIGN.md "The checkpoint on disk", issue 3 item 2: 0600/0700).
func TestCheckpointFilesRootOnly(t *testing.T) {
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	a.mustCheckpoint()
	dir := a.versionDir()
	var open []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o077 != 0 {
			rel, _ := filepath.Rel(dir, p)
			open = append(open, rel+" "+fi.Mode().String())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(open) > 0 {
		t.Errorf("%d entries of the checkpoint are readable beyond root (want 0600 files, 0700 directories):\n  %s",
			len(open), strings.Join(open, "\n  "))
	}
}
