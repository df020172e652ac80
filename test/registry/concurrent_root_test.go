package registry

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// bridgedNetNS makes n network namespaces (as pods of one node) joined by a bridge to the
// test's own, and returns them with the bridge's address in the test's namespace, where a
// registry can listen for all of them.
func bridgedNetNS(t *testing.T, n int) ([]string, string) {
	t.Helper()
	id := fmt.Sprintf("%d%03d", os.Getpid()%10000, rand.IntN(1000))
	br := "crbr" + id
	subnet := fmt.Sprintf("10.213.%d", 1+rand.IntN(250))
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("link", "add", br, "type", "bridge")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", br).Run() })
	run("addr", "add", subnet+".1/24", "dev", br)
	run("link", "set", br, "up")
	nss := make([]string, n)
	for i := range nss {
		nss[i] = harness.NetNS(t)
		host := fmt.Sprintf("crv%s%d", id, i)
		run("link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", nss[i])
		run("link", "set", host, "master", br, "up")
		run("-n", nss[i], "addr", "add", fmt.Sprintf("%s.%d/24", subnet, 10+i), "dev", "eth0")
		run("-n", nss[i], "link", "set", "eth0", "up")
	}
	return nss, subnet + ".1"
}

// Four restores start at once on an empty node, each in its own network namespace: the node
// pulls once (one GET of the page image, one cache miss, the others wait for it), and every
// app is restored with the checkpointed memory.
func TestConcurrentRestoresPullOnce(t *testing.T) {
	const n = 4
	a := newTestApp(t, "-warmup", "200ms", "-heap", "32")
	nss, ip := bridgedNetNS(t, n)
	reg := startRegistry(t, registryOptions{listen: fmt.Sprintf("%s:%d", ip, harness.FreePort(t))})
	want, push := newNode(t).checkpoint(a, reg.repo(), reg.env())
	pages := pagesBlob(t, reg, push.Str("image"))

	c := newNode(t)
	props := c.props(a, reg.repo())
	procs := make([]*harness.Proc, n)
	for i := range procs {
		procs[i] = harness.StartInNetNS(t, nss[i], harness.Options{Env: reg.env()},
			append([]string{"restore", "--config", props, "--"}, a.command()...)...)
	}
	var wg sync.WaitGroup
	values := make([]string, n)
	errs := make([]string, n)
	for i := range procs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := netnsGet(nss[i], procs[i], a.url("/ready"), 2*time.Minute); err != "" {
				errs[i] = err
				return
			}
			values[i], errs[i] = netnsGet(nss[i], procs[i], a.url("/value"), 10*time.Second)
		}(i)
	}
	wg.Wait()
	caches := map[string]int{}
	for i, p := range procs {
		if errs[i] != "" {
			t.Errorf("restore %d: %s\nstderr:\n%s", i, errs[i], p.Stderr)
			continue
		}
		harness.WaitLog(t, p, "phase", "ready", time.Minute)
		harness.AssertRestored(t, p)
		if values[i] != want {
			t.Errorf("restore %d: /value = %q, want the checkpointed %q", i, values[i], want)
		}
		if e := harness.FindLog(p, "phase", "pull"); e != nil {
			caches[e.Str("cache")]++
		}
	}
	t.Logf("cache results of %d restores: %v", n, caches)
	if caches["miss"] != 1 || caches["miss"]+caches["waited"]+caches["hit"] != n {
		t.Errorf("cache results %v, want exactly one miss (one pull) and the others waited or hit", caches)
	}
	if got := reg.blobGets(pages); got != 1 {
		t.Errorf("the registry served the pages blob %d times to %d restores on one node, want once", got, n)
	}
	if entries := c.cacheEntries(); len(entries) != 1 {
		t.Errorf("cache entries %v, want one", entries)
	}
	for _, p := range procs {
		harness.Stop(t, p)
	}
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
