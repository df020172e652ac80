package pod

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/crwrap/crwrap/internal/config"
)

// Manifests are the example's Kubernetes objects, decoded.
type Manifests struct {
	ConfigMap  corev1.ConfigMap
	DaemonSet  appsv1.DaemonSet
	Deployment appsv1.Deployment
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

func examplesDir() string { return filepath.Join(repoRoot(), "examples", "kubernetes") }

// decodeStrict reads a manifest into obj, failing on any unknown or duplicate field.
func decodeStrict(t testing.TB, name string, obj any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(examplesDir(), name))
	if err != nil {
		t.Fatalf("read manifest: %v", err)
	}
	if err := yaml.UnmarshalStrict(b, obj); err != nil {
		t.Fatalf("decode %s strictly: %v", name, err)
	}
}

// LoadManifests decodes the example manifests strictly.
func LoadManifests(t testing.TB) *Manifests {
	t.Helper()
	m := &Manifests{}
	decodeStrict(t, "configmap.yaml", &m.ConfigMap)
	decodeStrict(t, "checkpoint-daemonset.yaml", &m.DaemonSet)
	decodeStrict(t, "restore-deployment.yaml", &m.Deployment)
	return m
}

// kustomization is the part of kustomization.yaml the test checks.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images"`
}

func envOf(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func mountOf(c corev1.Container, path string) (corev1.VolumeMount, bool) {
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return m, true
		}
	}
	return corev1.VolumeMount{}, false
}

// portNumber resolves a named container port (0 when unknown).
func portNumber(c corev1.Container, name string) int {
	for _, p := range c.Ports {
		if p.Name == name {
			return int(p.ContainerPort)
		}
	}
	return 0
}

func volumeOf(spec corev1.PodSpec, name string) (corev1.Volume, bool) {
	for _, v := range spec.Volumes {
		if v.Name == name {
			return v, true
		}
	}
	return corev1.Volume{}, false
}

func TestManifestsDecodeStrictly(t *testing.T) {
	m := LoadManifests(t)
	for _, c := range []struct{ got, kind, api string }{
		{m.ConfigMap.Kind, "ConfigMap", m.ConfigMap.APIVersion},
		{m.DaemonSet.Kind, "DaemonSet", m.DaemonSet.APIVersion},
		{m.Deployment.Kind, "Deployment", m.Deployment.APIVersion},
	} {
		if c.got != c.kind {
			t.Errorf("kind %q, want %q", c.got, c.kind)
		}
		want := "apps/v1"
		if c.kind == "ConfigMap" {
			want = "v1"
		}
		if c.api != want {
			t.Errorf("%s apiVersion %q, want %q", c.kind, c.api, want)
		}
	}

	var k kustomization
	decodeStrict(t, "kustomization.yaml", &k)
	want := []string{"configmap.yaml", "checkpoint-daemonset.yaml", "restore-deployment.yaml"}
	if !reflect.DeepEqual(k.Resources, want) {
		t.Errorf("kustomization resources %v, want %v", k.Resources, want)
	}
	for _, r := range k.Resources {
		if _, err := os.Stat(filepath.Join(examplesDir(), r)); err != nil {
			t.Errorf("kustomization resource: %v", err)
		}
	}
}

