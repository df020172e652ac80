package pod

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// ExtraArgsEnv names extra `docker run` options put before every pod's own (diagnostics only).
const ExtraArgsEnv = "CRWRAP_POD_DOCKER_ARGS"

// testLabel marks every container the pod tests make, so that leftovers can be found and removed.
const testLabel = "io.crwrap.pod-test"

// Node stands in for a Kubernetes node: Root is the directory that hostPath volumes resolve
// under (hostPath /cr becomes Root/cr), and the kubelet's own files (ConfigMap projections)
// live below Root/var/lib/kubelet.
type Node struct {
	Root string
}

// PodSpec is what the test turns into one `docker run`: a pod's spec, its one container, the
// ConfigMaps it may mount and test-only environment overrides (applied over the manifest's env,
// the way a kustomize patch would).
type PodSpec struct {
	Name       string
	Spec       corev1.PodSpec
	Container  corev1.Container
	ConfigMaps map[string]*corev1.ConfigMap
	EnvPatch   map[string]string
}

// DockerRunArgs returns the `docker run` arguments (after "run") that make the pod's container the
// way a kubelet with the Docker runtime would: own network namespace (default bridge), the
// container's image, command and args, env, volume mounts (hostPath -> a directory of the node,
// ConfigMap -> files written by "the kubelet", subPath -> one file), securityContext
// (privileged, capabilities, seccomp, AppArmor, proc mount, user, read-only root), resource
// limits and the termination grace period as the stop timeout.
func (n *Node) DockerRunArgs(p PodSpec) ([]string, error) {
	c := p.Container
	args := []string{"--detach", "--name", p.Name, "--hostname", p.Name, "--label", testLabel + "=" + p.Name,
		"--pull", "never", "--network", "bridge"}

	env := map[string]string{}
	var order []string
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			return nil, fmt.Errorf("env %s: valueFrom is not supported by the test kubelet", e.Name)
		}
		if _, seen := env[e.Name]; !seen {
			order = append(order, e.Name)
		}
		env[e.Name] = e.Value
	}
	var patched []string
	for k := range p.EnvPatch {
		patched = append(patched, k)
	}
	sort.Strings(patched)
	for _, k := range patched {
		if _, seen := env[k]; !seen {
			order = append(order, k)
		}
		env[k] = p.EnvPatch[k]
	}
	for _, k := range order {
		args = append(args, "--env", k+"="+env[k])
	}

	for _, m := range c.VolumeMounts {
		src, err := n.volumeSource(p, m)
		if err != nil {
			return nil, err
		}
		spec := "type=bind,src=" + src + ",dst=" + m.MountPath
		if m.ReadOnly {
			spec += ",readonly"
		}
		args = append(args, "--mount", spec)
	}

	sc, err := securityArgs(p.Spec.SecurityContext, c.SecurityContext)
	if err != nil {
		return nil, err
	}
	args = append(args, sc...)

	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		args = append(args, "--memory", strconv.FormatInt(q.Value(), 10))
	}
	if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		args = append(args, "--cpus", strconv.FormatFloat(float64(q.MilliValue())/1000, 'f', 3, 64))
	}
	grace := int64(30) // the Kubernetes default
	if p.Spec.TerminationGracePeriodSeconds != nil {
		grace = *p.Spec.TerminationGracePeriodSeconds
	}
	args = append(args, "--stop-timeout", strconv.FormatInt(grace, 10))
	if c.WorkingDir != "" {
		args = append(args, "--workdir", c.WorkingDir)
	}

	// Command replaces the image's ENTRYPOINT, Args its CMD (as in Kubernetes).
	var tail []string
	if len(c.Command) > 0 {
		args = append(args, "--entrypoint", c.Command[0])
		tail = append(tail, c.Command[1:]...)
	}
	args = append(args, c.Image)
	tail = append(tail, c.Args...)
	return append(args, tail...), nil
}

