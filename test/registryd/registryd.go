// Package registryd starts a real OCI registry for tests: Debian's docker-registry (CNCF
// distribution 2.8) on loopback, with its own config file, storage directory, port and log.
//
// It serves plain HTTP, or (Options.TLS) HTTPS with a fresh self-signed certificate for
// 127.0.0.1 and localhost, optionally (Options.Auth) behind htpasswd basic auth, in which case
// Registry.DockerConfig is a directory holding a Docker config.json with the credentials, the
// way a kubernetes.io/dockerconfigjson Secret is mounted in a pod (point DOCKER_CONFIG at it).
//
// A test that needs the registry FAILS when CI=true and docker-registry is missing (test/deps.sh
// installs it) and skips only on a developer's machine without it.
package registryd

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"
)

// Binary is the registry program (Debian package docker-registry).
const Binary = "docker-registry"

// Options choose how the registry serves.
type Options struct {
	// TLS serves HTTPS with a self-signed certificate for 127.0.0.1 and localhost.
	TLS bool
	// Auth requires htpasswd basic auth with a generated user and password; it implies TLS.
	Auth bool
	// StorageDir is the registry's storage root; empty means a new directory under
	// t.TempDir(). Pass a previous registry's StorageDir to serve the same content again.
	StorageDir string
}

// Registry is a running docker-registry process. It is stopped when the test ends.
type Registry struct {
	// Host is host:port as references name the registry ("127.0.0.1:PORT").
	Host string
	// StorageDir is the filesystem storage root; blobs live under docker/registry/v2/blobs.
	StorageDir string
	// CACert is the PEM file of the server certificate, which is its own CA (TLS only).
	CACert string
	// CertDir holds CACert as ca.crt, as containers/image tools want it
	// (skopeo --src-cert-dir/--dest-cert-dir) (TLS only).
	CertDir string
	// User and Password are the htpasswd credentials (Auth only).
	User, Password string
	// DockerConfig is a directory with a config.json holding User/Password for Host
	// (Auth only); set DOCKER_CONFIG to it.
	DockerConfig string

	t      testing.TB
	config string
	tls    bool
	mu     sync.Mutex
	log    strings.Builder
	cmd    *exec.Cmd
	done   chan struct{}
}

// Require fails (on CI) or skips (elsewhere) the test when docker-registry is not installed.
func Require(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath(Binary); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (test/deps.sh installs it): %v", Binary, err)
		}
		t.Skipf("%s is not installed (test/deps.sh installs it)", Binary)
	}
}

