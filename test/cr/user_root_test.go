package cr

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/crwrap/crwrap/test/harness"
)

// An app running as another user (cr.container.user) checkpoints and restores as that user.
// CRIU needs CAP_SYS_RESOURCE for that (it reads the app's rlimits across users); without it
// crwrap refuses at once, before it starts the app, with the reason.
func TestCheckpointRestoreAsUser(t *testing.T) {
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	const user = "cr.container.user=65534:65534"
	if !hasCapSysResource(t) {
		p, code := a.checkpoint(harness.Options{}, user)
		if code != 1 {
			t.Errorf("checkpoint without CAP_SYS_RESOURCE exited %d, want 1", code)
		}
		if !strings.Contains(p.Stderr.String(), "CRIU needs CAP_SYS_RESOURCE") {
			t.Errorf("the error does not say what is missing:\n%s", p.Stderr)
		}
		if harness.FindLog(p, "phase", "start") != nil {
			t.Errorf("the app was started although its checkpoint cannot be made")
		}
		return
	}
	want := a.mustCheckpoint(user)
	if uids := appUIDs(a); len(uids) != 0 {
		t.Fatalf("the checkpointed app still runs: %v", uids)
	}
	p := a.restoreReady(user)
	harness.AssertRestored(t, p)
	if got := a.get("/value"); got != want {
		t.Errorf("/value = %q, want the checkpointed %q", got, want)
	}
	if uids := appUIDs(a); len(uids) != 1 || uids[0] != "65534" {
		t.Errorf("the restored app runs as uid %v, want 65534", uids)
	}
	harness.Stop(t, p)
}

func hasCapSysResource(t *testing.T) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<24) != 0
		}
	}
	return false
}

// appUIDs are the real uids of the processes running a's command line.
func appUIDs(a *testApp) []string {
	var out []string
	want := strings.Join(a.command(), "\x00")
	cmds, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, c := range cmds {
		b, err := os.ReadFile(c)
		if err != nil || strings.TrimSuffix(string(b), "\x00") != want {
			continue
		}
		st, err := os.ReadFile(filepath.Join(filepath.Dir(c), "status"))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(st), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" {
				out = append(out, f[1])
			}
		}
	}
	return out
}
