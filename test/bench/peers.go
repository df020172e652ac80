package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Peers (issue 11, item 1): raw runc and Podman checkpoint and restore the same app, in the
// same run, driving the same bundled CRIU (the snapshot's criu/bin goes first on their PATH:
// runc and Podman exec "criu" from PATH, and nothing else names it). The app runs in an
// equivalent bundle: the config.json `crwrap render` makes for it, with a non-recursive bind
// of "/" as its root (crwrap's root is an overlay on such a bind).
//
// Two changes are forced by this host, where root lacks CAP_SYS_RESOURCE: the rendered
// RLIMIT_NOFILE (1048576) is lowered to the bench's own limit for runc, and Podman gets
// --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 (its defaults, and even the host's own
// values, fail with "error setting rlimit type 6/7: operation not permitted").

// PeerNames are the peers the benchmark knows.
var PeerNames = []string{"runc", "podman"}

// peers drives the peer runtimes of one run.
type peers struct {
	b      *bench
	dir    string
	rootfs string            // bind of "/"
	env    []string          // PATH with the bundle's criu first
	bins   map[string]string // peer -> executable
	info   map[string]string // peer -> version, or why it does not run
	seq    int
}

// setupPeers prepares the peers named in names; a peer that cannot run is reported in info
// (and skipped), not fatal.
func (b *bench) setupPeers(names []string) (*peers, error) {
	ps := &peers{b: b, dir: filepath.Join(b.root, "peers"), bins: map[string]string{}, info: map[string]string{}}
	if len(names) == 0 {
		return ps, nil
	}
	ps.rootfs = filepath.Join(ps.dir, "rootfs")
	if err := os.MkdirAll(ps.rootfs, 0o755); err != nil {
		return nil, err
	}
	if err := unix.Mount("/", ps.rootfs, "", unix.MS_BIND, ""); err != nil {
		return nil, fmt.Errorf("bind / for the peers' root: %w", err)
	}
	if _, err := os.Stat(filepath.Join(ps.rootfs, b.app)); err != nil {
		ps.close()
		return nil, fmt.Errorf("the test app is not on the root filesystem (bench root on another mount?): %w", err)
	}
	bundleBin := filepath.Join(filepath.Dir(filepath.Dir(crwrapBin)), "criu", "bin")
	ps.env = append(withoutPath(os.Environ()), "PATH="+bundleBin+":"+os.Getenv("PATH"))
	for _, n := range names {
		bin, err := exec.LookPath(n)
		if err != nil {
			ps.info[n] = fmt.Sprintf("not run: %v (test/deps.sh installs it)", err)
			continue
		}
		out, err := exec.Command(bin, "--version").CombinedOutput()
		if err != nil {
			ps.info[n] = fmt.Sprintf("not run: %s --version: %v: %s", bin, err, firstLines(string(out), 1, 200))
			continue
		}
		ps.bins[n] = bin
		ps.info[n] = firstLines(strings.TrimSpace(string(out)), 1, 120)
	}
	return ps, nil
}

func withoutPath(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "PATH=") {
			out = append(out, kv)
		}
	}
	return out
}

func (ps *peers) close() {
	if ps.rootfs != "" {
		_ = unix.Unmount(ps.rootfs, unix.MNT_DETACH)
	}
}

// measure runs every available peer once for heap size mib: cold start, checkpoint, restore.
// A failed peer cycle is retried once and listed in the failures.
func (ps *peers) measure(mib int, s Samples) error {
	for _, n := range PeerNames {
		if _, ok := ps.bins[n]; !ok {
			continue
		}
		var err error
		for try := 1; try <= 2; try++ {
			ps.b.logf("%d MiB: peer %s: cold start, checkpoint, restore", mib, n)
			if n == "runc" {
				err = ps.runc(mib, s)
			} else {
				err = ps.podman(mib, s)
			}
			if err == nil {
				break
			}
			ps.b.failures = append(ps.b.failures, fmt.Sprintf("peer %s, %d MiB, try %d: %s", n, mib, try, firstLines(err.Error(), 2, 600)))
			ps.b.logf("peer %s failed (try %d): %v", n, try, err)
		}
		if err != nil {
			return fmt.Errorf("peer %s: %w", n, err)
		}
	}
	return nil
}

func (ps *peers) cmd(name string, args ...string) *exec.Cmd {
	c := exec.Command(ps.bins[name], args...)
	c.Env = ps.env
	return c
}

// run runs a peer command to its end; its combined output comes back with an error.
func (ps *peers) run(name string, args ...string) ([]byte, error) {
	out, err := ps.cmd(name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, firstLines(string(out), 4, 1500))
	}
	return out, nil
}

// pipes are the container's stdio: pipes, as a pod gives them (a file or /dev/null would
// be a mount CRIU cannot find). The child ends go to the runtime; the rest is drained.
type pipes struct {
	child  [3]*os.File
	parent [3]*os.File
}

