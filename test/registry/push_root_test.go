package registry

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// The registry is down when the checkpoint is published: the checkpoint pod still publishes
// and stays up, logs and counts the failed push, and pushes once the registry is there.
func TestPushRetriedUntilRegistryIsUp(t *testing.T) {
	a := newTestApp(t, "-warmup", "200ms", "-heap", "8")
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	metrics := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	n := newNode(t)
	props := n.props(a, addr+"/team/app", "cr.checkpoint.exit=false", "cr.metrics.address="+metrics)
	p := harness.Start(t, harness.Options{Env: []string{"DOCKER_CONFIG=" + t.TempDir()}},
		append([]string{"checkpoint", "--config", props, "--"}, a.command()...)...)
	harness.WaitLog(t, p, "phase", "publish", 2*time.Minute)
	harness.WaitLog(t, p, "msg", "push failed (the local checkpoint is not affected); trying again", time.Minute)

	reg := startRegistry(t, registryOptions{listen: addr})
	push := harness.WaitLog(t, p, "msg", "push", 2*time.Minute) // the phase line of a push that worked
	if push.Str("digest") == "" {
		t.Errorf("push line without digest: %v", push)
	}
	if _, err := os.Stat(reg.blobFile(push.Str("digest"))); err != nil {
		t.Errorf("the pushed manifest is not in the registry's storage: %v", err)
	}
	body := harness.MustGet(t, "http://"+metrics, "/metrics")
	for _, want := range []string{
		`crwrap_registry_transfers_total{direction="push",result="ok"} 1`,
		`crwrap_registry_transfer_bytes_total{direction="push"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, `crwrap_registry_transfers_total{direction="push",result="error"} 0`) {
		t.Errorf("/metrics counts no failed push")
	}
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, time.Minute); code != 0 {
		t.Errorf("checkpoint pod exited %d after SIGTERM, want 0\nstderr:\n%s", code, p.Stderr)
	}
}

// With cr.checkpoint.exit and no registry: the checkpoint is published and crwrap exits 0
// after a few logged attempts.
func TestPushFailureDoesNotFailCheckpoint(t *testing.T) {
	a := newTestApp(t, "-warmup", "200ms", "-heap", "8")
	n := newNode(t)
	image := fmt.Sprintf("127.0.0.1:%d/team/app", harness.FreePort(t))
	p, code := harness.Run(t, harness.Options{Env: []string{"DOCKER_CONFIG=" + t.TempDir()}}, 3*time.Minute,
		append([]string{"checkpoint", "--config", n.props(a, image), "--"}, a.command()...)...)
	if code != 0 {
		t.Fatalf("checkpoint exited %d with the registry down, want 0\nstderr:\n%s", code, p.Stderr)
	}
	if harness.FindLog(p, "phase", "publish") == nil {
		t.Errorf("no phase=publish\nstderr:\n%s", p.Stderr)
	}
	if harness.FindLog(p, "msg", "push failed; giving up (the local checkpoint is not affected)") == nil {
		t.Errorf("no final push failure logged\nstderr:\n%s", p.Stderr)
	}
}

// A checkpoint pod that keeps the node's intact checkpoint (cr.checkpoint.refresh=auto: the
// app is not started again) still pushes it, e.g. to a registry that lost it.
func TestKeptCheckpointIsPushed(t *testing.T) {
	a := newTestApp(t, "-warmup", "200ms", "-heap", "8")
	n := newNode(t)
	first := startRegistry(t, registryOptions{})
	_, push := n.checkpoint(a, first.repo(), first.env())

	second := startRegistry(t, registryOptions{})
	p, code := harness.Run(t, harness.Options{Env: second.env()}, 3*time.Minute,
		append([]string{"checkpoint", "--config", n.props(a, second.repo()), "--"}, a.command()...)...)
	if code != 0 {
		t.Fatalf("second checkpoint run exited %d\nstderr:\n%s", code, p.Stderr)
	}
	if harness.FindLog(p, "phase", "keep") == nil || harness.FindLog(p, "phase", "dump") != nil {
		t.Fatalf("the second run did not keep the checkpoint\nstderr:\n%s", p.Stderr)
	}
	again := harness.FindLog(p, "msg", "push")
	if again == nil {
		t.Fatalf("the kept checkpoint was not pushed\nstderr:\n%s", p.Stderr)
	}
	if again.Str("digest") != push.Str("digest") {
		t.Errorf("the kept checkpoint pushed as %s, first pushed as %s: the image is not reproducible", again.Str("digest"), push.Str("digest"))
	}
}