func (n *Node) volumeSource(p PodSpec, m corev1.VolumeMount) (string, error) {
	var vol *corev1.Volume
	for i := range p.Spec.Volumes {
		if p.Spec.Volumes[i].Name == m.Name {
			vol = &p.Spec.Volumes[i]
		}
	}
	if vol == nil {
		return "", fmt.Errorf("volumeMount %s: no volume of that name", m.Name)
	}
	var dir string
	switch {
	case vol.HostPath != nil:
		dir = filepath.Join(n.Root, filepath.Clean("/"+vol.HostPath.Path))
		t := corev1.HostPathUnset
		if vol.HostPath.Type != nil {
			t = *vol.HostPath.Type
		}
		switch t {
		case corev1.HostPathDirectoryOrCreate:
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return "", fmt.Errorf("hostPath %s: %w", vol.HostPath.Path, err)
			}
		case corev1.HostPathDirectory, corev1.HostPathUnset:
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				return "", fmt.Errorf("hostPath %s: not a directory on the node", vol.HostPath.Path)
			}
		default:
			return "", fmt.Errorf("hostPath %s: type %s is not supported by the test kubelet", vol.HostPath.Path, t)
		}
	case vol.ConfigMap != nil:
		cm := p.ConfigMaps[vol.ConfigMap.Name]
		if cm == nil {
			return "", fmt.Errorf("volume %s: ConfigMap %s not given", vol.Name, vol.ConfigMap.Name)
		}
		dir = filepath.Join(n.Root, "var/lib/kubelet/pods", p.Name, "volumes/configmap", vol.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		items := vol.ConfigMap.Items
		if len(items) == 0 {
			for k := range cm.Data {
				items = append(items, corev1.KeyToPath{Key: k, Path: k})
			}
		}
		for _, it := range items {
			v, ok := cm.Data[it.Key]
			if !ok {
				return "", fmt.Errorf("ConfigMap %s has no key %s", cm.Name, it.Key)
			}
			if err := os.WriteFile(filepath.Join(dir, it.Path), []byte(v), 0o644); err != nil {
				return "", err
			}
		}
	case vol.EmptyDir != nil:
		dir = filepath.Join(n.Root, "var/lib/kubelet/pods", p.Name, "volumes/empty-dir", vol.Name)
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("volume %s: only hostPath, configMap and emptyDir are supported by the test kubelet", vol.Name)
	}
	if m.SubPath != "" {
		dir = filepath.Join(dir, filepath.Clean("/"+m.SubPath))
		if _, err := os.Stat(dir); err != nil {
			return "", fmt.Errorf("volumeMount %s subPath %s: %w", m.Name, m.SubPath, err)
		}
	}
	return dir, nil
}

// securityArgs maps a pod's and a container's securityContext to docker run options. What it
// cannot map is an error: a test must never run with less (or more) than the manifest says.
func securityArgs(pod *corev1.PodSecurityContext, c *corev1.SecurityContext) ([]string, error) {
	var args []string
	seccomp := (*corev1.SeccompProfile)(nil)
	apparmor := (*corev1.AppArmorProfile)(nil)
	if pod != nil {
		seccomp, apparmor = pod.SeccompProfile, pod.AppArmorProfile
		if pod.RunAsUser != nil {
			args = append(args, "--user", strconv.FormatInt(*pod.RunAsUser, 10))
		}
	}
	if c == nil {
		c = &corev1.SecurityContext{}
	}
	if c.SeccompProfile != nil {
		seccomp = c.SeccompProfile
	}
	if c.AppArmorProfile != nil {
		apparmor = c.AppArmorProfile
	}
	if c.Privileged != nil && *c.Privileged {
		args = append(args, "--privileged")
	}
	if c.Capabilities != nil {
		for _, d := range c.Capabilities.Drop {
			args = append(args, "--cap-drop", string(d))
		}
		for _, a := range c.Capabilities.Add {
			args = append(args, "--cap-add", string(a))
		}
	}
	if seccomp != nil {
		switch seccomp.Type {
		case corev1.SeccompProfileTypeUnconfined:
			args = append(args, "--security-opt", "seccomp=unconfined")
		case corev1.SeccompProfileTypeRuntimeDefault:
		default:
			return nil, fmt.Errorf("seccompProfile %s is not supported by the test kubelet", seccomp.Type)
		}
	}
	if apparmor != nil {
		switch apparmor.Type {
		case corev1.AppArmorProfileTypeUnconfined:
			args = append(args, "--security-opt", "apparmor=unconfined")
		case corev1.AppArmorProfileTypeRuntimeDefault:
		default:
			return nil, fmt.Errorf("appArmorProfile %s is not supported by the test kubelet", apparmor.Type)
		}
	}
	if c.ProcMount != nil && *c.ProcMount == corev1.UnmaskedProcMount {
		args = append(args, "--security-opt", "systempaths=unconfined")
	}
	if c.AllowPrivilegeEscalation != nil && !*c.AllowPrivilegeEscalation {
		args = append(args, "--security-opt", "no-new-privileges")
	}
	if c.RunAsUser != nil {
		args = append(args, "--user", strconv.FormatInt(*c.RunAsUser, 10))
	}
	if c.ReadOnlyRootFilesystem != nil && *c.ReadOnlyRootFilesystem {
		args = append(args, "--read-only")
	}
	if c.SELinuxOptions != nil || c.WindowsOptions != nil {
		return nil, fmt.Errorf("seLinuxOptions/windowsOptions are not supported by the test kubelet")
	}
	return args, nil
}

