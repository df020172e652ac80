package config

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/kballard/go-shellquote"
)

// The keys of cr.properties, as in the DESIGN.md table.
const (
	KeyCheckpointName      = "cr.checkpoint.name"
	KeyCheckpointDirectory = "cr.checkpoint.directory"
	KeyCheckpointRoot      = "cr.checkpoint.root"
	KeyReadiness           = "cr.container.readiness"
	KeyReadinessInterval   = "cr.readiness.interval"
	KeyReadinessTimeout    = "cr.readiness.timeout"
	KeyCheckpointWarmup    = "cr.checkpoint.warmup"
	KeyCheckpointExit      = "cr.checkpoint.exit"
	KeyCheckpointRefresh   = "cr.checkpoint.refresh"
	KeyRestoreFallback     = "cr.restore.fallback"
	KeyRestoreWait         = "cr.restore.wait"
	KeyRestoreVerify       = "cr.restore.verify"
	KeyRestoreLazy         = "cr.restore.lazy"
	KeyCommand             = "cr.container.command"
	KeyTemplate            = "cr.container.template"
	KeyMounts              = "cr.container.mounts"
	KeyCRIUPath            = "cr.criu.path"
	KeyTCPEstablished      = "cr.criu.tcp-established"
	KeyLogFormat           = "cr.log.format"
	KeyLogLevel            = "cr.log.level"
	KeyMetricsAddress      = "cr.metrics.address"
	KeyMode                = "cr.mode"
	KeyCheckpointTimeout   = "cr.checkpoint.timeout"
	KeyCRIUOptions         = "cr.criu.options"
	KeyCRIUGhostLimit      = "cr.criu.ghost-limit"
	KeyCRIUIrmapScanPaths  = "cr.criu.irmap-scan-paths"
	KeyCheckpointImage     = "cr.checkpoint.image"
	KeyCheckpointCache     = "cr.checkpoint.cache"
	KeyPullTimeout         = "cr.checkpoint.pull-timeout"
	KeyRestoreFetch        = "cr.restore.fetch"
	KeyFetchTimeout        = "cr.restore.fetch-timeout"
	KeySigningKey          = "cr.checkpoint.signing-key"
	KeyVerifyKey           = "cr.checkpoint.verify-key"
	KeyEncryptionKey       = "cr.checkpoint.encryption-key"
	KeyDecryptionKey       = "cr.checkpoint.decryption-key"
)

// Keys of the app's user and root filesystem.
const (
	KeyContainerUser = "cr.container.user"
	KeyRootfsSize    = "cr.container.rootfs-size"
)

// DefaultRootfsSize is the default of cr.container.rootfs-size.
const DefaultRootfsSize = "1Gi"

// DefaultPath is where the properties file is looked for when neither --config nor
// $CR_PROPERTIES names one.
const DefaultPath = "/etc/cr.properties"

// PathEnv is the environment variable that names the properties file explicitly.
const PathEnv = "CR_PROPERTIES"

// keyDef describes one key: its default (as text, parsed like any other value) and how its
// value is checked and stored.
type keyDef struct {
	name string
	def  string
	set  func(s *Settings, v string) error
}