func newPipes() (*pipes, error) {
	p := &pipes{}
	for i := range 3 {
		r, w, err := os.Pipe()
		if err != nil {
			p.close()
			return nil, err
		}
		if i == 0 {
			p.child[i], p.parent[i] = r, w
		} else {
			p.child[i], p.parent[i] = w, r
			go func(r *os.File) { _, _ = io.Copy(io.Discard, r) }(r)
		}
	}
	return p, nil
}

func (p *pipes) attach(c *exec.Cmd) { c.Stdin, c.Stdout, c.Stderr = p.child[0], p.child[1], p.child[2] }

func (p *pipes) closeChild() {
	for _, f := range p.child {
		if f != nil {
			f.Close()
		}
	}
}

func (p *pipes) close() {
	p.closeChild()
	for _, f := range p.parent {
		if f != nil {
			f.Close()
		}
	}
}

// runcBundle writes the OCI bundle of heap size mib: crwrap's rendered spec on the peers' root.
func (ps *peers) runcBundle(mib int) (string, error) {
	dir := filepath.Join(ps.dir, fmt.Sprintf("runc-m%d", mib))
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
		return dir, nil
	}
	props, err := ps.b.propsFor(mib)
	if err != nil {
		return "", err
	}
	out, err := exec.Command(crwrapBin, append([]string{"render", "--config", props, "--"}, ps.b.appArgs(mib)...)...).Output()
	if err != nil {
		return "", fmt.Errorf("crwrap render: %w", err)
	}
	var spec map[string]any
	if err := json.Unmarshal(out, &spec); err != nil {
		return "", fmt.Errorf("crwrap render: %w", err)
	}
	spec["root"] = map[string]any{"path": ps.rootfs, "readonly": false}
	if linux, ok := spec["linux"].(map[string]any); ok {
		delete(linux, "cgroupsPath") // runc then names the cgroup after each container
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return "", err
	}
	if proc, ok := spec["process"].(map[string]any); ok {
		proc["rlimits"] = []map[string]any{{"type": "RLIMIT_NOFILE", "hard": lim.Max, "soft": lim.Max}}
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
}

func (ps *peers) nextID(name string) string {
	ps.seq++
	return fmt.Sprintf("crwrap-bench-%d-%s-%d", os.Getpid(), name, ps.seq)
}

// runc: `runc run -d`, `runc checkpoint`, `runc restore -d` of the bundle.
func (ps *peers) runc(mib int, s Samples) error {
	bundle, err := ps.runcBundle(mib)
	if err != nil {
		return err
	}
	state := filepath.Join(ps.dir, "runc-state")
	images := filepath.Join(ps.dir, fmt.Sprintf("runc-images-m%d", mib))
	_ = os.RemoveAll(images)
	rc := func(args ...string) ([]byte, error) {
		return ps.run("runc", append([]string{"--root", state}, args...)...)
	}
	gone := func(id string) {
		_, _ = rc("kill", id, "KILL")
		_, _ = rc("delete", "--force", id)
	}
	start := func(id string, args ...string) (float64, *pipes, error) {
		stdio, err := newPipes()
		if err != nil {
			return 0, nil, err
		}
		// runc's own stderr is the container's: runc -d hands its stdio to the app.
		c := ps.cmd("runc", append([]string{"--root", state}, args...)...)
		stdio.attach(c)
		t0 := time.Now()
		err = c.Run()
		stdio.closeChild()
		if err != nil {
			stdio.close()
			gone(id)
			return 0, nil, fmt.Errorf("runc %s: %v", strings.Join(args, " "), err)
		}
		at, err := waitReady(ps.b.addr(), ps.b.cfg.Poll, ps.b.timeout(mib))
		if err != nil {
			stdio.close()
			gone(id)
			return 0, nil, fmt.Errorf("runc %s: %w", args[0], err)
		}
		return ms(at.Sub(t0)), stdio, nil
	}

	id := ps.nextID("runc")
	cold, stdio, err := start(id, "run", "-d", "--bundle", bundle, id)
	if err != nil {
		return err
	}
	work := filepath.Join(ps.dir, id+"-dump")
	t0 := time.Now()
	_, err = rc("checkpoint", "--image-path", images, "--work-path", work, id)
	ckpt := ms(time.Since(t0))
	gone(id)
	stdio.close()
	if err != nil {
		return err
	}
	if err := waitPortFree(ps.b.addr(), 10*time.Second); err != nil {
		return err
	}
	rid := ps.nextID("runc")
	rwork := filepath.Join(ps.dir, rid+"-restore")
	restore, rio, err := start(rid, "restore", "-d", "--image-path", images, "--work-path", rwork, "--bundle", bundle, rid)
	if err != nil {
		return err
	}
	gone(rid)
	rio.close()
	s.add("runc_cold_ms", cold)
	s.add("runc_ckpt_ms", ckpt)
	s.add("runc_restore_ms", restore)
	if st, err := dumpStats(work); err == nil {
		s.add("runc_criu_frozen_ms", float64(st.GetFrozenTime())/1000)
	}
	if st, err := restoreStats(rwork); err == nil {
		s.add("runc_criu_restore_ms", float64(st.GetRestoreTime())/1000)
	}
	_ = os.RemoveAll(work)
	_ = os.RemoveAll(rwork)
	return waitPortFree(ps.b.addr(), 10*time.Second)
}

