package criu

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

func TestLoaderArgv(t *testing.T) {
	got := LoaderArgv("/crwrap/criu/root", "criu", "/crwrap/criu/root/usr/sbin/criu", []string{"check", "--all"})
	want := []string{
		"/crwrap/criu/root/lib64/ld-linux-x86-64.so.2",
		"--library-path", "/crwrap/criu/root/lib/x86_64-linux-gnu:/crwrap/criu/root/usr/lib/x86_64-linux-gnu",
		"--argv0", "criu",
		"/crwrap/criu/root/usr/sbin/criu",
		"check", "--all",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("LoaderArgv =\n %q\nwant\n %q", got, want)
	}
}

func TestToolEnv(t *testing.T) {
	env := []string{"PATH=/bin", "XTABLES_LIBDIR=/usr/lib/x86_64-linux-gnu/xtables", "A=b"}
	if got := ToolEnv("/r", "criu", env); !reflect.DeepEqual(got, env) {
		t.Errorf("criu env changed: %q", got)
	}
	want := []string{"PATH=/bin", "A=b", "XTABLES_LIBDIR=/r/usr/lib/x86_64-linux-gnu/xtables"}
	if got := ToolEnv("/r", "ip6tables-restore", env); !reflect.DeepEqual(got, want) {
		t.Errorf("ip6tables-restore env = %q, want %q", got, want)
	}
}

func TestPrependPath(t *testing.T) {
	tests := []struct{ path, dir, want string }{
		{"/usr/bin:/bin", "/b", "/b:/usr/bin:/bin"},
		{"/b:/usr/bin:/b", "/b", "/b:/usr/bin"},
		{"", "/b", "/b"},
		{"/usr/bin::/bin", "/b", "/b:/usr/bin:/bin"},
	}
	for _, tt := range tests {
		if got := PrependPath(tt.path, tt.dir); got != tt.want {
			t.Errorf("PrependPath(%q, %q) = %q, want %q", tt.path, tt.dir, got, tt.want)
		}
	}
}

// fakeBundle lays out a bundle with empty executables where the loader and tools go.
func fakeBundle(t *testing.T, tools ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "criu")
	files := append([]string{LoaderPath}, tools...)
	for _, f := range files {
		p := filepath.Join(dir, rootDir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, binDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, versionFile), []byte("4.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestOpenBundleAndArgv(t *testing.T) {
	dir := fakeBundle(t, "usr/sbin/criu", "usr/bin/tar", "usr/sbin/xtables-nft-multi", "usr/sbin/xtables-legacy-multi")
	b, err := OpenBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.Version != (Version{Major: 4, Minor: 2, Patch: 1}) || b.BinDir != filepath.Join(dir, "bin") {
		t.Fatalf("bundle = %+v", b)
	}
	argv, err := b.Argv("iptables-restore", "-w")
	if err != nil {
		t.Fatal(err)
	}
	want := LoaderArgv(b.Root(), "iptables-restore", filepath.Join(b.Root(), "usr/sbin/xtables-nft-multi"), []string{"-w"})
	if !reflect.DeepEqual(argv, want) {
		t.Fatalf("Argv = %q, want %q", argv, want)
	}
	t.Setenv(XtablesEnv, "legacy")
	argv, _ = b.Argv("iptables-restore")
	if argv[5] != filepath.Join(b.Root(), "usr/sbin/xtables-legacy-multi") {
		t.Fatalf("legacy Argv = %q", argv)
	}
	if err := os.Remove(filepath.Join(b.Root(), "usr/sbin/xtables-nft-multi")); err != nil {
		t.Fatal(err)
	}
	t.Setenv(XtablesEnv, "")
	argv, _ = b.Argv("ip6tables-save")
	if argv[5] != filepath.Join(b.Root(), "usr/sbin/xtables-legacy-multi") {
		t.Fatalf("Argv without xtables-nft-multi = %q", argv)
	}
	if _, err := b.Argv("nft"); !errors.Is(err, ErrNoBundle) {
		t.Fatalf("Argv(nft) on a bundle without nft: %v", err)
	}
	if _, err := b.Argv("bash"); err == nil {
		t.Fatal("Argv(bash) succeeded")
	}
}

func TestOpenBundleMissing(t *testing.T) {
	if _, err := OpenBundle(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, ErrNoBundle) {
		t.Fatalf("missing dir: %v", err)
	}
	dir := fakeBundle(t) // no criu
	if _, err := OpenBundle(dir); !errors.Is(err, ErrNoBundle) {
		t.Fatalf("no criu: %v", err)
	}
}

func TestDispatchOtherNames(t *testing.T) {
	for _, n := range []string{"/crwrap/bin/crwrap", "crwrap", "/proc/self/exe", "init"} {
		if handled, err := Dispatch(n, nil); handled || err != nil {
			t.Errorf("Dispatch(%q) = %v, %v", n, handled, err)
		}
	}
	t.Setenv(BundleEnv, filepath.Join(t.TempDir(), "none"))
	handled, err := Dispatch("/crwrap/criu/bin/criu", []string{"check"})
	if !handled || !errors.Is(err, ErrNoBundle) {
		t.Fatalf("Dispatch(criu) without bundle = %v, %v", handled, err)
	}
}

func TestTools(t *testing.T) {
	names := Tools()
	for _, n := range []string{"criu", "tar", "gzip", "iptables-restore", "ip6tables-restore", "iptables", "ip6tables", "nft"} {
		if !slices.Contains(names, n) || !IsTool(n) {
			t.Errorf("%s is not a tool", n)
		}
	}
}

func TestActivatePath(t *testing.T) {
	tmp := t.TempDir()
	prog := filepath.Join(tmp, "criu-4.2")
	if err := os.WriteFile(prog, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", "/usr/bin")
	if err := ActivatePath(prog, tmp); err != nil {
		t.Fatal(err)
	}
	first := filepath.SplitList(os.Getenv("PATH"))[0]
	if target, err := os.Readlink(filepath.Join(first, "criu")); err != nil || target != prog {
		t.Fatalf("PATH %q: criu -> %q, %v", os.Getenv("PATH"), target, err)
	}
	named := filepath.Join(tmp, "sbin", "criu")
	_ = os.MkdirAll(filepath.Dir(named), 0o755)
	if err := os.WriteFile(named, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ActivatePath(named, tmp); err != nil {
		t.Fatal(err)
	}
	if first := filepath.SplitList(os.Getenv("PATH"))[0]; first != filepath.Dir(named) {
		t.Fatalf("PATH = %q", os.Getenv("PATH"))
	}
	if err := ActivatePath(filepath.Join(tmp, "missing"), tmp); err == nil {
		t.Fatal("ActivatePath(missing) succeeded")
	}
}
