package cr

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/crwrap/crwrap/test/harness"
)

var (
	featureOnce sync.Once
	featurePath string
	featureErr  error
)

// featureApp builds test/featureapp (static) once per test binary and returns a test app that
// holds one kernel object (featureapp -feature NAME -path P).
func newFeatureApp(t *testing.T, feature, path string) *testApp {
	t.Helper()
	a := newTestApp(t)
	featureOnce.Do(func() {
		dir, err := os.MkdirTemp("", "crwrap-featureapp-")
		if err != nil {
			featureErr = err
			return
		}
		featurePath = filepath.Join(dir, "featureapp")
		cmd := exec.Command("go", "build", "-o", featurePath, "./test/featureapp")
		cmd.Dir = harness.RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			featureErr = fmt.Errorf("build featureapp: %v: %s", err, out)
		}
	})
	if featureErr != nil {
		t.Fatal(featureErr)
	}
	a.bin = featurePath
	a.flags = []string{"-feature", feature}
	if path != "" {
		a.flags = append(a.flags, "-path", path)
	}
	return a
}

// check asks the app whether its kernel object still works ("" when it does).
func (a *testApp) check() string {
	a.t.Helper()
	body, err := harness.Get(a.url("/check"))
	if err != nil {
		return fmt.Sprintf("%v: %s", err, body)
	}
	return ""
}

// fileIdentity is featureapp's /identity: st_dev/st_ino of its file at start, now through the
// path, now through the open descriptor.
type fileIdentity struct {
	Start, Path, FD struct{ Dev, Ino uint64 }
}

func (a *testApp) identity() fileIdentity {
	a.t.Helper()
	var id fileIdentity
	if err := json.Unmarshal([]byte(a.get("/identity")), &id); err != nil {
		a.t.Fatalf("/identity: %v", err)
	}
	return id
}

// A file in the app's root filesystem path for a test: in a directory of the pod's root (the
// overlay's lower layer), removed when the test ends. The app's writes there stay in its
// overlay.
func rootfsPath(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "crwrap-fidelity-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, name)
}

// An inotify watch on a file of the app's root filesystem (an overlay) is checkpointed and
// still reports changes after a restore (issue 8 item 3).
func TestInotifyOnRootfsFile(t *testing.T) {
	for _, c := range []struct {
		name  string
		lower bool // the file exists in the pod's root before the app starts
	}{{"lower", true}, {"upper", false}} {
		t.Run(c.name, func(t *testing.T) {
			p := rootfsPath(t, "watched")
			if c.lower {
				if err := os.WriteFile(p, []byte("before\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			a := newFeatureApp(t, "inotify", p)
			a.mustCheckpoint()
			r := a.restoreReady()
			harness.AssertRestored(t, r)
			if msg := a.check(); msg != "" {
				t.Errorf("the restored app's inotify watch: %s", msg)
			}
			harness.Stop(t, r)
		})
	}
}

func TestStoppedChildExperiment(t *testing.T) {
	a := newFeatureApp(t, "stopped-child", "")
	p, code := a.checkpoint(harness.Options{})
	t.Logf("code %d\n%s", code, p.Stderr)
}