// podmanStats is what `podman container checkpoint|restore --print-stats` prints.
type podmanStats struct {
	Checkpoint int64 `json:"podman_checkpoint_duration"` // µs
	Restore    int64 `json:"podman_restore_duration"`    // µs
	Containers []struct {
		CRIU struct {
			FrozenTime  int64 `json:"frozen_time"`
			RestoreTime int64 `json:"restore_time"`
		} `json:"criu_statistics"`
	} `json:"container_statistics"`
}

// podman: `podman run -d --rootfs`, `podman container checkpoint`, `podman container restore`,
// with its storage under the bench's directory (nothing of the machine's Podman is touched).
func (ps *peers) podman(mib int, s Samples) error {
	global := []string{"--root", filepath.Join(ps.dir, "podman-root"), "--runroot", filepath.Join(ps.dir, "podman-run")}
	pm := func(args ...string) ([]byte, error) { return ps.run("podman", append(global, args...)...) }
	name := ps.nextID("podman")
	defer func() { _, _ = pm("rm", "--force", "--time", "0", name) }()

	runArgs := append([]string{"run", "-d", "--name", name, "--network", "host",
		"--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096", "--rootfs", ps.rootfs}, ps.b.appArgs(mib)...)
	t0 := time.Now()
	if _, err := pm(runArgs...); err != nil {
		return err
	}
	at, err := waitReady(ps.b.addr(), ps.b.cfg.Poll, ps.b.timeout(mib))
	if err != nil {
		return fmt.Errorf("podman run: %w", err)
	}
	cold := ms(at.Sub(t0))

	t0 = time.Now()
	out, err := pm("container", "checkpoint", "--print-stats", name)
	ckpt := ms(time.Since(t0))
	if err != nil {
		return err
	}
	var cst podmanStats
	_ = json.Unmarshal(out, &cst)
	if err := waitPortFree(ps.b.addr(), 10*time.Second); err != nil {
		return err
	}

	t0 = time.Now()
	out, err = pm("container", "restore", "--print-stats", name)
	if err != nil {
		return err
	}
	at, err = waitReady(ps.b.addr(), ps.b.cfg.Poll, 30*time.Second)
	if err != nil {
		return fmt.Errorf("podman container restore: %w", err)
	}
	restore := ms(at.Sub(t0))
	var rst podmanStats
	_ = json.Unmarshal(out, &rst)
	if _, err := pm("rm", "--force", "--time", "0", name); err != nil {
		return err
	}
	s.add("podman_cold_ms", cold)
	s.add("podman_ckpt_ms", ckpt)
	s.add("podman_restore_ms", restore)
	if len(cst.Containers) == 1 {
		s.add("podman_criu_frozen_ms", float64(cst.Containers[0].CRIU.FrozenTime)/1000)
	}
	if len(rst.Containers) == 1 {
		s.add("podman_criu_restore_ms", float64(rst.Containers[0].CRIU.RestoreTime)/1000)
	}
	return waitPortFree(ps.b.addr(), 10*time.Second)
}

// waitReady polls http://addr/ready every interval until it answers 2xx.
func waitReady(addr string, interval, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		if probe(addr) {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s not ready after %v", addr, timeout)
		}
		time.Sleep(interval)
	}
}

// waitPortFree waits until nothing listens on addr any more (the last app is gone).
func waitPortFree(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return nil
		}
		c.Close()
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still answers %v after its container was removed", addr, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// parsePeers parses the -peers flag ("runc,podman", "" for none).
func parsePeers(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		known := false
		for _, n := range PeerNames {
			known = known || n == f
		}
		if !known {
			return nil, fmt.Errorf("unknown peer %q (known: %s)", f, strings.Join(PeerNames, ", "))
		}
		out = append(out, f)
	}
	return out, nil
}

// ratio formats a/b as "0.42x"; "-" when either is missing.
func ratio(m map[string]float64, a, b string) string {
	x, ok1 := m[a]
	y, ok2 := m[b]
	if !ok1 || !ok2 || x <= 0 || y <= 0 {
		return "-"
	}
	return strconv.FormatFloat(x/y, 'f', 2, 64) + "x"
}