// docker runs the docker CLI and returns its stdout; the error includes stderr.
func docker(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Pod is a running "pod": one Docker container.
type Pod struct {
	Name    string
	ID      string
	IP      string
	Port    int
	Started time.Time
	// Readiness is the container's readinessProbe from the manifest.
	Readiness *corev1.Probe
	container corev1.Container
}

// RunPod starts the pod's container and returns once Docker reports it running.
func (n *Node) RunPod(t testing.TB, p PodSpec) *Pod {
	t.Helper()
	args, err := n.DockerRunArgs(p)
	if err != nil {
		t.Fatalf("pod %s: %v", p.Name, err)
	}
	if extra := strings.Fields(os.Getenv(ExtraArgsEnv)); len(extra) > 0 {
		// A diagnostic escape hatch only: the pod then runs with more than its manifest says.
		t.Logf("pod %s: adding %s=%q to what the manifest says", p.Name, ExtraArgsEnv, extra)
		args = append(extra, args...)
	}
	_, _ = docker(context.Background(), "rm", "-f", p.Name)
	start := time.Now()
	out, err := docker(context.Background(), append([]string{"run"}, args...)...)
	if err != nil {
		t.Fatalf("pod %s: %v", p.Name, err)
	}
	pod := &Pod{Name: p.Name, ID: strings.TrimSpace(out), Started: start, Port: 4000,
		Readiness: p.Container.ReadinessProbe, container: p.Container}
	t.Cleanup(func() { _, _ = docker(context.Background(), "rm", "-f", "-v", pod.ID) })
	var st struct {
		NetworkSettings struct{ IPAddress string }
	}
	if err := inspect(pod.ID, &st); err != nil {
		t.Fatalf("pod %s: %v", p.Name, err)
	}
	pod.IP = st.NetworkSettings.IPAddress
	if pod.IP == "" {
		t.Fatalf("pod %s: no IP on the bridge network (logs: %s)", p.Name, pod.Logs())
	}
	return pod
}

func inspect(id string, v any) error {
	out, err := docker(context.Background(), "inspect", "--type", "container", id)
	if err != nil {
		return err
	}
	var arr []json.RawMessage
	if err := json.Unmarshal([]byte(out), &arr); err != nil || len(arr) != 1 {
		return fmt.Errorf("docker inspect %s: %v", id, err)
	}
	return json.Unmarshal(arr[0], v)
}

// Logs is `docker logs` of the pod (stdout and stderr).
func (p *Pod) Logs() string {
	cmd := exec.Command("docker", "logs", p.ID)
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// State is the container's state as Docker reports it.
type State struct {
	Status   string
	Running  bool
	ExitCode int
}

// State returns the pod's container state.
func (p *Pod) State() (State, error) {
	var st struct{ State State }
	err := inspect(p.ID, &st)
	return st.State, err
}

// URL is http://<pod IP>:<port><path>.
func (p *Pod) URL(path string) string { return fmt.Sprintf("http://%s:%d%s", p.IP, p.Port, path) }

// Get does one HTTP GET with the manifest's short probe timeout.
func (p *Pod) Get(path string) (int, string, error) {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(p.URL(path))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, strings.TrimSpace(b.String()), nil
}

// Ready runs the pod's readiness probe once, as a kubelet would: an HTTP GET of the pod IP
// (named ports resolved from the container's ports) or `docker exec` of the command, each within
// the probe's timeoutSeconds.
func (p *Pod) Ready() (bool, string) {
	pr := p.Readiness
	if pr == nil {
		return true, "no probe"
	}
	timeout := time.Duration(max(pr.TimeoutSeconds, 1)) * time.Second
	switch {
	case pr.HTTPGet != nil:
		port := pr.HTTPGet.Port.IntValue()
		if port == 0 {
			port = portNumber(p.container, pr.HTTPGet.Port.String())
		}
		c := &http.Client{Timeout: timeout}
		resp, err := c.Get(fmt.Sprintf("http://%s:%d%s", p.IP, port, pr.HTTPGet.Path))
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode >= 200 && resp.StatusCode < 400, resp.Status
	case pr.Exec != nil:
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		out, err := docker(ctx, append([]string{"exec", p.ID}, pr.Exec.Command...)...)
		if err != nil {
			return false, err.Error() + " " + strings.TrimSpace(out)
		}
		return true, out
	}
	return false, "unsupported probe"
}

// WaitReady runs the readiness probe like a kubelet (but every 20 ms, to measure) until it
// succeeds, and returns the time from `docker run` to ready. It fails the test when the
// container exits or timeout passes, with its logs.
func (p *Pod) WaitReady(t testing.TB, timeout time.Duration) time.Duration {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, why := p.Ready()
		if ok {
			return time.Since(p.Started)
		}
		last = why
		if st, err := p.State(); err == nil && !st.Running {
			t.Fatalf("pod %s exited (%d) before ready; logs:\n%s", p.Name, st.ExitCode, p.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("pod %s not ready after %s (last probe: %s); logs:\n%s", p.Name, timeout, last, p.Logs())
	return 0
}
