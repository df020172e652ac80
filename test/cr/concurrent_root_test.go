package cr

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// Four restores of one checkpoint at the same time, each crwrap in its own network namespace
// (as pods on one node): all ready with the checkpointed value; the checkpoint unchanged.
func TestConcurrentRestoresInOwnNetNS(t *testing.T) {
	const n = 4
	a := newTestApp(t, "-warmup", "300ms", "-heap", "16")
	want := a.mustCheckpoint()
	before := snapshot(t, a.root)

	nss := make([]string, n)
	for i := range nss {
		nss[i] = harness.NetNS(t)
	}
	props := a.props()
	procs := make([]*harness.Proc, n)
	for i := range procs {
		procs[i] = harness.StartInNetNS(t, nss[i], harness.Options{}, a.args("restore", props)...)
	}
	var wg sync.WaitGroup
	values := make([]string, n)
	errs := make([]string, n)
	for i := range procs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := netnsGet(nss[i], procs[i], a.url("/ready"), time.Minute); err != "" {
				errs[i] = err
				return
			}
			v, err := netnsGet(nss[i], procs[i], a.url("/value"), 10*time.Second)
			values[i], errs[i] = v, err
		}(i)
	}
	wg.Wait()
	for i := range procs {
		if errs[i] != "" {
			t.Errorf("restore %d (netns %s): %s\nstderr:\n%s", i, nss[i], errs[i], procs[i].Stderr)
			continue
		}
		harness.WaitLog(t, procs[i], "phase", "ready", time.Minute)
		harness.AssertRestored(t, procs[i])
		if values[i] != want {
			t.Errorf("restore %d (netns %s): /value = %q, want the checkpointed %q", i, nss[i], values[i], want)
		}
	}
	if _, err := harness.Get(a.url("/ready")); err == nil {
		t.Errorf("%s answers in the test's own network namespace: a restore is not in its own", a.addr())
	}
	for _, p := range procs {
		harness.Stop(t, p)
	}
	sameSnapshot(t, "the checkpoint root after 4 concurrent restores", before, snapshot(t, a.root))
}

// netnsGet fetches url with curl inside network namespace ns, retrying until it answers 2xx,
// p exits or timeout passes; it returns the body or what went wrong.
func netnsGet(ns string, p *harness.Proc, url string, timeout time.Duration) (string, string) {
	deadline := time.Now().Add(timeout)
	for {
		out, err := harness.InNetNS(ns, "curl", "-sS", "-f", "--max-time", "2", url)
		if err == nil {
			return out, ""
		}
		select {
		case <-p.Done():
			return "", "crwrap exited before " + url + " answered: " + strings.TrimSpace(out)
		default:
		}
		if time.Now().After(deadline) {
			return "", url + " did not answer in " + timeout.String() + ": " + strings.TrimSpace(out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