// keys is the table, in the order problems are reported.
var keys = []keyDef{
	{KeyMode, string(ModeRun), func(s *Settings, v string) error {
		m, err := oneOf(v, "mode", "run", "checkpoint", "restore")
		s.Mode = Mode(m)
		return err
	}},
	{KeyCheckpointName, "", setName},
	{KeyCheckpointDirectory, "", setDirectory},
	{KeyCheckpointRoot, "/cr", func(s *Settings, v string) error {
		p, err := absPath(v)
		s.CheckpointRoot = p
		return err
	}},
	{KeyReadiness, "", func(s *Settings, v string) error {
		s.Readiness = v
		return checkProbe(v)
	}},
	{KeyReadinessInterval, "20ms", func(s *Settings, v string) (err error) {
		s.ReadinessInterval, err = duration(v, false)
		return err
	}},
	{KeyReadinessTimeout, "10m", func(s *Settings, v string) (err error) {
		s.ReadinessTimeout, err = duration(v, false)
		return err
	}},
	{KeyCheckpointWarmup, "", func(s *Settings, v string) error {
		s.CheckpointWarmup = v
		return checkProbe(v)
	}},
	{KeyCheckpointExit, "false", func(s *Settings, v string) (err error) {
		s.CheckpointExit, err = boolean(v)
		return err
	}},
	{KeyCheckpointRefresh, "auto", func(s *Settings, v string) (err error) {
		s.CheckpointRefresh, err = oneOf(v, "refresh policy", "auto", "always")
		return err
	}},
	{KeyRestoreFallback, "cold", func(s *Settings, v string) (err error) {
		s.RestoreFallback, err = oneOf(v, "fallback", "cold", "fail")
		return err
	}},
	{KeyRestoreWait, "0s", func(s *Settings, v string) (err error) {
		s.RestoreWait, err = duration(v, true)
		return err
	}},
	{KeyRestoreVerify, "size", func(s *Settings, v string) (err error) {
		s.RestoreVerify, err = oneOf(v, "verification", "size", "digest")
		return err
	}},
	{KeyRestoreLazy, "true", func(s *Settings, v string) (err error) {
		s.RestoreLazy, err = boolean(v)
		return err
	}},
	{KeyCommand, "", setCommand},
	{KeyTemplate, "", func(s *Settings, v string) error {
		s.Template = v
		return nil
	}},
	{KeyMounts, "", setMounts},
	{KeyCRIUPath, "", func(s *Settings, v string) error {
		s.CRIUPath = v
		return nil
	}},
	{KeyTCPEstablished, "false", func(s *Settings, v string) (err error) {
		s.TCPEstablished, err = boolean(v)
		return err
	}},
	{KeyLogFormat, "text", func(s *Settings, v string) (err error) {
		s.LogFormat, err = oneOf(v, "log format", "text", "json")
		return err
	}},
	{KeyLogLevel, "info", func(s *Settings, v string) (err error) {
		s.LogLevel, err = oneOf(strings.ToLower(v), "log level",
			"panic", "fatal", "error", "warn", "warning", "info", "debug", "trace")
		return err
	}},
	{KeyMetricsAddress, "", setMetrics},
	{KeyCheckpointTimeout, "5m", func(s *Settings, v string) (err error) {
		s.CheckpointTimeout, err = duration(v, false)
		return err
	}},
	{KeyCRIUOptions, "", setCRIUOptions},
	{KeyCRIUGhostLimit, "1M", func(s *Settings, v string) (err error) {
		s.CRIUGhostLimit, err = size(v)
		return err
	}},
	{KeyCRIUIrmapScanPaths, "", func(s *Settings, v string) (err error) {
		s.CRIUIrmapScanPaths, err = pathList(v, "irmap scan path")
		return err
	}},
	{KeyCheckpointImage, "", setImage},
	{KeyCheckpointCache, "/cr-cache", func(s *Settings, v string) (err error) {
		s.CheckpointCache, err = absPath(v)
		return err
	}},
	{KeyPullTimeout, "2m", func(s *Settings, v string) (err error) {
		s.PullTimeout, err = duration(v, false)
		return err
	}},
	{KeyRestoreFetch, "full", func(s *Settings, v string) (err error) {
		s.RestoreFetch, err = oneOf(v, "fetch mode", "full", "lazy")
		return err
	}},
	{KeyFetchTimeout, "10s", func(s *Settings, v string) (err error) {
		s.FetchTimeout, err = duration(v, false)
		return err
	}},
	{KeySigningKey, "", setSigningKey},
	{KeyVerifyKey, "", setVerifyKey},
	{KeyEncryptionKey, "", setEncryptionKey},
	{KeyDecryptionKey, "", setDecryptionKey},
	{KeyContainerUser, "", setUser},
	{KeyRootfsSize, DefaultRootfsSize, func(s *Settings, v string) (err error) {
		s.RootfsSize, err = rootfsSize(v)
		return err
	}},
}

