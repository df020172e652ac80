package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// benchRegistry is a docker-registry on loopback with its own storage, for the fresh-node runs.
type benchRegistry struct {
	addr string
	cmd  *exec.Cmd
	log  strings.Builder
}

func startBenchRegistry(dir string) (*benchRegistry, error) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return nil, fmt.Errorf("docker-registry (test/deps.sh installs it): %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	r := &benchRegistry{addr: fmt.Sprintf("127.0.0.1:%d", port)}
	cfg := filepath.Join(dir, "registry.yml")
	conf := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n",
		filepath.Join(dir, "registry"), r.addr)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	r.cmd = exec.Command(bin, "serve", cfg)
	r.cmd.Stdout, r.cmd.Stderr = &r.log, &r.log
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := http.Get("http://" + r.addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			return r, nil
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("docker-registry not up: %v\n%s", err, r.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *benchRegistry) stop() {
	if r != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	}
}

// fromRegistry pushes the mib checkpoint to the loopback registry (crwrap push, timed), then
// measures a fresh node — empty checkpoint root and cache — pulling and restoring it
// (cr.checkpoint.image), the same node's next restore from its cache, and the floor for moving
// the bytes: crane's library pulling the image into a tarball written to /dev/null.
func (b *bench) fromRegistry(mib int, s Samples) error {
	if b.reg == nil {
		r, err := startBenchRegistry(b.root)
		if err != nil {
			return err
		}
		b.reg = r
	}
	repo := b.reg.addr + "/bench/app"
	t := time.Now()
	out, err := exec.Command(crwrapBin, "push", filepath.Join(b.root, "cr", "bench", b.name(mib)), repo).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("crwrap push: %v: %s", err, ee.Stderr)
		}
		return fmt.Errorf("crwrap push: %v", err)
	}
	s.add("push_ms", ms(time.Since(t)))
	ref := strings.TrimSpace(string(out))

	node, err := os.MkdirTemp(b.root, "node-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(node)
	args, err := b.crwrapArgs("restore", mib)
	if err != nil {
		return err
	}
	args = append([]string{args[0], "--set", "cr.checkpoint.image=" + repo, "--set", "cr.checkpoint.root=" + filepath.Join(node, "cr"),
		"--set", "cr.checkpoint.cache=" + filepath.Join(node, "cache")}, args[1:]...)
	for _, run := range []string{"registry_restore", "registry_cached_restore"} {
		p, _, outside, err := b.startReady(mib, "summary", args)
		if err != nil {
			return err
		}
		pull, _ := p.phase("pull")
		want := map[string]string{"registry_restore": "miss", "registry_cached_restore": "hit"}[run]
		if got := pull.str("cache"); got != want {
			p.stop(30 * time.Second)
			return fmt.Errorf("%s: cache=%q, want %s\n%s", run, got, want, p.tail())
		}
		s.add(run+"_ms", outside)
		s.add(run+"_pull_ms", p.phaseMS("pull"))
		s.add(run+"_restore_phase_ms", p.phaseMS("restore"))
		if code := p.stop(30 * time.Second); code != 0 {
			return fmt.Errorf("crwrap restore exited %d after SIGTERM\n%s", code, p.tail())
		}
	}

	if err := b.lazyFromRegistry(mib, s, repo); err != nil {
		return err
	}

	r, err := name.ParseReference(ref)
	if err != nil {
		return fmt.Errorf("pushed reference %q: %w", ref, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t = time.Now()
	img, err := crane.Pull(ref, crane.WithContext(ctx))
	if err == nil {
		err = tarball.Write(r, img, io.Discard)
	}
	if err != nil {
		return fmt.Errorf("crane pull %s: %w", ref, err)
	}
	s.add("crane_pull_ms", ms(time.Since(t)))
	return nil
}

// lazyFromRegistry measures another fresh node restoring the pushed checkpoint with pages on
// demand (cr.restore.fetch=lazy): time-to-ready, its pull phase (small files only), and when
// everything was in (the background fetch verified and published into the node cache, and
// CRIU's lazy-pages daemon had copied all memory).
func (b *bench) lazyFromRegistry(mib int, s Samples, repo string) error {
	node, err := os.MkdirTemp(b.root, "node-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(node)
	args, err := b.crwrapArgs("restore", mib)
	if err != nil {
		return err
	}
	args = append([]string{args[0], "--set", "cr.checkpoint.image=" + repo, "--set", "cr.checkpoint.root=" + filepath.Join(node, "cr"),
		"--set", "cr.checkpoint.cache=" + filepath.Join(node, "cache"), "--set", "cr.restore.fetch=lazy"}, args[1:]...)
	p, _, outside, err := b.startReady(mib, "summary", args)
	if err != nil {
		return err
	}
	defer p.stop(30 * time.Second)
	pull, _ := p.phase("pull")
	if pull.str("fetch") != "lazy" || pull.str("cache") != "miss" {
		return fmt.Errorf("lazy fresh node: phase=pull fetch=%q cache=%q, want lazy, miss\n%s", pull.str("fetch"), pull.str("cache"), p.tail())
	}
	s.add("registry_lazy_restore_ms", outside)
	s.add("registry_lazy_pull_ms", p.phaseMS("pull"))
	s.add("registry_lazy_restore_phase_ms", p.phaseMS("restore"))
	fetch, err := p.waitPhase("fetch", 5*time.Minute)
	if err != nil {
		return err
	}
	if fetch.str("level") != "info" {
		return fmt.Errorf("lazy fresh node: background fetch failed: %v\n%s", fetch.Fields, p.tail())
	}
	s.add("registry_lazy_fetch_ms", p.phaseMS("fetch"))
	if n, ok := fetch.num("demand_chunks"); ok {
		s.add("registry_lazy_demand_chunks", n)
	}
	if _, err := p.waitPhase("lazy-pages", 5*time.Minute); err != nil {
		return err
	}
	// The daemon starts at the restore phase; its duration is counted from there.
	s.add("registry_lazy_memory_in_ms", p.phaseMS("pull")+p.phaseMS("lazy-pages"))
	if code := p.stop(30 * time.Second); code != 0 {
		return fmt.Errorf("crwrap restore (lazy fetch) exited %d after SIGTERM\n%s", code, p.tail())
	}
	return nil
}

// reportLazy prints the fresh-node restores with pages on demand beside the full pull and
// the local lazy restore of the same run.
func reportLazy(w io.Writer, r *Results) {
	fmt.Fprintln(w, "A fresh node with pages on demand (cr.restore.fetch=lazy) vs the full pull and a local restore, same run (ms)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "M MiB\tlazy fresh node\t= pull phase\t+ restore phase\tfull-pull fresh node\tlocal restore\tlazy/local\tcold/lazy\tall in cache\tmemory in\tdemand chunks\tcrane pull\t")
	for _, s := range r.Sizes {
		ratio, cold := "-", "-"
		if s.Med["restore_ms"] > 0 && s.Med["registry_lazy_restore_ms"] > 0 {
			ratio = fmt.Sprintf("%.2fx", s.Med["registry_lazy_restore_ms"]/s.Med["restore_ms"])
			cold = fmt.Sprintf("%.1f", s.Med["cold_ms"]/s.Med["registry_lazy_restore_ms"])
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.MiB,
			get(s.Med, "registry_lazy_restore_ms"), get(s.Med, "registry_lazy_pull_ms"), get(s.Med, "registry_lazy_restore_phase_ms"),
			get(s.Med, "registry_restore_ms"), get(s.Med, "restore_ms"), ratio, cold,
			get(s.Med, "registry_lazy_fetch_ms"), get(s.Med, "registry_lazy_memory_in_ms"), get(s.Med, "registry_lazy_demand_chunks"), get(s.Med, "crane_pull_ms"))
	}
	tw.Flush()
	fmt.Fprintln(w, "  lazy fresh node = outside time-to-ready on an empty node: resolve, fetch the small files, restore through the FUSE view (page reads wait for verified chunks);")
	fmt.Fprintln(w, "  all in cache = pull start until the background fetch had every chunk, checked every file's sha256 and published the node-cache entry;")
	fmt.Fprintln(w, "  memory in = pull phase + CRIU's lazy-pages daemon run (until it had copied all memory); demand chunks = 1 MiB chunks fetched because a read waited for them")
	fmt.Fprintln(w)
}
