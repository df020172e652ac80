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