// setImage checks cr.checkpoint.image: an OCI repository, without tag or digest (crwrap
// derives the tag).
func setImage(s *Settings, v string) error {
	s.CheckpointImage = v
	if v == "" {
		return nil
	}
	if strings.ContainsAny(v, "@") || strings.Contains(v[strings.LastIndex(v, "/")+1:], ":") {
		return fmt.Errorf("checkpoint image %q must be a repository without tag or digest (crwrap derives the tag)", v)
	}
	if _, err := name.NewRepository(v); err != nil {
		return fmt.Errorf("checkpoint image %q is not an OCI repository: %v", v, err)
	}
	return nil
}

// Keys returns every known cr.* key, in the order of the DESIGN.md table.
func Keys() []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.name
	}
	return out
}

// Default returns the built-in default of key as text ("" for keys without one), and whether
// key is known.
func Default(key string) (string, bool) {
	for _, k := range keys {
		if k.name == key {
			return k.def, true
		}
	}
	return "", false
}

// EnvName returns the environment variable that sets key: upper case, with "." and "-"
// replaced by "_" (cr.criu.tcp-established → CR_CRIU_TCP_ESTABLISHED).
func EnvName(key string) string {
	return strings.NewReplacer(".", "_", "-", "_").Replace(strings.ToUpper(key))
}

// FlagName returns the command-line flag that sets key by default: the key without "cr.",
// with "." replaced by "-" (cr.log.format → --log-format).
func FlagName(key string) string {
	return "--" + strings.ReplaceAll(strings.TrimPrefix(key, "cr."), ".", "-")
}