func TestManifestsAreConsistent(t *testing.T) {
	m := LoadManifests(t)
	if m.ConfigMap.Name != "cr-demo" {
		t.Errorf("ConfigMap name %q, want cr-demo", m.ConfigMap.Name)
	}
	props, ok := m.ConfigMap.Data["cr-properties"]
	if !ok {
		t.Fatalf("ConfigMap has no cr-properties key")
	}

	workloads := []struct {
		name     string
		spec     corev1.PodSpec
		selector map[string]string
		labels   map[string]string
		mode     string
		readOnly bool
	}{
		{"DaemonSet", m.DaemonSet.Spec.Template.Spec, m.DaemonSet.Spec.Selector.MatchLabels, m.DaemonSet.Spec.Template.Labels, "checkpoint", false},
		{"Deployment", m.Deployment.Spec.Template.Spec, m.Deployment.Spec.Selector.MatchLabels, m.Deployment.Spec.Template.Labels, "restore", true},
	}
	var images []string
	for _, w := range workloads {
		t.Run(w.name, func(t *testing.T) {
			for k, v := range w.selector {
				if w.labels[k] != v {
					t.Errorf("selector %s=%s does not match the template's labels %v", k, v, w.labels)
				}
			}
			if len(w.spec.Containers) != 1 {
				t.Fatalf("%d containers, want 1", len(w.spec.Containers))
			}
			c := w.spec.Containers[0]
			images = append(images, c.Image)
			if mode, _ := envOf(c, "CR_MODE"); mode != w.mode {
				t.Errorf("CR_MODE %q, want %q", mode, w.mode)
			}
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, "CR_") && e.Name != config.PathEnv {
					key := "cr." + strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(e.Name, "CR_"), "_", "."))
					if _, known := config.Default(key); !known {
						t.Errorf("env %s names no known cr.* key (%s)", e.Name, key)
					}
				}
			}
			if w.spec.TerminationGracePeriodSeconds == nil || *w.spec.TerminationGracePeriodSeconds < 10 {
				t.Errorf("terminationGracePeriodSeconds unset or too short")
			}
			switch rp := c.ReadinessProbe; {
			case rp == nil:
				t.Errorf("no readiness probe")
			case w.mode == "restore" && (rp.HTTPGet == nil || rp.HTTPGet.Path != "/ready"):
				t.Errorf("restore readiness probe is not an HTTP GET of /ready: %+v", rp)
			case rp.HTTPGet != nil && rp.HTTPGet.Port.IntValue() != 4000 && portNumber(c, rp.HTTPGet.Port.String()) != 4000:
				t.Errorf("readiness probe port %s is not the app's 4000", rp.HTTPGet.Port.String())
			case w.mode == "checkpoint" && (rp.Exec == nil || len(rp.Exec.Command) != 3 || rp.Exec.Command[1] != "inspect"):
				t.Errorf("checkpoint readiness probe is not `crwrap inspect <checkpoint>`: %+v", rp)
			case rp.TimeoutSeconds > 2:
				t.Errorf("readiness probe timeout %ds: keep it short (CRIU blocks traffic while restoring)", rp.TimeoutSeconds)
			}
			if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("memory requests and limits must be set: %+v", c.Resources)
			}
			if c.SecurityContext == nil {
				t.Errorf("no securityContext")
			}

			crm, ok := mountOf(c, "/cr")
			if !ok {
				t.Fatalf("no volume mounted at /cr")
			}
			if crm.ReadOnly != w.readOnly {
				t.Errorf("/cr readOnly=%t, want %t", crm.ReadOnly, w.readOnly)
			}
			crv, ok := volumeOf(w.spec, crm.Name)
			if !ok || crv.HostPath == nil || crv.HostPath.Path != "/cr" ||
				crv.HostPath.Type == nil || *crv.HostPath.Type != corev1.HostPathDirectoryOrCreate {
				t.Errorf("volume %q is not hostPath /cr (DirectoryOrCreate): %+v", crm.Name, crv)
			}
			pm, ok := mountOf(c, "/etc/cr.properties")
			if !ok || pm.SubPath != "cr-properties" || !pm.ReadOnly {
				t.Fatalf("/etc/cr.properties must be mounted read-only with subPath cr-properties: %+v", pm)
			}
			pv, ok := volumeOf(w.spec, pm.Name)
			if !ok || pv.ConfigMap == nil || pv.ConfigMap.Name != m.ConfigMap.Name {
				t.Errorf("volume %q is not ConfigMap %s: %+v", pm.Name, m.ConfigMap.Name, pv)
			}

			// The properties, with this workload's environment over them, load as crwrap loads them.
			dir := t.TempDir()
			path := filepath.Join(dir, "cr.properties")
			if err := os.WriteFile(path, []byte(props), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := config.Load(config.LoadOptions{
				Path: path, Explicit: true,
				LookupEnv: func(k string) (string, bool) { return envOf(c, k) },
				Args:      []string{"/app/go-app"},
			})
			if err != nil {
				t.Fatalf("cr-properties with %s's env: %v", w.name, err)
			}
			if string(s.Mode) != w.mode {
				t.Errorf("mode %q, want %q", s.Mode, w.mode)
			}
			if s.CheckpointName == "" || s.CheckpointDirectory == "" {
				t.Errorf("cr.checkpoint.name and cr.checkpoint.directory must be set")
			}
			if !strings.HasPrefix(s.CheckpointPath(), crm.MountPath+"/") {
				t.Errorf("checkpoint path %s is not under the hostPath mount %s", s.CheckpointPath(), crm.MountPath)
			}
			if rp := c.ReadinessProbe; rp != nil && rp.Exec != nil && len(rp.Exec.Command) == 3 && rp.Exec.Command[2] != s.CheckpointPath() {
				t.Errorf("readiness probe inspects %s, the checkpoint is at %s", rp.Exec.Command[2], s.CheckpointPath())
			}
			if !strings.HasPrefix(s.Readiness, "http://127.0.0.1:4000/") {
				t.Errorf("cr.container.readiness %q, want the app's :4000 endpoint", s.Readiness)
			}
			if w.mode == "restore" && s.RestoreWait <= 0 {
				t.Errorf("restore Deployment should wait for a checkpoint (CR_RESTORE_WAIT)")
			}
		})
	}
	if len(images) == 2 && images[0] != images[1] {
		t.Errorf("DaemonSet image %q and Deployment image %q differ: both roles run one image", images[0], images[1])
	}
}
