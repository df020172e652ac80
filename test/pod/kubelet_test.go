package pod

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestDockerRunArgs checks, without Docker, that the test kubelet turns the manifests' containers
// into the docker run options they mean.
func TestDockerRunArgs(t *testing.T) {
	m := LoadManifests(t)
	node := &Node{Root: t.TempDir()}
	cms := map[string]*corev1.ConfigMap{m.ConfigMap.Name: &m.ConfigMap}
	for _, tc := range []struct {
		name     string
		spec     corev1.PodSpec
		mode     string
		caps     []string
		crMount  string
		graceArg string
	}{
		{"checkpoint", m.DaemonSet.Spec.Template.Spec, "checkpoint", []string{"SYS_ADMIN", "SYS_PTRACE"}, "dst=/cr", "60"},
		{"restore", m.Deployment.Spec.Template.Spec, "restore", []string{"SYS_ADMIN", "NET_ADMIN", "SYS_TIME", "SYS_PTRACE"}, "dst=/cr,readonly", "30"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.spec.Containers[0]
			args, err := node.DockerRunArgs(PodSpec{Name: "p-" + tc.name, Spec: tc.spec, Container: c,
				ConfigMaps: cms, EnvPatch: map[string]string{"CR_RESTORE_WAIT": "1s"}})
			if err != nil {
				t.Fatal(err)
			}
			joined := strings.Join(args, " ")
			if args[len(args)-1] != c.Image {
				t.Errorf("image %q is not the last argument (no command/args in the manifest): %v", c.Image, args)
			}
			for _, want := range []string{"--env CR_MODE=" + tc.mode, "--env CR_RESTORE_WAIT=1s",
				"--security-opt seccomp=unconfined", "--security-opt apparmor=unconfined",
				"--stop-timeout " + tc.graceArg, "--memory 1073741824", "--network bridge"} {
				if !strings.Contains(joined, want) {
					t.Errorf("missing %q in %v", want, args)
				}
			}
			if strings.Contains(joined, "--privileged") {
				t.Errorf("the manifests ask for capabilities, not privileged: %v", args)
			}
			var caps []string
			for i, a := range args {
				if a == "--cap-add" {
					caps = append(caps, args[i+1])
				}
			}
			if !slices.Equal(caps, tc.caps) {
				t.Errorf("capabilities %v, want %v", caps, tc.caps)
			}
			hostCR := filepath.Join(node.Root, "cr")
			if !strings.Contains(joined, "type=bind,src="+hostCR+","+tc.crMount) {
				t.Errorf("hostPath /cr is not bound from %s as %s: %v", hostCR, tc.crMount, args)
			}
			if st, err := os.Stat(hostCR); err != nil || !st.IsDir() {
				t.Errorf("DirectoryOrCreate did not create %s: %v", hostCR, err)
			}
			var props string
			for _, a := range args {
				if strings.HasSuffix(a, "dst=/etc/cr.properties,readonly") {
					props = strings.TrimPrefix(strings.Split(a, ",")[1], "src=")
				}
			}
			if b, err := os.ReadFile(props); err != nil || string(b) != m.ConfigMap.Data["cr-properties"] {
				t.Errorf("/etc/cr.properties is not the ConfigMap's cr-properties (%s): %v", props, err)
			}
		})
	}
}
