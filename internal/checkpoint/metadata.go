package checkpoint

import (
	"encoding/json"
	"fmt"
	"time"
)

// ContainerConfig is the JSON of config.dump as checkpointctl (lib.ContainerConfig, a reduced
// copy of Podman's) reads it. checkpointctl show prints Name (Podman only), RootfsImageName,
// the first 12 characters of ID, OCIRuntime and CreatedTime; inspect adds CheckpointedAt.
type ContainerConfig struct {
	ID              string    `json:"id"`
	Name            string    `json:"name"`
	RootfsImage     string    `json:"rootfsImage,omitempty"`
	RootfsImageRef  string    `json:"rootfsImageRef,omitempty"`
	RootfsImageName string    `json:"rootfsImageName,omitempty"`
	OCIRuntime      string    `json:"runtime,omitempty"`
	CreatedTime     time.Time `json:"createdTime"`
	CheckpointedAt  time.Time `json:"checkpointedTime"`
	RestoredAt      time.Time `json:"restoredTime"`
	Restored        bool      `json:"restored"`
}

// ContainerManager is the value crwrap puts in the io.container.manager annotation of spec.dump.
// checkpointctl knows "libpod" and "cri-o" and treats any other value as containerd, reading
// the container, pod and namespace names from the io.kubernetes.cri.* annotations.
const ContainerManager = "crwrap"

// Annotation keys of spec.dump that checkpointctl reads for a non-Podman, non-CRI-O checkpoint.
const (
	AnnotationContainerManager = "io.container.manager"
	AnnotationContainerName    = "io.kubernetes.cri.container-name"
	AnnotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
)

// SpecAnnotations returns the annotations to merge into the spec written as spec.dump so that
// checkpointctl names the container, pod and namespace. Empty values are left out.
func SpecAnnotations(container, pod, namespace string) map[string]string {
	a := map[string]string{AnnotationContainerManager: ContainerManager}
	for k, v := range map[string]string{
		AnnotationContainerName:    container,
		AnnotationSandboxName:      pod,
		AnnotationSandboxNamespace: namespace,
	} {
		if v != "" {
			a[k] = v
		}
	}
	return a
}

// ConfigDump builds config.dump from crwrap's manifest: the checkpoint name is the container
// name and ID, runtime is "runc" (libcontainer), and both times are set (checkpointctl prints
// the zero time otherwise). image is the app's image reference, when known.
func ConfigDump(m *Manifest, image string, created time.Time) ContainerConfig {
	c := ContainerConfig{
		ID:              m.Name,
		Name:            m.Name,
		RootfsImage:     image,
		RootfsImageName: image,
		OCIRuntime:      "runc",
		CreatedTime:     created.UTC(),
		CheckpointedAt:  m.Created.UTC(),
	}
	if c.CreatedTime.IsZero() {
		c.CreatedTime = c.CheckpointedAt
	}
	return c
}

// ConfigDump reads config.dump from the held checkpoint.
func (r *Reader) ConfigDump() (*ContainerConfig, error) {
	b, err := r.readSmall(ConfigDumpFile, MaxManifestBytes)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ConfigDumpFile, err)
	}
	var c ContainerConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("parse %s: %w", ConfigDumpFile, err)
	}
	return &c, nil
}

// ReadConfigDump reads config.dump from the checkpoint directory dir (or the published link to
// one).
func ReadConfigDump(dir string) (*ContainerConfig, error) {
	r, err := Hold(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ConfigDumpFile, err)
	}
	defer r.Close()
	return r.ConfigDump()
}
