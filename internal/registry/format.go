package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"

	"github.com/crwrap/crwrap/internal/checkpoint"
)

// Annotation keys of the image manifest. The org.criu.checkpoint.* keys are checkpointctl's
// (lib/annotations.go), so that CRI-O and checkpointctl tooling recognise a checkpoint image;
// the org.crwrap.* keys carry what a restoring node checks before fetching any blob.
const (
	AnnotationEngine        = "org.criu.checkpoint.engine.name"
	AnnotationEngineVersion = "org.criu.checkpoint.engine.version"
	AnnotationName          = "org.criu.checkpoint.container.name"
	AnnotationRuntimeName   = "org.criu.checkpoint.runtime.name"
	AnnotationCRIUVersion   = "org.criu.checkpoint.criu.version"
	AnnotationHostArch      = "org.criu.checkpoint.host.arch"
	AnnotationHostKernel    = "org.criu.checkpoint.host.kernel"
	// AnnotationCRIOCheckpoint marks a checkpoint image for CRI-O (its value is the container name).
	AnnotationCRIOCheckpoint = "io.kubernetes.cri-o.annotations.checkpoint.name"
	AnnotationCreated        = "org.opencontainers.image.created"
	AnnotationTitle          = "org.opencontainers.image.title"

	// AnnotationFormat is crwrap's checkpoint format version (checkpoint.FormatVersion).
	AnnotationFormat = "org.crwrap.checkpoint.format"
	// AnnotationHostClass is the host class digest (see HostClass).
	AnnotationHostClass = "org.crwrap.checkpoint.host-class"
	// AnnotationApp is the app identity digest (see AppClass).
	AnnotationApp = "org.crwrap.checkpoint.app"
)

// Engine is the value of AnnotationEngine.
const Engine = "crwrap"

// HostClass digests what decides whether a host can restore a checkpoint made on another
// (the checks of checkpoint.Manifest.CheckHost): kernel release, architecture, CPU feature
// flags and CRIU version. Nodes of one class get one tag, nodes of another class never
// overwrite it. The hostname is not part of it.
func HostClass(h checkpoint.Host, criuVersion string) string {
	return shortDigest(map[string]any{
		"format": checkpoint.FormatVersion,
		"kernel": h.Kernel,
		"arch":   h.Arch,
		"cpu":    h.CPUFlagsDigest,
		"criu":   criuVersion,
	})
}

// AppClass digests the app identity a restoring pod knows before it has a checkpoint: the
// command line, the config template and the volumes. The executables and libraries the app
// mapped are checked after the pull (checkpoint.Manifest.CheckApp).
func AppClass(app checkpoint.App) string {
	return shortDigest(map[string]any{
		"args":     app.Args,
		"template": app.TemplateDigest,
		"mounts":   app.Mounts,
	})
}

// Tag is the tag a checkpoint is pushed under and pulled by:
// <name>-<app class>-<arch>-<host class>, e.g. "web-3f1c0a9d27b4-amd64-9e01b2c4d5f6". The
// name is cut to 80 characters so that the tag stays within the 128 that OCI allows.
func Tag(name string, app checkpoint.App, h checkpoint.Host, criuVersion string) string {
	if len(name) > 80 {
		name = name[:80]
	}
	arch := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, strings.ToLower(h.Arch))
	return name + "-" + AppClass(app) + "-" + arch + "-" + HostClass(h, criuVersion)
}

// TagOf is the tag of the checkpoint whose manifest is m.
func TagOf(m *checkpoint.Manifest) string {
	return Tag(m.Name, checkpoint.App{Args: m.App.Args, TemplateDigest: m.App.TemplateDigest, Mounts: m.App.Mounts}, m.Host, m.CRIUVersion)
}

func shortDigest(v any) string {
	b, _ := json.Marshal(v) // maps marshal with sorted keys: the digest is stable
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// annotations are the manifest annotations of the checkpoint m.
func annotations(m *checkpoint.Manifest) map[string]string {
	a := map[string]string{
		AnnotationEngine:         Engine,
		AnnotationEngineVersion:  m.CrwrapVersion,
		AnnotationName:           m.Name,
		AnnotationRuntimeName:    "runc",
		AnnotationCRIUVersion:    m.CRIUVersion,
		AnnotationHostArch:       m.Host.Arch,
		AnnotationHostKernel:     m.Host.Kernel,
		AnnotationCRIOCheckpoint: m.Name,
		AnnotationCreated:        m.Created.UTC().Format("2006-01-02T15:04:05Z"),
		AnnotationFormat:         itoa(m.FormatVersion),
		AnnotationHostClass:      HostClass(m.Host, m.CRIUVersion),
		AnnotationApp:            AppClass(m.App),
	}
	for k, v := range a {
		if v == "" {
			delete(a, k)
		}
	}
	return a
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// Layer grouping: every CRIU page image, and any other file of at least separateSize bytes,
// is a layer of its own (fetched in parallel, and by range in a later version); the rest —
// the small CRIU images, spec.dump, config.dump, crwrap.json, ... — share the first layer.
const separateSize = 1 << 20

// group splits the checkpoint's files (paths relative to its root) into layers: the shared
// small-file layer first, then one layer per big file, in path order.
func group(files []checkpoint.File) [][]checkpoint.File {
	var small []checkpoint.File
	var big [][]checkpoint.File
	for _, f := range files {
		if isPages(f.Path) || f.Size >= separateSize {
			big = append(big, []checkpoint.File{f})
			continue
		}
		small = append(small, f)
	}
	return append([][]checkpoint.File{small}, big...)
}

// isPages reports whether p is a CRIU page image (checkpoint.IsPagesImage).
func isPages(p string) bool { return checkpoint.IsPagesImage(p) }