func lookupKey(name string) (keyDef, bool) {
	for _, k := range keys {
		if k.name == name {
			return k, true
		}
	}
	return keyDef{}, false
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func setName(s *Settings, v string) error {
	s.CheckpointName = v
	switch {
	case v == "":
		return nil
	case len(v) > 200:
		return fmt.Errorf("checkpoint name is %d characters long, at most 200 allowed", len(v))
	case !nameRE.MatchString(v):
		return fmt.Errorf("invalid checkpoint name %q: use letters, digits, '.', '_' and '-', starting with a letter or digit (no path separators)", v)
	}
	return nil
}

func setDirectory(s *Settings, v string) error {
	s.CheckpointDirectory = v
	if v == "" {
		return nil
	}
	if strings.HasPrefix(v, "/") {
		return fmt.Errorf("checkpoint directory %q must be relative to cr.checkpoint.root", v)
	}
	for _, el := range strings.Split(v, "/") {
		if el == ".." {
			return fmt.Errorf("checkpoint directory %q must not contain \"..\"", v)
		}
	}
	if strings.ContainsRune(v, 0) {
		return fmt.Errorf("checkpoint directory %q contains a NUL byte", v)
	}
	c := path.Clean(v)
	if c == "." {
		return fmt.Errorf("checkpoint directory %q is empty once cleaned", v)
	}
	s.CheckpointDirectory = c
	return nil
}

func absPath(v string) (string, error) {
	if !strings.HasPrefix(v, "/") {
		return v, fmt.Errorf("path %q must be absolute", v)
	}
	if strings.ContainsRune(v, 0) {
		return v, fmt.Errorf("path %q contains a NUL byte", v)
	}
	return path.Clean(v), nil
}

func setCommand(s *Settings, v string) error {
	if v == "" {
		s.Command = nil
		return nil
	}
	argv, err := shellquote.Split(v)
	if err != nil {
		switch err {
		case shellquote.UnterminatedSingleQuoteError:
			return fmt.Errorf("unbalanced single quote in command %q", v)
		case shellquote.UnterminatedDoubleQuoteError:
			return fmt.Errorf("unbalanced double quote in command %q", v)
		case shellquote.UnterminatedEscapeError:
			return fmt.Errorf("command %q ends with a lone backslash", v)
		}
		return fmt.Errorf("cannot split command %q: %v", v, err)
	}
	s.Command = argv
	return nil
}

func setMounts(s *Settings, v string) error {
	s.Mounts = nil
	seen := map[string]bool{}
	for _, m := range strings.Split(v, ",") {
		m = strings.TrimSpace(m)
		if m == "" {
			continue
		}
		switch {
		case !strings.HasPrefix(m, "/"):
			return fmt.Errorf("mount %q must be an absolute path", m)
		case path.Clean(m) != m:
			return fmt.Errorf("mount %q is not a clean path (want %q)", m, path.Clean(m))
		case m == "/":
			return fmt.Errorf("mount %q: the pod's root cannot be bind-mounted into the app", m)
		case strings.ContainsRune(m, 0):
			return fmt.Errorf("mount %q contains a NUL byte", m)
		case seen[m]:
			return fmt.Errorf("mount %q is listed twice", m)
		}
		seen[m] = true
		s.Mounts = append(s.Mounts, m)
	}
	return nil
}

func setMetrics(s *Settings, v string) error {
	s.MetricsAddress = v
	if v == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("metrics address %q is not host:port: %v", v, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("metrics address %q: port %q is not a number 0-65535", v, port)
	}
	return nil
}

// checkProbe checks the URL forms of a readiness or warmup value; anything else is a shell
// command and reaches the shell unchanged.
func checkProbe(v string) error {
	lower := strings.ToLower(v)
	switch {
	case strings.HasPrefix(lower, "http://"), strings.HasPrefix(lower, "https://"):
		u, err := url.Parse(v)
		if err != nil {
			return fmt.Errorf("invalid URL %q: %v", v, err)
		}
		if u.Host == "" {
			return fmt.Errorf("URL %q has no host", v)
		}
	case strings.HasPrefix(lower, "tcp://"):
		hp := v[len("tcp://"):]
		_, port, err := net.SplitHostPort(hp)
		if err != nil {
			return fmt.Errorf("%q is not tcp://host:port: %v", v, err)
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return fmt.Errorf("%q: port %q is not a number 0-65535", v, port)
		}
	}
	return nil
}

func duration(v string, zeroOK bool) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (Go syntax, e.g. 20ms, 5s, 10m)", v)
	}
	if d < 0 || (d == 0 && !zeroOK) {
		if zeroOK {
			return 0, fmt.Errorf("duration %q must not be negative", v)
		}
		return 0, fmt.Errorf("duration %q must be greater than 0", v)
	}
	return d, nil
}

func boolean(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return false, fmt.Errorf("invalid boolean %q (want true or false)", v)
}

func oneOf(v, what string, allowed ...string) (string, error) {
	for _, a := range allowed {
		if v == a {
			return v, nil
		}
	}
	return v, fmt.Errorf("unknown %s %q (want %s)", what, v, strings.Join(allowed, ", "))
}

// CRIUFeatures are the CRIU options cr.criu.options accepts, each with what it is for; the
// names are CRIU's own (its --NAME options).
var CRIUFeatures = []struct{ Name, Doc string }{
	{"file-locks", "checkpoint flock/POSIX/OFD locks (always on)"},
	{"link-remap", "save files that are open but were deleted by linking them back (CRIU --link-remap)"},
	{"ext-unix-sk", "allow unix sockets connected to a peer outside the app (CRIU --ext-unix-sk)"},
	{"tcp-skip-in-flight", "drop TCP connections that are half-open at the dump instead of failing (CRIU --skip-in-flight)"},
	{"tcp-close", "restore established TCP connections closed (CRIU --tcp-close)"},
	{"shell-job", "allow a process group or session of the app that began outside it (CRIU --shell-job)"},
	{"force-irmap", "find inotify/fanotify watched files by scanning paths, not by file handle (CRIU --force-irmap)"},
	{"evasive-devices", "open device files by path when their device number changed (CRIU --evasive-devices)"},
	{"skip-file-rwx-check", "restore files whose permissions changed since the dump (CRIU --skip-file-rwx-check)"},
}

