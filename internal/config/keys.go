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
	{KeyContainerUser, "", setUser},
	{KeyRootfsSize, DefaultRootfsSize, func(s *Settings, v string) (err error) {
		s.RootfsSize, err = size(v)
		return err
	}},
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

var sizeRE = regexp.MustCompile(`^([0-9]+)(Ki|Mi|Gi|Ti)?$`)

// size parses a byte count with an optional binary suffix (Ki, Mi, Gi, Ti, as in Kubernetes
// quantities); at least 1 MiB.
func size(v string) (int64, error) {
	m := sizeRE.FindStringSubmatch(v)
	if m == nil {
		return 0, fmt.Errorf("invalid size %q (bytes, or a number with Ki, Mi, Gi or Ti, e.g. 512Mi)", v)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	shift := map[string]uint{"": 0, "Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40}[m[2]]
	if err != nil || n > (1<<62)>>shift {
		return 0, fmt.Errorf("size %q is too large", v)
	}
	n <<= shift
	if n < 1<<20 {
		return 0, fmt.Errorf("size %q is less than 1Mi", v)
	}
	return n, nil
}
