package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/magiconair/properties"
)

// LoadOptions is everything Load reads besides the properties file itself.
type LoadOptions struct {
	// Path is the properties file. When empty, $CR_PROPERTIES (from Env) names it explicitly,
	// else DefaultPath is used.
	Path string
	// Explicit says Path was named by the user (--config): then a missing or unreadable file is
	// an error. The default file may be absent.
	Explicit bool
	// Env is the environment as KEY=VALUE strings (os.Environ()). Ignored when LookupEnv is set.
	Env []string
	// LookupEnv, when set, is used instead of Env to read the environment.
	LookupEnv func(name string) (string, bool)
	// Flags maps cr.* keys to values set on the command line (cr.mode from --mode,
	// cr.log.format from --log-format, ...).
	Flags map[string]string
	// FlagNames optionally maps a key of Flags to the flag that set it, for error messages;
	// by default FlagName(key).
	FlagNames map[string]string
	// Args is the app command given after "--"; when empty cr.container.command is used.
	Args []string
	// CommandOptional lets commands that start no app (doctor, inspect, ...) load the settings
	// without an app command; Settings.Command is then empty.
	CommandOptional bool
}

// origin says where a value came from.
type origin struct {
	kind   string // "flag", "env", "file" or "default"
	file   string
	line   int
	source string // "env CR_MODE", "flag --mode"
}

func (o origin) errorf(key, format string, args ...any) *Error {
	e := &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
	switch o.kind {
	case "flag", "env":
		e.Source = o.source
	case "file":
		e.File, e.Line = o.file, o.line
	}
	return e
}

// Load reads the properties file, applies the environment and flags over it, checks every
// value and returns the settings. Every error it returns is an *Error matching ErrInvalid.
// An empty value (KEY= in the file, CR_X= in the environment, --x="") counts as not set at that
// level. Keys not starting with "cr." are ignored, in the file and in Flags alike.
func Load(opts LoadOptions) (*Settings, error) {
	lookup := opts.LookupEnv
	if lookup == nil {
		env := envMap(opts.Env)
		lookup = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	}
	path, explicit := opts.Path, opts.Explicit
	if path == "" {
		if p, ok := lookup(PathEnv); ok && p != "" {
			path, explicit = p, true
		} else {
			path, explicit = DefaultPath, false
		}
	}

	s := &Settings{}
	fileVals, fileLines, err := readFile(path, explicit)
	if err != nil {
		return nil, err
	}
	if fileVals != nil {
		s.File = path
	}

	// Unknown keys in the file first, in line order.
	var unknown []string
	for k := range fileVals {
		if _, ok := lookupKey(k); !ok {
			unknown = append(unknown, k)
		}
	}
	sort.Slice(unknown, func(i, j int) bool {
		li, lj := fileLines[unknown[i]], fileLines[unknown[j]]
		if li != lj {
			return li < lj
		}
		return unknown[i] < unknown[j]
	})
	if len(unknown) > 0 {
		k := unknown[0]
		return nil, &Error{File: path, Line: fileLines[k], Key: k,
			Msg: fmt.Sprintf("unknown key (did you mean %s?)", nearestKey(k))}
	}
	flagKeys := make([]string, 0, len(opts.Flags))
	for k := range opts.Flags {
		flagKeys = append(flagKeys, k)
	}
	sort.Strings(flagKeys)
	for _, k := range flagKeys {
		if _, ok := lookupKey(k); !ok && strings.HasPrefix(k, "cr.") {
			return nil, &Error{Source: "flag " + flagName(opts, k), Key: k,
				Msg: fmt.Sprintf("unknown key (did you mean %s?)", nearestKey(k))}
		}
	}

	origins := map[string]origin{}
	for _, def := range keys {
		v, o := def.def, origin{kind: "default"}
		if fv, ok := fileVals[def.name]; ok && strings.TrimSpace(fv) != "" {
			v, o = fv, origin{kind: "file", file: path, line: fileLines[def.name]}
		}
		if ev, ok := lookup(EnvName(def.name)); ok && strings.TrimSpace(ev) != "" {
			v, o = ev, origin{kind: "env", source: "env " + EnvName(def.name)}
		}
		if fv, ok := opts.Flags[def.name]; ok && strings.TrimSpace(fv) != "" {
			v, o = fv, origin{kind: "flag", source: "flag " + flagName(opts, def.name)}
		}
		origins[def.name] = o
		if err := def.set(s, strings.TrimSpace(v)); err != nil {
			return nil, o.errorf(def.name, "%v", err)
		}
	}

	// Checks across keys: where a value is missing, point at the file when there is one.
	missing := func(key, format string, args ...any) *Error {
		return &Error{File: s.File, Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	if s.Mode == ModeCheckpoint || s.Mode == ModeRestore {
		hint := fmt.Sprintf("set it in the properties file or %s", EnvName(KeyCheckpointName))
		if s.CheckpointName == "" {
			if s.File == "" {
				hint += fmt.Sprintf("; no properties file at %s", path)
			}
			return nil, missing(KeyCheckpointName, "required in %s mode (%s)", s.Mode, hint)
		}
		if s.CheckpointDirectory == "" {
			hint = fmt.Sprintf("set it in the properties file or %s", EnvName(KeyCheckpointDirectory))
			if s.File == "" {
				hint += fmt.Sprintf("; no properties file at %s", path)
			}
			return nil, missing(KeyCheckpointDirectory, "required in %s mode (%s)", s.Mode, hint)
		}
	}
	if len(opts.Args) > 0 {
		s.Command = append([]string(nil), opts.Args...)
		if s.Command[0] == "" {
			return nil, &Error{Source: "command line", Key: "--", Msg: "the app command after -- starts with an empty word"}
		}
	} else if len(s.Command) == 0 {
		if opts.CommandOptional {
			return s, nil
		}
		if o := origins[KeyCommand]; o.kind != "default" {
			return nil, o.errorf(KeyCommand, "the app command is empty")
		}
		return nil, missing(KeyCommand, "no app command: give one after -- or set cr.container.command")
	} else if s.Command[0] == "" {
		return nil, origins[KeyCommand].errorf(KeyCommand, "the app command starts with an empty word")
	}
	return s, nil
}

func flagName(opts LoadOptions, key string) string {
	if n, ok := opts.FlagNames[key]; ok && n != "" {
		return n
	}
	return FlagName(key)
}

func envMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v // later entries win, as in os/exec
		}
	}
	return m
}