func setCRIUOptions(s *Settings, v string) error {
	s.CRIUOptions = nil
	seen := map[string]bool{}
	for _, o := range strings.Split(v, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		known := false
		for _, f := range CRIUFeatures {
			known = known || f.Name == o
		}
		if !known {
			names := make([]string, len(CRIUFeatures))
			for i, f := range CRIUFeatures {
				names[i] = f.Name
			}
			return fmt.Errorf("unknown CRIU option %q (want a comma-separated list of %s)", o, strings.Join(names, ", "))
		}
		if seen[o] {
			return fmt.Errorf("CRIU option %q is listed twice", o)
		}
		seen[o] = true
		s.CRIUOptions = append(s.CRIUOptions, o)
	}
	return nil
}

var userPartRE = regexp.MustCompile(`^[A-Za-z0-9_.][A-Za-z0-9_.-]*$`)

// setUser checks cr.container.user: USER or USER:GROUP, each a name (looked up in the app's
// /etc/passwd and /etc/group when the app starts) or a number.
func setUser(s *Settings, v string) error {
	s.User = v
	if v == "" {
		return nil
	}
	u, g, hasGroup := strings.Cut(v, ":")
	for _, part := range []string{u, g} {
		if part == "" && (part == u || hasGroup) {
			return fmt.Errorf("user %q: want USER or USER:GROUP (names or numbers)", v)
		}
		if part != "" && !userPartRE.MatchString(part) {
			return fmt.Errorf("user %q: %q is not a user or group name or number", v, part)
		}
	}
	return nil
}

var sizeRE = regexp.MustCompile(`^([0-9]+)([KMGT]i?)?$`)

// size parses a byte count with an optional binary suffix: K, M, G, T as CRIU writes them or
// Ki, Mi, Gi, Ti as Kubernetes quantities do (both powers of 1024).
func size(v string) (uint64, error) {
	m := sizeRE.FindStringSubmatch(v)
	if m == nil {
		return 0, fmt.Errorf("invalid size %q (bytes, or a number with K, M, G, T or Ki, Mi, Gi, Ti, e.g. 512Mi)", v)
	}
	n, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %v", v, err)
	}
	shift := map[string]uint{"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[strings.TrimSuffix(m[2], "i")]
	if n == 0 || n > (1<<63)>>shift {
		return 0, fmt.Errorf("size %q must be between 1 byte and 8 EiB", v)
	}
	return n << shift, nil
}

// rootfsSize parses cr.container.rootfs-size: a size of at least 1Mi.
func rootfsSize(v string) (int64, error) {
	n, err := size(v)
	if err != nil {
		return 0, err
	}
	if n < 1<<20 {
		return 0, fmt.Errorf("size %q is less than 1Mi", v)
	}
	if n > 1<<62 {
		return 0, fmt.Errorf("size %q is too large", v)
	}
	return int64(n), nil
}

// pathList parses comma-separated absolute, clean paths (what is "what" in errors).
func pathList(v, what string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		switch {
		case strings.ContainsRune(p, 0):
			return nil, fmt.Errorf("%s %q contains a NUL byte", what, p)
		case !strings.HasPrefix(p, "/"):
			return nil, fmt.Errorf("%s %q must be an absolute path", what, p)
		case path.Clean(p) != p:
			return nil, fmt.Errorf("%s %q is not a clean path (want %q)", what, p, path.Clean(p))
		case strings.ContainsAny(p, " \t\n\r"):
			return nil, fmt.Errorf("%s %q contains white space (CRIU's configuration file cannot hold it)", what, p)
		case seen[p]:
			return nil, fmt.Errorf("%s %q is listed twice", what, p)
		}
		seen[p] = true
		out = append(out, p)
	}
	return out, nil
}
