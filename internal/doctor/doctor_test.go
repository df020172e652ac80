package doctor

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crwrap/crwrap/internal/criu"
)

const (
	allCaps  = "000001ffffffffff"
	noSysRes = "000001fffeffffff" // measured on the development VM
)

const goodConfig = `CONFIG_CHECKPOINT_RESTORE=y
CONFIG_NAMESPACES=y
CONFIG_PID_NS=y
CONFIG_IPC_NS=y
CONFIG_UTS_NS=y
CONFIG_NET_NS=y
CONFIG_FHANDLE=y
CONFIG_EVENTFD=y
CONFIG_EPOLL=y
CONFIG_INOTIFY_USER=y
CONFIG_UNIX_DIAG=y
CONFIG_INET_DIAG=y
CONFIG_INET_UDP_DIAG=m
CONFIG_PACKET_DIAG=y
CONFIG_NETLINK_DIAG=y
CONFIG_MEM_SOFT_DIRTY=y
CONFIG_USERFAULTFD=y
CONFIG_NF_TABLES=y
`

const (
	mountsV2 = `22 1 0:20 / / rw - overlay overlay rw
30 22 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw
31 22 0:27 / /run rw - tmpfs tmpfs rw
`
	mountsHybrid = `22 1 0:20 / / rw - ext4 /dev/vda rw
30 22 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw
31 30 0:27 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
32 30 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
`
	mountsV1NoFreezer = `22 1 0:20 / / rw - ext4 /dev/vda rw
31 22 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
`
)

// host is a fake system: files under a root directory plus what CRIU answers.
type host struct {
	files       map[string]string
	criuVersion string // output of criu --version
	checkOut    string
	checkErr    error
	noBundle    bool
	noUffd      bool
	onPath      map[string]bool
}

func healthy() *host {
	return &host{
		files: map[string]string{
			"/proc/self/status":                          "Name:\tcrwrap\nUid:\t0\t0\t0\t0\nCapEff:\t" + allCaps + "\nSeccomp:\t0\nSeccomp_filters:\t0\n",
			"/proc/sys/kernel/osrelease":                 "6.18.44-fc-v595\n",
			"/proc/self/mountinfo":                       mountsV2,
			"/proc/self/cgroup":                          "0::/kubepods/pod1\n",
			"/sys/fs/cgroup/kubepods/pod1/cgroup.freeze": "0\n",
			"/proc/self/attr/current":                    "unconfined\n",
			"/proc/self/ns/mnt":                          "", "/proc/self/ns/pid": "", "/proc/self/ns/ipc": "",
			"/proc/self/ns/uts": "", "/proc/self/ns/net": "",
			"config.gz": goodConfig,
		},
		criuVersion: "Version: 4.2.1\n",
		checkOut:    "Warn  (criu/cr-check.c:824): Dirty tracking is OFF. Memory snapshot will not work.\nLooks good.\n",
	}
}

