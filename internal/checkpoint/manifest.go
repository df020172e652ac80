package checkpoint

import "time"

// ManifestFile is the name of crwrap's own manifest inside a checkpoint directory.
const ManifestFile = "crwrap.json"

// ManifestDigestFile holds the sha256 of crwrap.json, in sha256sum's format
// ("<hex>  crwrap.json\n", so `sha256sum -c crwrap.json.sha256` checks it). crwrap.json lists
// the size and digest of every other file, so this one digest covers the whole checkpoint: it
// is what a signature over a checkpoint signs.
const ManifestDigestFile = "crwrap.json.sha256"

// Limits on what a checkpoint directory may hold; a directory beyond them is ErrDamaged
// (nothing crwrap writes comes near them).
const (
	// MaxManifestBytes bounds crwrap.json.
	MaxManifestBytes = 16 << 20
	// MaxFiles bounds the files listed in crwrap.json (checkpoint files and app files each)
	// and the entries of the directory tree.
	MaxFiles = 100_000
	// MaxPathBytes bounds a path in crwrap.json.
	MaxPathBytes = 1024
	// maxDepth bounds how deep the directory tree goes.
	maxDepth = 16
)

// FormatVersion is the version of the on-disk layout this crwrap writes and reads.
const FormatVersion = 1

// Manifest is crwrap.json: what a checkpoint is, where it was made, and every file in it.
type Manifest struct {
	FormatVersion int       `json:"formatVersion"`
	Name          string    `json:"name"`
	Created       time.Time `json:"created"`
	CrwrapVersion string    `json:"crwrapVersion"`
	CRIUVersion   string    `json:"criuVersion"`
	Host          Host      `json:"host"`
	App           App       `json:"app"`
	// Durations of the checkpoint phases in milliseconds, by phase name.
	DurationsMS map[string]int64 `json:"durationsMs,omitempty"`
	// Files lists every file of the checkpoint except crwrap.json, paths relative to its root.
	Files []File `json:"files"`
}

// Host describes the machine a checkpoint was taken on, as far as restore compatibility goes.
type Host struct {
	Hostname string `json:"hostname"`
	Kernel   string `json:"kernel"`
	Arch     string `json:"arch"`
	CPUModel string `json:"cpuModel"`
	// CPUFlagsDigest is the sha256 of the sorted CPU feature flags of /proc/cpuinfo.
	CPUFlagsDigest string `json:"cpuFlagsDigest"`
}

// App is the identity of the checkpointed app: a restore of a different app is refused.
type App struct {
	Args           []string `json:"args"`
	TemplateDigest string   `json:"templateDigest"`
	Mounts         []string `json:"mounts,omitempty"`
	// Files are the executables and libraries mapped by the app's processes, paths inside its root.
	Files []File `json:"files"`
}

// File is one file with its size and sha256 digest (hex).
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Stat identifies this version of an app file on its node: inode number, change and
	// modification times (ns). A file whose Stat and Size match has not been written since
	// (any write, chmod or replacement moves ctime forward, ctime cannot be set back, and since
	// Linux 6.13 a change after a stat gets a fine-grained ctime), so a restore can skip
	// hashing it; the digest decides whenever Stat differs (and always with
	// cr.restore.verify=digest).
	Stat string `json:"stat,omitempty"`
}
