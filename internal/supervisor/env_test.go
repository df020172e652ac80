package supervisor

import (
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestAppEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want []string
	}{
		{"adds multipathtcp", []string{"PATH=/bin"}, []string{"PATH=/bin", "GODEBUG=multipathtcp=0"}},
		{"appends to GODEBUG", []string{"GODEBUG=gctrace=1"}, []string{"GODEBUG=gctrace=1,multipathtcp=0"}},
		{"empty GODEBUG", []string{"GODEBUG="}, []string{"GODEBUG=multipathtcp=0"}},
		{"keeps explicit", []string{"GODEBUG=multipathtcp=1"}, []string{"GODEBUG=multipathtcp=1"}},
		{"drops crwrap and libcontainer", []string{"CRWRAP_X=1", "_LIBCONTAINER_INITPIPE=3", "A=b"}, []string{"A=b", "GODEBUG=multipathtcp=0"}},
		{"value with $ passes", []string{"X=$HOME ${Y}"}, []string{"X=$HOME ${Y}", "GODEBUG=multipathtcp=0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := appEnv(tc.in); !slices.Equal(got, tc.want) {
				t.Fatalf("appEnv(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestHandles(t *testing.T) {
	// The Go runtime of this test process always catches SIGURG; a pid that does not exist
	// cannot be read and must count as handled.
	if !handles(os.Getpid(), syscall.SIGURG) {
		t.Fatal("the Go runtime catches SIGURG, handles says no")
	}
	if !handles(-1, syscall.SIGTERM) {
		t.Fatal("an unreadable status must count as handled")
	}
	sleep := exec.Command("sleep", "30")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	time.Sleep(50 * time.Millisecond) // let it exec
	if handles(sleep.Process.Pid, syscall.SIGTERM) {
		t.Fatal("sleep does not handle SIGTERM, handles says it does")
	}
}