// MaxFileSize is the largest properties file Load reads: what a Kubernetes ConfigMap holds.
const MaxFileSize = 1 << 20

// readFile returns the cr.* keys of the file and the line of each; nil maps when the file is
// absent and was not named explicitly. It reads at most MaxFileSize bytes.
func readFile(path string, explicit bool) (map[string]string, map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return nil, nil, nil
		}
		return nil, nil, &Error{File: path, Msg: "cannot read properties file: " + errText(err)}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, nil, &Error{File: path, Msg: "cannot read properties file: " + errText(err)}
	}
	if len(data) > MaxFileSize {
		return nil, nil, &Error{File: path, Msg: fmt.Sprintf("properties file is larger than %d bytes (1 MiB, what a ConfigMap holds)", MaxFileSize)}
	}
	vals, lines, perr := parse(data)
	if perr != nil {
		perr.File = path
		return nil, nil, perr
	}
	return vals, lines, nil
}

// errText drops the path a *fs.PathError repeats.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

var libLine = regexp.MustCompile(`^properties: Line (\d+): (.*)$`)

// parse reads a properties text with expansion disabled, so values stay as written, and keeps
// only the cr.* keys. A NUL byte anywhere, or a cr.* value that decodes to one (\u0000), is an
// error at its line: no key of crwrap takes one, and a path or command would be cut there.
func parse(data []byte) (vals map[string]string, lines map[string]int, perr *Error) {
	if i := bytes.IndexByte(data, 0); i >= 0 {
		line := 1 + bytes.Count(data[:i], []byte("\n"))
		e := &Error{Line: line, Msg: "contains a NUL byte (a properties file is text)"}
		// Name the key defined on that line, if any.
		for k, l := range keyLines(string(data[:i])) {
			if _, known := lookupKey(k); l == line && known {
				e.Key = k
			}
		}
		return nil, nil, e
	}
	defer func() {
		// The library reports bad input by panicking internally; never let one escape.
		if r := recover(); r != nil {
			vals, lines, perr = nil, nil, &Error{Msg: fmt.Sprintf("cannot parse properties: %v", r)}
		}
	}()
	l := &properties.Loader{Encoding: properties.UTF8, DisableExpansion: true}
	p, err := l.LoadBytes(data)
	if err != nil {
		e := &Error{Msg: "cannot parse properties: " + err.Error()}
		if m := libLine.FindStringSubmatch(err.Error()); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Msg = "cannot parse properties: " + m[2]
		}
		return nil, nil, e
	}
	all := keyLines(string(data))
	vals, lines = map[string]string{}, map[string]int{}
	for _, k := range p.Keys() {
		if !strings.HasPrefix(k, "cr.") {
			continue
		}
		v, _ := p.Get(k)
		if strings.ContainsRune(v, 0) {
			return nil, nil, &Error{Line: all[k], Key: k, Msg: "value contains a NUL character (\\u0000)"}
		}
		vals[k] = v
		lines[k] = all[k]
	}
	return vals, lines, nil
}
