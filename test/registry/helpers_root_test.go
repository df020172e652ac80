package registry

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// prerequisite fails in CI or as root (where everything must be in place), else skips.
func prerequisite(t *testing.T, format string, a ...any) {
	t.Helper()
	msg := "prerequisite missing: " + fmt.Sprintf(format, a...)
	if os.Getenv("CI") != "" || os.Geteuid() == 0 {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// testRegistry is a docker-registry process with its own storage.
type testRegistry struct {
	t       *testing.T
	addr    string // host:port clients use
	storage string
	cmd     *exec.Cmd
	log     *harness.Buffer
	done    chan struct{}
	// caFile and dockerConfig are set with TLS and auth: what crwrap needs to talk to it.
	caFile, dockerConfig string
}

type registryOptions struct {
	tls, auth bool
	// listen is the address to listen on (default 127.0.0.1 and a free port).
	listen string
}

func startRegistry(t *testing.T, o registryOptions) *testRegistry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		prerequisite(t, "docker-registry (test/deps.sh installs it): %v", err)
	}
	dir := t.TempDir()
	r := &testRegistry{t: t, storage: filepath.Join(dir, "storage"), log: &harness.Buffer{}, done: make(chan struct{})}
	listen := o.listen
	if listen == "" {
		listen = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	}
	r.addr = listen
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
`, r.storage, listen)
	if o.tls {
		host, _, _ := strings.Cut(listen, ":")
		cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		out, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
			"-subj", "/CN=crwrap-test-registry", "-addext", "subjectAltName=IP:"+host, "-days", "1",
			"-keyout", key, "-out", cert).CombinedOutput()
		if err != nil {
			prerequisite(t, "openssl: %v: %s", err, out)
		}
		cfg += fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", cert, key)
		r.caFile = cert
	}
	if o.auth {
		pw := filepath.Join(dir, "htpasswd")
		out, err := exec.Command("htpasswd", "-Bbc", pw, "crwrap", "s3cret-pass").CombinedOutput()
		if err != nil {
			prerequisite(t, "htpasswd (apache2-utils): %v: %s", err, out)
		}
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: crwrap-test\n    path: %s\n", pw)
		r.dockerConfig = filepath.Join(dir, "docker")
		auth := base64.StdEncoding.EncodeToString([]byte("crwrap:s3cret-pass"))
		b, _ := json.Marshal(map[string]any{"auths": map[string]any{listen: map[string]string{"auth": auth}}})
		if err := os.MkdirAll(r.dockerConfig, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(r.dockerConfig, "config.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	r.cmd = exec.Command(bin, "serve", cfgPath)
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(r.kill)
	r.waitUp()
	return r
}

func (r *testRegistry) scheme() string {
	if r.caFile != "" {
		return "https"
	}
	return "http"
}

func (r *testRegistry) waitUp() {
	r.t.Helper()
	c := &http.Client{Timeout: time.Second}
	if r.caFile != "" {
		pool := x509.NewCertPool()
		b, _ := os.ReadFile(r.caFile)
		pool.AppendCertsFromPEM(b)
		c.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := c.Get(r.scheme() + "://" + r.addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 || resp.StatusCode == 401 {
				return
			}
		}
		select {
		case <-r.done:
			r.t.Fatalf("docker-registry exited:\n%s", r.log)
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("docker-registry not up after 20 s (%v):\n%s", err, r.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *testRegistry) kill() {
	if r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		<-r.done
	}
}

// repo is the test repository in this registry.
func (r *testRegistry) repo() string { return r.addr + "/team/app" }

// env is what crwrap needs to reach this registry: the CA and the Docker config.
func (r *testRegistry) env() []string {
	var env []string
	if r.caFile != "" {
		env = append(env, "SSL_CERT_FILE="+r.caFile)
	}
	if r.dockerConfig != "" {
		env = append(env, "DOCKER_CONFIG="+r.dockerConfig)
	} else {
		env = append(env, "DOCKER_CONFIG="+r.t.TempDir()) // none: never the test user's own
	}
	return env
}

// blobGets counts the successful GETs of blob digest in the registry's access log.
func (r *testRegistry) blobGets(digest string) int {
	n := 0
	for _, l := range strings.Split(r.log.String(), "\n") {
		if strings.Contains(l, `"GET /v2/team/app/blobs/`+digest+` `) && strings.Contains(l, `" 200 `) {
			n++
		}
	}
	return n
}

// blobFile is where the registry's filesystem storage keeps blob digest.
func (r *testRegistry) blobFile(digest string) string {
	hex := strings.TrimPrefix(digest, "sha256:")
	return filepath.Join(r.storage, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
}

// testApp is one app command line (part of the checkpoint's identity: the same on every node).
type testApp struct {
	t     *testing.T
	bin   string
	port  int
	flags []string
	out   string
}

func newTestApp(t *testing.T, flags ...string) *testApp {
	t.Helper()
	harness.Require(t)
	return &testApp{t: t, bin: harness.TestApp(t), port: harness.FreePort(t), flags: flags, out: t.TempDir()}
}

func (a *testApp) addr() string           { return fmt.Sprintf("127.0.0.1:%d", a.port) }
func (a *testApp) url(path string) string { return "http://" + a.addr() + path }
func (a *testApp) command() []string {
	return append([]string{a.bin, "serve", a.addr()}, a.flags...)
}

// node is a node's hostPath (checkpoint root) and its registry cache directory.
type node struct {
	t     *testing.T
	root  string
	cache string
}

func newNode(t *testing.T) *node {
	d := t.TempDir()
	return &node{t: t, root: filepath.Join(d, "cr"), cache: filepath.Join(d, "cache")}
}

// props writes a properties file for app a on node n with registry image; extra "key=value"
// lines are appended (a later line wins).
func (n *node) props(a *testApp, image string, extra ...string) string {
	n.t.Helper()
	lines := []string{
		"cr.checkpoint.name=app",
		"cr.checkpoint.directory=apps",
		"cr.checkpoint.root=" + n.root,
		"cr.checkpoint.cache=" + n.cache,
		"cr.checkpoint.image=" + image,
		"cr.container.readiness=" + a.url("/ready"),
		"cr.checkpoint.exit=true",
		"cr.readiness.timeout=30s",
		"cr.log.format=json",
		"cr.checkpoint.pull-timeout=30s",
		fmt.Sprintf("cr.checkpoint.warmup=curl -sf --max-time 5 -o %s %s && curl -sf --max-time 5 -o /dev/null %s",
			filepath.Join(a.out, "value"), a.url("/value"), a.url("/counter")),
	}
	return harness.WriteProps(n.t, append(lines, extra...)...)
}

// checkpoint checkpoints a on n and pushes to image; it returns the value the app had and
// the push log entry.
func (n *node) checkpoint(a *testApp, image string, env []string, extra ...string) (string, harness.LogEntry) {
	n.t.Helper()
	p, code := harness.Run(n.t, harness.Options{Env: env}, 3*time.Minute, append([]string{"checkpoint", "--config", n.props(a, image, extra...), "--"}, a.command()...)...)
	if code != 0 {
		n.t.Fatalf("checkpoint exited %d\nstderr:\n%s", code, p.Stderr)
	}
	push := harness.FindLog(p, "msg", "push")
	if push == nil {
		n.t.Fatalf("checkpoint: no phase=push in the log\nstderr:\n%s", p.Stderr)
	}
	b, err := os.ReadFile(filepath.Join(a.out, "value"))
	if err != nil || len(b) == 0 {
		n.t.Fatalf("the warm-up did not record /value: %v", err)
	}
	return string(b), push
}

// restore starts a restore of a on n (serving until stopped).
func (n *node) restore(a *testApp, image string, opts harness.Options, extra ...string) *harness.Proc {
	n.t.Helper()
	return harness.Start(n.t, opts, append([]string{"restore", "--config", n.props(a, image, extra...), "--"}, a.command()...)...)
}

// restoreReady restores and waits until the app is ready (restored or cold).
func (n *node) restoreReady(a *testApp, image string, env []string, extra ...string) *harness.Proc {
	n.t.Helper()
	p := n.restore(a, image, harness.Options{Env: env}, extra...)
	harness.WaitHTTP(n.t, p, a.url("/ready"), 2*time.Minute)
	harness.WaitLog(n.t, p, "phase", "ready", time.Minute)
	return p
}

// cacheLeftovers lists what in the cache is neither a complete entry, a lock nor a ref.
func (n *node) cacheLeftovers() []string {
	var bad []string
	entries, _ := os.ReadDir(filepath.Join(n.cache, "sha256"))
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".lock") {
			continue
		}
		if strings.HasPrefix(name, ".") || !e.IsDir() {
			bad = append(bad, name)
		}
	}
	return bad
}

// cacheEntries lists the complete entries in the cache.
func (n *node) cacheEntries() []string {
	var out []string
	entries, _ := os.ReadDir(filepath.Join(n.cache, "sha256"))
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

// pagesBlob returns the digest of the biggest layer of the image (the app's page image).
func pagesBlob(t *testing.T, r *testRegistry, ref string) string {
	t.Helper()
	m := manifestOf(t, r, ref)
	best, size := "", int64(-1)
	for _, l := range m.Layers {
		if l.Size > size && strings.Contains(l.Annotations["org.opencontainers.image.title"], "pages-") {
			best, size = l.Digest, l.Size
		}
	}
	if best == "" {
		t.Fatalf("no pages layer in %s: %+v", ref, m)
	}
	return best
}

type ociManifest struct {
	Layers []struct {
		Digest      string            `json:"digest"`
		Size        int64             `json:"size"`
		Annotations map[string]string `json:"annotations"`
	} `json:"layers"`
	Annotations map[string]string `json:"annotations"`
}

// manifestOf reads the manifest of ref (repo:tag or repo@digest) straight from the storage
// directory's link files, so the access log only shows crwrap's requests.
func manifestOf(t *testing.T, r *testRegistry, ref string) ociManifest {
	t.Helper()
	var digest string
	if _, d, ok := strings.Cut(ref, "@"); ok {
		digest = d
	} else {
		tag := ref[strings.LastIndex(ref, ":")+1:]
		b, err := os.ReadFile(filepath.Join(r.storage, "docker", "registry", "v2", "repositories", "team", "app", "_manifests", "tags", tag, "current", "link"))
		if err != nil {
			t.Fatalf("tag %s in the registry storage: %v", tag, err)
		}
		digest = strings.TrimSpace(string(b))
	}
	b, err := os.ReadFile(r.blobFile(digest))
	if err != nil {
		t.Fatal(err)
	}
	var m ociManifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
