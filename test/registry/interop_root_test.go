package registry

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crwrap/crwrap/internal/archive"
	"github.com/crwrap/crwrap/test/harness"
)

const checkpointctlModule = "github.com/checkpoint-restore/checkpointctl@v1.6.0"

// checkpointctl returns $CHECKPOINTCTL, else checkpointctl installed from the Go module proxy.
func checkpointctl(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHECKPOINTCTL"); p != "" {
		return p
	}
	gobin := t.TempDir()
	cmd := exec.Command("go", "install", checkpointctlModule)
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=-mod=mod", "GOWORK=off")
	cmd.Dir = gobin
	if out, err := cmd.CombinedOutput(); err != nil {
		prerequisite(t, "go install %s: %v\n%s", checkpointctlModule, err, out)
	}
	return filepath.Join(gobin, "checkpointctl")
}

// A checkpoint pulled with `crwrap pull` is one checkpointctl reads: its archive shows the
// runtime and container, and the process tree of the app with its command line (read from
// the pulled page images).
func TestCheckpointctlReadsPulledCheckpoint(t *testing.T) {
	cctl := checkpointctl(t)
	ps := pushOne(t)
	dir := filepath.Join(t.TempDir(), "pulled")
	p, code := harness.Run(t, harness.Options{Env: ps.reg.env()}, time.Minute, "pull", ps.ref, dir)
	if code != 0 {
		t.Fatalf("crwrap pull exited %d\n%s", code, p.Stderr)
	}
	if got := strings.TrimSpace(p.Stdout.String()); !strings.Contains(got, "@sha256:") {
		t.Errorf("crwrap pull printed %q, want the pulled digest reference", got)
	}
	file := filepath.Join(t.TempDir(), "checkpoint.tar")
	if err := archive.ExportFile(dir, file, archive.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	show, err := exec.Command(cctl, "show", file).CombinedOutput()
	if err != nil {
		t.Fatalf("checkpointctl show: %v\n%s", err, show)
	}
	for _, w := range []string{"runc", "app"} {
		if !strings.Contains(string(show), w) {
			t.Errorf("checkpointctl show lacks %q:\n%s", w, show)
		}
	}
	js, err := exec.Command(cctl, "inspect", "--ps-tree-cmd", "--format", "json", file).Output()
	if err != nil {
		t.Fatalf("checkpointctl inspect: %v\n%s", err, js)
	}
	var nodes []struct {
		ProcessTree *struct {
			Cmdline string `json:"cmdline"`
		} `json:"process_tree"`
	}
	if err := json.Unmarshal(js, &nodes); err != nil || len(nodes) != 1 || nodes[0].ProcessTree == nil {
		t.Fatalf("checkpointctl inspect JSON: %v\n%s", err, js)
	}
	if !strings.Contains(nodes[0].ProcessTree.Cmdline, "testapp serve") {
		t.Errorf("checkpointctl read cmdline %q from the pulled pages, want the test app's", nodes[0].ProcessTree.Cmdline)
	}
	// Pulling into an existing directory is a usage error and changes nothing.
	_, code = harness.Run(t, harness.Options{Env: ps.reg.env()}, time.Minute, "pull", ps.ref, dir)
	if code != 2 {
		t.Errorf("crwrap pull into an existing directory exited %d, want 2", code)
	}
}
