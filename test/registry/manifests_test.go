package registry

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/crwrap/crwrap/internal/config"
	"github.com/crwrap/crwrap/test/harness"
)

func crossNode(t *testing.T, name string, obj any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "examples", "kubernetes", "cross-node", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, obj); err != nil {
		t.Fatalf("decode %s strictly: %v", name, err)
	}
}

// checkEnv fails for a CR_* variable that names no cr.* key, and for a key file or credential
// path that no read-only volume mount provides.
func checkEnv(t *testing.T, what string, c corev1.Container) map[string]string {
	t.Helper()
	known := map[string]bool{}
	for _, k := range config.Keys() {
		known[config.EnvName(k)] = true
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
		if strings.HasPrefix(e.Name, "CR_") && !known[e.Name] {
			t.Errorf("%s: %s is no cr.* key", what, e.Name)
		}
		if strings.HasSuffix(e.Name, "_KEY") || e.Name == "DOCKER_CONFIG" {
			if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
				return m.ReadOnly && strings.HasPrefix(e.Value, m.MountPath)
			}) {
				t.Errorf("%s: %s=%s is on no read-only mount", what, e.Name, e.Value)
			}
		}
	}
	return env
}

// The cross-node overlay: both roles name the same repository, keys come from Secrets, the
// restore pods mount the node cache read-write where cr.checkpoint.cache points.
func TestCrossNodeManifests(t *testing.T) {
	var ds appsv1.DaemonSet
	var dep appsv1.Deployment
	crossNode(t, "checkpoint-daemonset-patch.yaml", &ds)
	crossNode(t, "restore-deployment-patch.yaml", &dep)
	pushEnv := checkEnv(t, "DaemonSet", ds.Spec.Template.Spec.Containers[0])
	pullEnv := checkEnv(t, "Deployment", dep.Spec.Template.Spec.Containers[0])
	if pushEnv["CR_CHECKPOINT_IMAGE"] == "" || pushEnv["CR_CHECKPOINT_IMAGE"] != pullEnv["CR_CHECKPOINT_IMAGE"] {
		t.Errorf("checkpoint image %q (DaemonSet) vs %q (Deployment)", pushEnv["CR_CHECKPOINT_IMAGE"], pullEnv["CR_CHECKPOINT_IMAGE"])
	}
	cache := pullEnv["CR_CHECKPOINT_CACHE"]
	if def, _ := config.Default(config.KeyCheckpointCache); cache == "" {
		cache = def
	}
	c := dep.Spec.Template.Spec.Containers[0]
	i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == cache })
	if i < 0 || c.VolumeMounts[i].ReadOnly {
		t.Fatalf("the restore pods do not mount the node cache %s read-write: %+v", cache, c.VolumeMounts)
	}
	vi := slices.IndexFunc(dep.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == c.VolumeMounts[i].Name })
	if vi < 0 || dep.Spec.Template.Spec.Volumes[vi].HostPath == nil {
		t.Errorf("the node cache is not a hostPath: pods of a node would not share it")
	}
}
