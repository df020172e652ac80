package config

import "time"

// Mode is what crwrap does with the app: run it, checkpoint it once warm, or restore it.
type Mode string

// The modes crwrap knows.
const (
	ModeRun        Mode = "run"
	ModeCheckpoint Mode = "checkpoint"
	ModeRestore    Mode = "restore"
)

// Settings is the typed, validated form of cr.properties after flags and environment
// were applied. Every key of the DESIGN.md table has a field here.
type Settings struct {
	// Mode is cr.mode (run, checkpoint or restore).
	Mode Mode

	// CheckpointName is cr.checkpoint.name.
	CheckpointName string
	// CheckpointDirectory is cr.checkpoint.directory, relative to CheckpointRoot.
	CheckpointDirectory string
	// CheckpointRoot is cr.checkpoint.root (default /cr).
	CheckpointRoot string
	// CheckpointWarmup is cr.checkpoint.warmup: a command or URL run once after ready.
	CheckpointWarmup string
	// CheckpointExit is cr.checkpoint.exit: exit 0 after publishing.
	CheckpointExit bool
	// CheckpointRefresh is cr.checkpoint.refresh: "auto" or "always".
	CheckpointRefresh string

	// Readiness is cr.container.readiness: a shell command, http(s):// URL or tcp://host:port.
	Readiness string
	// ReadinessInterval is cr.readiness.interval.
	ReadinessInterval time.Duration
	// ReadinessTimeout is cr.readiness.timeout.
	ReadinessTimeout time.Duration

	// RestoreFallback is cr.restore.fallback: "cold" or "fail".
	RestoreFallback string
	// RestoreWait is cr.restore.wait.
	RestoreWait time.Duration
	// RestoreLazy is cr.restore.lazy: restore memory on demand (CRIU lazy pages, userfaultfd)
	// instead of before the app resumes.
	RestoreLazy bool
	// RestoreVerify is cr.restore.verify: "size" (sizes of every file) or "digest" (sha256 of every file).
	RestoreVerify string

	// Command is the app's argv: what followed "--", else cr.container.command split like a shell would.
	Command []string
	// Template is cr.container.template: a path, or "" for the built-in template.
	Template string
	// Mounts is cr.container.mounts: pod paths bind-mounted into the app at the same path.
	Mounts []string

	// CRIUPath is cr.criu.path: "" means the bundled CRIU, else criu on PATH.
	CRIUPath string
	// TCPEstablished is cr.criu.tcp-established.
	TCPEstablished bool

	// LogFormat is cr.log.format: "text" or "json".
	LogFormat string
	// LogLevel is cr.log.level (a logrus level name).
	LogLevel string
	// MetricsAddress is cr.metrics.address: host:port, "" for off.
	MetricsAddress string

	// CheckpointTimeout is cr.checkpoint.timeout: how long CRIU's dump may take before it
	// is stopped and the app keeps running.
	CheckpointTimeout time.Duration
	// CRIUOptions is cr.criu.options: names from CRIUFeatures.
	CRIUOptions []string
	// CRIUGhostLimit is cr.criu.ghost-limit in bytes.
	CRIUGhostLimit uint64
	// CRIUIrmapScanPaths is cr.criu.irmap-scan-paths: where CRIU looks for files watched by
	// inotify/fanotify whose file handle it cannot open.
	CRIUIrmapScanPaths []string
	// CheckpointImage is cr.checkpoint.image: the OCI repository checkpoints are pushed to and
	// pulled from ("" for off).
	CheckpointImage string
	// CheckpointCache is cr.checkpoint.cache: the node's cache of pulled checkpoints (a
	// read-write hostPath shared by the node's restore pods).
	CheckpointCache string
	// PullTimeout is cr.checkpoint.pull-timeout: how long a restore spends getting a checkpoint
	// from the registry (its own pull, or waiting for another pod's) before starting cold.
	PullTimeout time.Duration
	// RestoreFetch is cr.restore.fetch: "full" (pull the whole checkpoint into the node cache,
	// then restore) or "lazy" (fetch the small files, restore, and fetch the page images on
	// demand by range while the rest streams into the node cache).
	RestoreFetch string
	// FetchTimeout is cr.restore.fetch-timeout: how long a lazy fetch may make no progress
	// before the restore is abandoned (the app stopped, a cold start).
	FetchTimeout time.Duration
	// SigningKey is cr.checkpoint.signing-key: a PEM private key (ECDSA P-256 or Ed25519)
	// that signs pushed checkpoints, cosign-compatibly ("" for unsigned).
	SigningKey string
	// VerifyKey is cr.checkpoint.verify-key: a PEM public key; when set, a restore accepts
	// only registry checkpoints signed by its pair.
	VerifyKey string
	// EncryptionKey is cr.checkpoint.encryption-key: a PEM public key (ECDSA or RSA) the pushed
	// layers are encrypted for (ocicrypt JWE).
	EncryptionKey string
	// DecryptionKey is cr.checkpoint.decryption-key: the PEM private key of EncryptionKey, which
	// decrypts pulled layers.
	DecryptionKey string
	// User is cr.container.user: USER or USER:GROUP the app runs as ("" for crwrap's own, root).
	User string
	// RootfsSize is cr.container.rootfs-size in bytes: what the app may write to its root
	// filesystem (a tmpfs under its overlay).
	RootfsSize int64

	// File is the properties file that was read ("" when none was).
	File string
}

// CheckpointPath is <root>/<directory>/<name>.
func (s *Settings) CheckpointPath() string {
	return joinClean(s.CheckpointRoot, s.CheckpointDirectory, s.CheckpointName)
}
