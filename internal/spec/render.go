package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
	"text/template"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crwrap/crwrap/templates"
)

// ErrInvalid is matched (errors.Is) by every error of Render and Validate: a template that
// does not parse or execute, or renders to something that is not a usable spec. The caller
// maps it to exit code 2.
var ErrInvalid = errors.New("invalid container spec")

// Error is a problem with a template or the spec it rendered.
type Error struct {
	// Template is the template's name (a path, or the built-in template's name).
	Template string
	// Msg says what is wrong, on one line.
	Msg string
}

// Error returns "template NAME: MSG".
func (e *Error) Error() string {
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace("template " + e.Template + ": " + e.Msg)
}

// Is reports whether target is ErrInvalid.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// Funcs are the functions templates may call besides text/template's builtins: json encodes
// any value as JSON (use it for every string and list), ociVersion is the runtime-spec
// version crwrap is built with.
func Funcs() template.FuncMap {
	return template.FuncMap{
		"json": func(v any) (string, error) {
			var b bytes.Buffer
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(v); err != nil {
				return "", err
			}
			return strings.TrimSuffix(b.String(), "\n"), nil
		},
		"ociVersion": func() string { return specs.Version },
	}
}

// Render parses source as a template called name, executes it over in, decodes the result
// strictly into a spec and validates it against in (see Validate). It does no I/O.
func Render(name, source string, in Input) (*specs.Spec, error) {
	out, err := Execute(name, source, in)
	if err != nil {
		return nil, err
	}
	s, err := Decode(name, out)
	if err != nil {
		return nil, err
	}
	if err := Validate(s, in); err != nil {
		return nil, &Error{Template: name, Msg: "rendered spec: " + err.Error()}
	}
	return s, nil
}

// Execute parses and executes the template and returns the text it produced, unchecked.
// Parse and execution errors name the template and the line (text/template's own
// "template: NAME:LINE: ..." form).
func Execute(name, source string, in Input) ([]byte, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(Funcs()).Parse(source)
	if err != nil {
		return nil, &Error{Template: name, Msg: "parse: " + err.Error()}
	}
	var b bytes.Buffer
	if err := t.Execute(&b, in); err != nil {
		return nil, &Error{Template: name, Msg: "execute: " + err.Error()}
	}
	return b.Bytes(), nil
}

// Decode reads one JSON document into a spec, rejecting unknown fields and trailing data;
// errors give the line of the rendered text.
func Decode(name string, out []byte) (*specs.Spec, error) {
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	var s specs.Spec
	if err := dec.Decode(&s); err != nil {
		off := dec.InputOffset()
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			off = se.Offset
		case errors.As(err, &te):
			off = te.Offset
		case errors.Is(err, io.EOF):
			return nil, &Error{Template: name, Msg: "rendered nothing"}
		default:
			// encoding/json reports an unknown field only once the whole object is read: find
			// the field's own line.
			if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
				if q := regexp.MustCompile(regexp.QuoteMeta(f) + `\s*:`).FindIndex(out); q != nil {
					off = int64(q[0])
				}
			}
		}
		return nil, &Error{Template: name, Msg: fmt.Sprintf("rendered JSON, line %d: %v", lineAt(out, off), err)}
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		rest := out[end:]
		off := end + int64(len(rest)-len(bytes.TrimLeft(rest, " \t\r\n")))
		return nil, &Error{Template: name, Msg: fmt.Sprintf("rendered JSON, line %d: data after the spec object", lineAt(out, off))}
	}
	return &s, nil
}

func lineAt(b []byte, off int64) int {
	if off > int64(len(b)) {
		off = int64(len(b))
	}
	if off < 0 {
		off = 0
	}
	return 1 + bytes.Count(b[:off], []byte("\n"))
}

// RequiredMounts are the mount destinations every spec must have: without its own /dev,
// libcontainer would set devices up on the pod's real /dev.
var RequiredMounts = []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/sys"}

// Validate checks what crwrap relies on: ociVersion set; root.path equal to in.Rootfs and
// absolute; process args non-empty, cwd absolute, user in.UID:in.GID; every mount destination absolute; the
// RequiredMounts present; no network namespace (the app shares the pod's network).
func Validate(s *specs.Spec, in Input) error {
	if s.Version == "" {
		return errors.New("ociVersion is not set")
	}
	if s.Root == nil || s.Root.Path == "" {
		return errors.New("root.path is not set")
	}
	if !path.IsAbs(s.Root.Path) {
		return fmt.Errorf("root.path %q is not absolute", s.Root.Path)
	}
	if s.Root.Path != in.Rootfs {
		return fmt.Errorf("root.path is %q, want the prepared root filesystem %q", s.Root.Path, in.Rootfs)
	}
	if s.Process == nil {
		return errors.New("process is not set")
	}
	if len(s.Process.Args) == 0 || s.Process.Args[0] == "" {
		return errors.New("process.args is empty")
	}
	if !path.IsAbs(s.Process.Cwd) {
		return fmt.Errorf("process.cwd %q is not absolute", s.Process.Cwd)
	}
	if u := s.Process.User; u.UID != in.UID || u.GID != in.GID {
		// A template that ignores .UID/.GID would silently run the app as another user.
		return fmt.Errorf("process.user is %d:%d, want %d:%d (cr.container.user, else crwrap's user): use .UID and .GID", u.UID, u.GID, in.UID, in.GID)
	}
	have := map[string]bool{}
	for i, m := range s.Mounts {
		if !path.IsAbs(m.Destination) {
			return fmt.Errorf("mounts[%d]: destination %q is not absolute", i, m.Destination)
		}
		have[path.Clean(m.Destination)] = true
	}
	for _, d := range RequiredMounts {
		if !have[d] {
			return fmt.Errorf("no mount for %s", d)
		}
	}
	if s.Linux == nil {
		return errors.New("linux is not set")
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return errors.New("linux.namespaces has a network namespace: the app must share the pod's network")
		}
	}
	return nil
}

// RenderDefault renders the built-in template (templates.Default).
func RenderDefault(in Input) (*specs.Spec, error) {
	return Render(templates.DefaultName, templates.Default, in)
}
