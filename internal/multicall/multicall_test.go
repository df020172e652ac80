//go:build linux && cgo

package multicall

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// childEnv is set for the test binary started under a tool's name: if the constructor did not
// exec the bundle's loader, TestMain says so instead of running the tests again.
const childEnv = "CRWRAP_MULTICALL_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		fmt.Println("not dispatched")
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// fakeBundle makes a bundle whose "loader" is a script printing the command line it got and
// XTABLES_LIBDIR, with an empty executable for each of programs.
func fakeBundle(t *testing.T, programs ...string) string {
	t.Helper()
	dir := t.TempDir()
	loader := "#!/bin/sh\necho \"$@\"\necho \"XTABLES_LIBDIR=$XTABLES_LIBDIR\"\n"
	files := map[string]string{"root/lib64/ld-linux-x86-64.so.2": loader}
	for _, p := range programs {
		files["root/"+p] = ""
	}
	for f, body := range files {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestFastPath runs this test binary under a tool's name: the C constructor must exec the
// bundle's loader with the program the table picks, before Go's main runs.
func TestFastPath(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	nft, legacy := "usr/sbin/xtables-nft-multi", "usr/sbin/xtables-legacy-multi"
	tests := []struct {
		name, tool, xtables string
		programs            []string
		want                string // the program run, relative to root/; "" when not dispatched
		xtablesLib          bool
	}{
		{"criu", "criu", "", []string{"usr/sbin/criu"}, "usr/sbin/criu", false},
		{"nft first", "iptables-restore", "", []string{nft, legacy}, nft, true},
		{"legacy fallback", "ip6tables-restore", "", []string{legacy}, legacy, true},
		{"legacy chosen", "iptables", "legacy", []string{nft, legacy}, legacy, true},
		{"legacy chosen but missing", "iptables", "legacy", []string{nft}, "", false},
		{"program missing", "tar", "", []string{"usr/sbin/criu"}, "", false},
		{"not a tool", "bash", "", []string{"usr/sbin/criu"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bundle := fakeBundle(t, tt.programs...)
			link := filepath.Join(t.TempDir(), tt.tool)
			if err := os.Symlink(self, link); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(link, "-w", "x")
			var env []string
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "XTABLES_LIBDIR=") && !strings.HasPrefix(kv, "CRWRAP_") {
					env = append(env, kv)
				}
			}
			cmd.Env = append(env, childEnv+"=1", "CRWRAP_CRIU_BUNDLE="+bundle, "CRWRAP_XTABLES="+tt.xtables)
			out, err := cmd.Output()
			got := string(out)
			if tt.want == "" {
				if !strings.HasPrefix(got, "not dispatched") {
					t.Fatalf("dispatched: %q (%v)", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v: %q", err, got)
			}
			root := filepath.Join(bundle, "root")
			wantLine := fmt.Sprintf("--library-path %s/lib/x86_64-linux-gnu:%s/usr/lib/x86_64-linux-gnu --argv0 %s %s/%s -w x\n",
				root, root, tt.tool, root, tt.want)
			xtl := ""
			if tt.xtablesLib {
				xtl = root + "/usr/lib/x86_64-linux-gnu/xtables"
			}
			if want := wantLine + "XTABLES_LIBDIR=" + xtl + "\n"; got != want {
				t.Fatalf("got\n %q\nwant\n %q", got, want)
			}
		})
	}
}
