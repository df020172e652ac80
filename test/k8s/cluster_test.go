package k8s

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// cluster is the running test cluster, as up.sh describes it in its env file.
type cluster struct {
	kubectlBin string
	kubeconfig string
	containerd string // containerd's socket
	node       string
	env        map[string]string
}

var (
	theCluster *cluster
	clusterErr error
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

// runTests starts the cluster unless one runs, runs the tests, and stops the cluster it started.
func runTests(m *testing.M) int {
	if os.Geteuid() != 0 {
		clusterErr = errors.New("the Kubernetes tests need root (the kubelet and containerd run as root)")
		return m.Run()
	}
	dir := os.Getenv("K8S_DIR")
	if dir == "" {
		dir = filepath.Join(harness.RepoRoot(), "build", "k8s")
	}
	script := func(name string) *exec.Cmd {
		cmd := exec.Command("bash", filepath.Join(harness.RepoRoot(), "test", "k8s", "cluster", name))
		cmd.Env = append(os.Environ(), "K8S_DIR="+dir)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		return cmd
	}
	ours := false
	if script("status.sh").Run() != nil {
		start := time.Now()
		if err := script("up.sh").Run(); err != nil {
			clusterErr = fmt.Errorf("start the test cluster (test/k8s/cluster/up.sh, logs in %s.failed): %w", dir, err)
			return m.Run()
		}
		fmt.Fprintf(os.Stderr, "test cluster up in %s\n", time.Since(start).Round(time.Second))
		ours = true
	}
	theCluster, clusterErr = loadCluster(filepath.Join(dir, "env"))
	code := m.Run()
	if ours && os.Getenv("K8S_KEEP") == "" {
		if err := script("down.sh").Run(); err != nil {
			fmt.Fprintf(os.Stderr, "stop the test cluster: %v\n", err)
			code = 1
		}
	}
	return code
}

func loadCluster(envFile string) (*cluster, error) {
	b, err := os.ReadFile(envFile)
	if err != nil {
		return nil, fmt.Errorf("read the test cluster's env: %w", err)
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	c := &cluster{kubectlBin: env["KUBECTL"], kubeconfig: env["KUBECONFIG"], containerd: env["CONTAINERD_ADDRESS"], node: env["NODE"], env: env}
	if c.kubectlBin == "" || c.kubeconfig == "" || c.containerd == "" || c.node == "" {
		return nil, fmt.Errorf("%s lacks KUBECTL, KUBECONFIG, CONTAINERD_ADDRESS or NODE", envFile)
	}
	return c, nil
}

// requireCluster returns the test cluster, or fails the test (skips it only on a developer's
// unprivileged run outside CI).
func requireCluster(t *testing.T) *cluster {
	t.Helper()
	if clusterErr != nil {
		if os.Getenv("CI") == "" && os.Geteuid() != 0 {
			t.Skip(clusterErr)
		}
		t.Fatal(clusterErr)
	}
	return theCluster
}

// run runs kubectl with stdin and returns its stdout; the error carries its stderr.
func (c *cluster) run(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.kubectlBin, append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// kubectl runs kubectl (at most 5 minutes) and fails the test when it fails.
func (c *cluster) kubectl(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := c.run(ctx, "", args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// importImage copies a Docker image into the cluster's containerd (`docker save | ctr import`),
// where the kubelet finds it (imagePullPolicy IfNotPresent: nothing is pulled).
func (c *cluster) importImage(t testing.TB, image string) {
	t.Helper()
	start := time.Now()
	save := exec.Command("docker", "save", image)
	imp := exec.Command("ctr", "--address", c.containerd, "--namespace", "k8s.io", "images", "import", "-")
	pipe, err := save.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	imp.Stdin = pipe
	var saveErr, impOut bytes.Buffer
	save.Stderr = &saveErr
	imp.Stdout, imp.Stderr = &impOut, &impOut
	if err := save.Start(); err != nil {
		t.Fatalf("docker save %s: %v", image, err)
	}
	impErr := imp.Run()
	if err := save.Wait(); err != nil {
		t.Fatalf("docker save %s: %v: %s", image, err, saveErr.String())
	}
	if impErr != nil {
		t.Fatalf("ctr images import %s: %v: %s", image, impErr, impOut.String())
	}
	t.Logf("imported %s into the cluster's containerd in %s", image, time.Since(start).Round(time.Millisecond))
}

// waitFor polls cond every 250 ms until it is true; at timeout it fails the test with what and
// cond's last error.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("%s: not after %s: %v", what, timeout, err)
			}
			t.Fatalf("%s: not after %s", what, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