func (h *host) build(t *testing.T) (Options, *[][]string) {
	t.Helper()
	root := t.TempDir()
	for name, content := range h.files {
		p := filepath.Join(root, name)
		if name == "config.gz" {
			p = filepath.Join(root, "proc/config.gz")
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write([]byte(content))
			zw.Close()
			content = buf.String()
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bundleDir := fakeBundle(t)
	var calls [][]string
	opts := Options{
		Root: root,
		Run: func(_ context.Context, argv, _ []string) ([]byte, error) {
			calls = append(calls, argv)
			switch argv[len(argv)-1] {
			case "--version":
				return []byte(h.criuVersion), nil
			case "check":
				return []byte(h.checkOut), h.checkErr
			case "uffd-noncoop":
				if h.noUffd {
					return []byte("uffd-noncoop is not supported\n"), errors.New("exit status 1")
				}
				return []byte("uffd-noncoop is supported\n"), nil
			}
			return nil, errors.New("unexpected command")
		},
		LookPath: func(name string) (string, error) {
			if h.onPath[name] {
				return "/usr/bin/" + name, nil
			}
			return "", errors.New("not found")
		},
		FindBundle: func() (*criu.Bundle, error) {
			if h.noBundle {
				return nil, criu.ErrNoBundle
			}
			return criu.OpenBundle(bundleDir)
		},
	}
	return opts, &calls
}

// fakeBundle lays out a bundle whose programs are empty executables.
func fakeBundle(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "criu")
	for _, f := range []string{"root/" + criu.LoaderPath, "root/usr/sbin/criu", "root/usr/bin/tar", "root/usr/bin/gzip",
		"root/usr/sbin/xtables-nft-multi", "root/usr/sbin/nft", "bin/criu"} {
		p := filepath.Join(dir, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "VERSION"), []byte("4.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func results(t *testing.T, h *host) (map[string]Result, bool, string) {
	t.Helper()
	opts, _ := h.build(t)
	byName := map[string]Result{}
	for _, r := range Check(context.Background(), opts) {
		byName[r.Check] = r
	}
	var out bytes.Buffer
	ok := Run(context.Background(), &out, opts)
	return byName, ok, out.String()
}

func TestHealthyHost(t *testing.T) {
	rs, ok, out := results(t, healthy())
	if !ok {
		t.Fatalf("healthy host not ok:\n%s", out)
	}
	for name, r := range rs {
		if r.Status != OK {
			t.Errorf("%s: %v", name, r)
		}
	}
	if len(rs) != len(checks) {
		t.Errorf("got %d results, want %d", len(rs), len(checks))
	}
	for _, want := range []string{
		"ok   criu: bundled CRIU 4.2.1",
		"ok   criu version: 4.2.1 (bundled) >= 4.2: on kernel >= 6.16 CRIU older than 4.2 cannot dump TCP/UDP sockets",
		"ok   criu check: Looks good (Dirty tracking is OFF. Memory snapshot will not work.)",
		"network lock: iptables-restore (bundled usr/sbin/xtables-nft-multi)",
		"ok   freezer: v2 cgroup.freeze",
		"ok   kdat cache: /run is tmpfs",
		"ok   lazy restore: userfaultfd available",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestChecks(t *testing.T) {
	tests := []struct {
		name   string
		change func(h *host)
		check  string
		status Status
		detail string // substring of Detail
		ok     bool   // overall verdict
	}{
		{"no capabilities", func(h *host) {
			h.files["/proc/self/status"] = "Uid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000000000000\nSeccomp:\t0\n"
		}, "privileges", Fail, "uid 1000, missing CAP_DAC_OVERRIDE", false},
		{"no CAP_SYS_RESOURCE", func(h *host) {
			h.files["/proc/self/status"] = "Uid:\t0\t0\t0\t0\nCapEff:\t" + noSysRes + "\nSeccomp:\t0\n"
		}, "privileges", Warn, "no CAP_SYS_RESOURCE", true},
		{"missing pid namespace", func(h *host) { delete(h.files, "/proc/self/ns/pid") },
			"namespaces", Fail, "missing pid namespace", false},
		{"no kernel config", func(h *host) { delete(h.files, "config.gz") },
			"kernel config", Warn, "no readable kernel config", true},
		{"boot config", func(h *host) {
			delete(h.files, "config.gz")
			h.files["/boot/config-6.18.44-fc-v595"] = goodConfig
		}, "kernel config", OK, "/boot/config-6.18.44-fc-v595", true},
		{"CHECKPOINT_RESTORE off", func(h *host) {
			h.files["config.gz"] = strings.Replace(goodConfig, "CONFIG_CHECKPOINT_RESTORE=y", "# CONFIG_CHECKPOINT_RESTORE is not set", 1)
		}, "kernel config", Fail, "CONFIG_CHECKPOINT_RESTORE not set", false},
		{"soft dirty off", func(h *host) {
			h.files["config.gz"] = strings.Replace(goodConfig, "CONFIG_MEM_SOFT_DIRTY=y", "", 1)
		}, "kernel config", Warn, "CONFIG_MEM_SOFT_DIRTY", true},
		{"hybrid cgroups", func(h *host) { h.files["/proc/self/mountinfo"] = mountsHybrid },
			"cgroups", OK, "hybrid", true},
		{"hybrid freezer", func(h *host) { h.files["/proc/self/mountinfo"] = mountsHybrid },
			"freezer", OK, "v1 freezer at /sys/fs/cgroup/freezer", true},
		{"v1 without freezer", func(h *host) { h.files["/proc/self/mountinfo"] = mountsV1NoFreezer },
			"freezer", Fail, "without the freezer", false},
		{"no cgroups", func(h *host) { h.files["/proc/self/mountinfo"] = "22 1 0:20 / / rw - ext4 /dev/vda rw\n" },
			"cgroups", Fail, "no cgroup", false},
		{"old CRIU on new kernel", func(h *host) { h.criuVersion = "Version: 4.1.1\n" },
			"criu version", Fail, "4.1.1 (bundled) is older than 4.2: on kernel >= 6.16 CRIU older than 4.2 cannot dump TCP/UDP sockets", false},
		{"old CRIU on old kernel", func(h *host) {
			h.criuVersion = "Version: 4.1\nGitID: v4.1\n"
			h.files["/proc/sys/kernel/osrelease"] = "6.1.0-18-amd64\n"
		}, "criu version", OK, "4.1 (bundled) >= 3.17", true},
		{"criu check fails", func(h *host) {
			h.checkOut = "Error (criu/cr-check.c:1): ptrace is blocked\n"
			h.checkErr = errors.New("exit status 1")
		}, "criu check", Fail, "ptrace is blocked", false},
		{"PATH criu", func(h *host) {
			h.noBundle = true
			h.onPath = map[string]bool{"criu": true, "tar": true, "gzip": true, "iptables-restore": true}
		}, "criu", OK, "/usr/bin/criu (PATH", true},
		{"no criu", func(h *host) { h.noBundle = true },
			"criu", Fail, "no criu on PATH", false},
		{"PATH tools without tar", func(h *host) {
			h.noBundle = true
			h.onPath = map[string]bool{"criu": true, "gzip": true, "nft": true}
		}, "tools", Fail, "missing tar", false},
		{"PATH tools nft only", func(h *host) {
			h.noBundle = true
			h.onPath = map[string]bool{"criu": true, "tar": true, "gzip": true, "nft": true}
		}, "tools", Warn, "nft (/usr/bin/nft) needs --network-lock nftables", true},
		{"no userfaultfd", func(h *host) { h.noUffd = true },
			"lazy restore", Warn, "userfaultfd (uffd-noncoop) unavailable", true},
		{"run not tmpfs", func(h *host) { h.files["/proc/self/mountinfo"] = mountsHybrid },
			"kdat cache", OK, "crwrap gives CRIU a private tmpfs", true},
		{"seccomp filter", func(h *host) {
			h.files["/proc/self/status"] = "Uid:\t0\t0\t0\t0\nCapEff:\t" + allCaps + "\nSeccomp:\t2\nSeccomp_filters:\t1\n"
		}, "seccomp", Warn, "a filter is on (1 filters)", true},
		{"apparmor profile", func(h *host) {
			h.files["/proc/self/attr/current"] = "cri-containerd.apparmor.d (enforce)\n"
		}, "lsm", Warn, "AppArmor profile cri-containerd.apparmor.d (enforce)", true},
		{"apparmor unconfined (new attr path)", func(h *host) {
			delete(h.files, "/proc/self/attr/current")
			h.files["/proc/self/attr/apparmor/current"] = "unconfined\n"
		}, "lsm", OK, "unconfined", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := healthy()
			tt.change(h)
			rs, ok, out := results(t, h)
			r := rs[tt.check]
			if r.Status != tt.status || !strings.Contains(r.Detail, tt.detail) {
				t.Errorf("%s = %v\nwant status %v and detail containing %q", tt.check, r, tt.status, tt.detail)
			}
			if r.Status != OK && r.Hint == "" {
				t.Errorf("%s: %v has no hint", tt.check, r)
			}
			if ok != tt.ok {
				t.Errorf("Run ok = %v, want %v:\n%s", ok, tt.ok, out)
			}
		})
	}
}

func TestCRIUPathOption(t *testing.T) {
	h := healthy()
	opts, calls := h.build(t)
	exe := filepath.Join(t.TempDir(), "criu")
	if err := os.WriteFile(exe, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	opts.CRIUPath = exe
	var out bytes.Buffer
	if !Run(context.Background(), &out, opts) {
		t.Fatalf("not ok:\n%s", out.String())
	}
	if !strings.Contains(out.String(), exe+" (cr.criu.path)") {
		t.Errorf("output:\n%s", out.String())
	}
	for _, c := range *calls {
		if c[0] != exe {
			t.Errorf("ran %q, want %s first", c, exe)
		}
	}
}

func TestBundleRunsThroughLoader(t *testing.T) {
	opts, calls := healthy().build(t)
	Check(context.Background(), opts)
	if len(*calls) == 0 {
		t.Fatal("CRIU never ran")
	}
	for _, c := range *calls {
		if !strings.HasSuffix(c[0], criu.LoaderPath) || c[1] != "--library-path" {
			t.Errorf("CRIU ran as %q, not through the bundle's loader", c)
		}
	}
}

func TestResultString(t *testing.T) {
	tests := []struct {
		r    Result
		want string
	}{
		{Result{Status: OK, Check: "kernel", Detail: "6.18", Hint: "ignored"}, "ok   kernel: 6.18"},
		{Result{Status: Warn, Check: "kdat cache", Detail: "no tmpfs", Hint: "mount one"}, "warn kdat cache: no tmpfs — hint: mount one"},
		{Result{Status: Fail, Check: "criu", Detail: "none", Hint: "build it"}, "FAIL criu: none — hint: build it"},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}