// Start runs a registry configured by opts and waits until it answers /v2/.
func Start(t testing.TB, opts Options) *Registry {
	t.Helper()
	Require(t)
	dir := t.TempDir()
	r := &Registry{t: t, StorageDir: opts.StorageDir, tls: opts.TLS || opts.Auth}
	if r.StorageDir == "" {
		r.StorageDir = filepath.Join(dir, "storage")
	}
	if err := os.MkdirAll(r.StorageDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{
		"version": "0.1",
		"log": map[string]any{
			"level":     "info",
			"formatter": "text",
			"accesslog": map[string]any{"disabled": false},
		},
		"storage": map[string]any{
			"filesystem": map[string]any{"rootdirectory": r.StorageDir},
			"delete":     map[string]any{"enabled": true},
			"maintenance": map[string]any{
				"uploadpurging": map[string]any{"enabled": false},
			},
		},
		"health": map[string]any{"storagedriver": map[string]any{"enabled": false}},
	}
	httpCfg := map[string]any{"secret": randomString(t, 16)}
	if r.tls {
		r.CertDir = filepath.Join(dir, "certs")
		r.CACert = filepath.Join(r.CertDir, "ca.crt")
		key := filepath.Join(dir, "server.key")
		writeSelfSigned(t, r.CACert, key)
		httpCfg["tls"] = map[string]any{"certificate": r.CACert, "key": key}
	}
	cfg["http"] = httpCfg
	if opts.Auth {
		r.User, r.Password = "crwrap", randomString(t, 12)
		hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost) // the registry checks it on every request
		if err != nil {
			t.Fatal(err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		writeFile(t, htpasswd, []byte(r.User+":"+string(hash)+"\n"))
		cfg["auth"] = map[string]any{"htpasswd": map[string]any{"realm": "crwrap-test", "path": htpasswd}}
		r.DockerConfig = filepath.Join(dir, "docker")
	}
	r.config = filepath.Join(dir, "config.yml")

	// The port is free when chosen but may be taken before the registry binds it (the
	// machine is shared): then choose again.
	t.Cleanup(r.Stop)
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		r.Host = fmt.Sprintf("127.0.0.1:%d", port)
		httpCfg["addr"] = r.Host
		if r.DockerConfig != "" {
			auth := base64.StdEncoding.EncodeToString([]byte(r.User + ":" + r.Password))
			dc, _ := json.Marshal(map[string]any{"auths": map[string]any{r.Host: map[string]string{"auth": auth}}})
			writeFile(t, filepath.Join(r.DockerConfig, "config.json"), dc)
		}
		// YAML is a superset of JSON: the registry reads this file as its YAML config.
		b, _ := json.MarshalIndent(cfg, "", "  ")
		writeFile(t, r.config, b)
		logged := len(r.Log())
		err = r.start()
		if err == nil {
			return r
		}
		if !strings.Contains(r.Log()[logged:], "address already in use") || attempt == 5 {
			t.Fatal(err)
		}
	}
}

// start runs the registry process over r.config and waits for /v2/.
func (r *Registry) start() error {
	cmd := exec.Command(Binary, "serve", r.config)
	cmd.Stdout, cmd.Stderr = (*logWriter)(r), (*logWriter)(r)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", Binary, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()

	client := &http.Client{Transport: r.Transport(), Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(r.URL() + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited before serving %s:\n%s", Binary, r.Host, r.Log())
		default:
		}
		if time.Now().After(deadline) {
			r.Kill()
			return fmt.Errorf("%s did not serve %s/v2/ within 30s (%v):\n%s", Binary, r.URL(), err, r.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URL is the registry's base URL (http:// or https://).
func (r *Registry) URL() string {
	if r.tls {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// Ref is a reference to repo (with optional :tag or @digest) in this registry.
func (r *Registry) Ref(repo string) string { return r.Host + "/" + repo }

// Transport is an HTTP transport that trusts the registry's certificate and uses no proxy.
func (r *Registry) Transport() http.RoundTripper {
	tr := remote.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if r.CACert != "" {
		pool := x509.NewCertPool()
		b, err := os.ReadFile(r.CACert)
		if err != nil || !pool.AppendCertsFromPEM(b) {
			r.t.Fatalf("load registry certificate %s: %v", r.CACert, err)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return tr
}

// RemoteOptions are go-containerregistry options that reach this registry: its transport
// and, with Auth, its credentials.
func (r *Registry) RemoteOptions() []remote.Option {
	opts := []remote.Option{remote.WithTransport(r.Transport())}
	if r.User != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: r.User, Password: r.Password}))
	}
	return opts
}

// Log is everything the registry has written (its log and access log), across restarts.
func (r *Registry) Log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.String()
}

// WaitLog waits up to timeout for the registry's log to contain substr and reports whether
// it did. The registry logs a request after its response, so a client can be done before
// the line is written.
func (r *Registry) WaitLog(substr string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(r.Log(), substr) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Blobs lists the data files of every blob in the registry's storage.
func (r *Registry) Blobs() ([]string, error) {
	var files []string
	root := filepath.Join(r.StorageDir, "docker", "registry", "v2", "blobs")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				return fs.SkipDir
			}
			return err
		}
		if !d.IsDir() && d.Name() == "data" {
			files = append(files, p)
		}
		return nil
	})
	return files, err
}

// BlobPath is the storage file of the blob with digest "sha256:<hex>" (it may not exist).
func (r *Registry) BlobPath(digest string) string {
	algo, hex, _ := strings.Cut(digest, ":")
	if len(hex) < 2 {
		return ""
	}
	return filepath.Join(r.StorageDir, "docker", "registry", "v2", "blobs", algo, hex[:2], hex, "data")
}

// Kill ends the registry with SIGKILL at once (a registry dying mid-transfer).
func (r *Registry) Kill() { r.end(syscall.SIGKILL) }

// Stop ends the registry with SIGTERM (SIGKILL after 5s) and waits for it. Idempotent.
func (r *Registry) Stop() { r.end(syscall.SIGTERM) }

// Restart starts the registry again on the same address, storage and credentials.
func (r *Registry) Restart() {
	r.t.Helper()
	r.Stop()
	if err := r.start(); err != nil {
		r.t.Fatal(err)
	}
}

func (r *Registry) end(sig syscall.Signal) {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

type logWriter Registry

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.log.Write(p)
}

// freePort asks the kernel for a port free on 127.0.0.1 right now.
func freePort() (int, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomString(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeSelfSigned writes a P-256 certificate for 127.0.0.1 and localhost that is its own CA.
func writeSelfSigned(t testing.TB, certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "crwrap test registry"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeFile(t, keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
}
