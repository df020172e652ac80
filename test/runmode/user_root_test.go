package runmode

import (
	"strings"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// cr.container.user runs the app as another user than crwrap's (root): numbers as they are,
// names looked up in the image's /etc/passwd and /etc/group, HOME from passwd.
func TestContainerUser(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		user, want string
	}{
		{"4242:4343", "4242 4343 4343"},
		{"nobody", "65534 65534 65534 HOME=/nonexistent"},
		{"nobody:root", "65534 0 0 HOME=/nonexistent"},
	} {
		t.Run(tc.user, func(t *testing.T) {
			e := newEnv(t, "cr.container.user="+tc.user)
			p, code := harness.Run(t, e.opts(), 20*time.Second, "run", "--", "sh", "-c",
				`echo $(id -u) $(id -g) $(id -G) $(test "$HOME" = /root || echo HOME=$HOME)`)
			if code != 0 {
				t.Fatalf("exit code %d, want 0\nstderr:\n%s", code, p.Stderr)
			}
			if got := strings.TrimSpace(p.Stdout.String()); got != tc.want {
				t.Errorf("the app saw uid gid groups %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("unknown name", func(t *testing.T) {
		e := newEnv(t, "cr.container.user=no-such-user-here")
		p, code := harness.Run(t, e.opts(), 20*time.Second, "run", "--", "true")
		if code != 2 {
			t.Errorf("exit code %d, want 2", code)
		}
		if !strings.Contains(p.Stderr.String(), "cr.container.user: user \"no-such-user-here\"") {
			t.Errorf("stderr does not name the key and user:\n%s", p.Stderr)
		}
	})
}

// The app's writes to its root filesystem are bounded by cr.container.rootfs-size: past it
// they fail with ENOSPC, and the app (root here) cannot fill the pod's memory or disk.
func TestRootfsSize(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "cr.container.rootfs-size=4Mi")
	p, code := harness.Run(t, e.opts(), 30*time.Second, "run", "--", "sh", "-c",
		`dd if=/dev/zero of=/var/tmp/crwrap-fill bs=1M count=2 2>/dev/null && echo small-ok;
		 dd if=/dev/zero of=/var/tmp/crwrap-fill2 bs=1M count=16 2>&1; echo "rc=$?"`)
	if code != 0 {
		t.Fatalf("exit code %d, want 0\nstderr:\n%s", code, p.Stderr)
	}
	out := p.Stdout.String()
	if !strings.Contains(out, "small-ok") {
		t.Errorf("a 2 MiB write within 4Mi failed:\n%s", out)
	}
	if !strings.Contains(out, "No space left on device") || strings.Contains(out, "rc=0") {
		t.Errorf("a 16 MiB write into a 4Mi root filesystem did not fail with ENOSPC:\n%s", out)
	}
}
