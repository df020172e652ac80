package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/specconv"

	"github.com/crwrap/crwrap/templates"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func baseInput() Input {
	return Input{
		ID:          "crwrap-app",
		Rootfs:      "/run/crwrap/rootfs",
		Args:        []string{"/app/server", "--port", "8080"},
		Env:         []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"},
		Cwd:         "/",
		Hostname:    "pod-1",
		EtcFiles:    []string{"/etc/hosts", "/etc/resolv.conf", "/etc/hostname"},
		CgroupsPath: "/crwrap/crwrap-app",
	}
}

func trickyInput() Input {
	in := baseInput()
	in.Args = []string{"sh", "-c", "echo \"$HOME\" '${X}' \\ `id`\nprintf '%s\\n' \x01 </script> & done"}
	in.Env = append(in.Env, `QUOTED="a b"`, "MULTI=line1\nline2", "DOLLAR=$PATH ${HOME}", "UNICODE=héllo ☃")
	in.Cwd = "/srv/my app"
	in.UID, in.GID, in.AdditionalGids = 1000, 1000, []uint32{10, 27}
	in.Mounts = []string{"/data", "/var/cache/with \"quote\""}
	return in
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/spec -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the rendered output (run go test ./internal/spec -update and review the diff):\n%s", p, got)
	}
}

func TestRenderDefaultGolden(t *testing.T) {
	for name, in := range map[string]Input{"default": baseInput(), "tricky": trickyInput()} {
		t.Run(name, func(t *testing.T) {
			out, err := Execute(templates.DefaultName, templates.Default, in)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, name, out)
			s, err := RenderDefault(in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s.Process.Args, in.Args) || !reflect.DeepEqual(s.Process.Env, in.Env) ||
				s.Process.Cwd != in.Cwd || s.Root.Path != in.Rootfs || s.Linux.CgroupsPath != in.CgroupsPath {
				t.Errorf("values changed on the way: %+v", s.Process)
			}
			if s.Process.User.UID != in.UID || s.Process.User.GID != in.GID || !reflect.DeepEqual(s.Process.User.AdditionalGids, in.AdditionalGids) {
				t.Errorf("user %+v", s.Process.User)
			}
			if s.Hostname != "" {
				t.Errorf("hostname %q set without a UTS namespace", s.Hostname)
			}
			var binds []string
			for _, m := range s.Mounts {
				if m.Type == "bind" {
					binds = append(binds, m.Destination+" "+strings.Join(m.Options, ","))
				}
			}
			var want []string
			for _, f := range in.EtcFiles {
				want = append(want, f+" rbind,ro,nosuid,nodev")
			}
			for _, m := range in.Mounts {
				want = append(want, m+" rbind,rw")
			}
			if !reflect.DeepEqual(binds, want) {
				t.Errorf("binds %q, want %q", binds, want)
			}
			for _, ns := range s.Linux.Namespaces {
				if ns.Type == "uts" || ns.Type == "network" {
					t.Errorf("namespace %s", ns.Type)
				}
			}
		})
	}
}

func TestDefaultConvertsWithLibcontainer(t *testing.T) {
	for name, in := range map[string]Input{"default": baseInput(), "tricky": trickyInput()} {
		t.Run(name, func(t *testing.T) {
			s, err := RenderDefault(in)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: in.ID, Spec: s, NoPivotRoot: false})
			if err != nil {
				t.Fatalf("specconv: %v", err)
			}
			if cfg.Rootfs != in.Rootfs {
				t.Errorf("rootfs %q", cfg.Rootfs)
			}
		})
	}
}

// minimal is a small valid template; the bad cases below break it in one place each.
const minimal = `{
  "ociVersion": {{ ociVersion | json }},
  "process": {"args": {{ json .Args }}, "cwd": {{ json .Cwd }}, "user": {"uid": 0, "gid": 0}},
  "root": {"path": {{ json .Rootfs }}},
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm"},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs"}
  ],
  "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}
}
`

func TestRenderMinimal(t *testing.T) {
	if _, err := Render("minimal.tmpl", minimal, baseInput()); err != nil {
		t.Fatal(err)
	}
}

func TestRenderBad(t *testing.T) {
	tests := []struct {
		name   string
		source string
		in     func(*Input)
		want   string
	}{
		{"parse error with line", strings.Replace(minimal, `{{ json .Cwd }}`, `{{ json .Cwd }`, 1), nil,
			`template my.tmpl: parse: template: my.tmpl:3: unexpected "}" in operand`},
		{"missing key", strings.Replace(minimal, ".Cwd", ".Workdir", 1), nil,
			`template my.tmpl: execute: template: my.tmpl:3:55: executing "my.tmpl" at <.Workdir>: can't evaluate field Workdir in type spec.Input`},
		{"unquoted value breaks JSON", strings.Replace(minimal, `{{ json .Cwd }}`, `{{ .Cwd }}`, 1), nil,
			`template my.tmpl: rendered JSON, line 3: invalid character '/' looking for beginning of value`},
		{"unknown field", strings.Replace(minimal, `"root": {`, `"root": {"pth": "x", `, 1), nil,
			`template my.tmpl: rendered JSON, line 4: json: unknown field "pth"`},
		{"trailing data", minimal + "{}", nil,
			`template my.tmpl: rendered JSON, line 14: data after the spec object`},
		{"empty output", "{{/* nothing */}}", nil, `template my.tmpl: rendered nothing`},
		{"missing /dev mount", strings.Replace(minimal, `{"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},`, "", 1), nil,
			`template my.tmpl: rendered spec: no mount for /dev`},
		{"missing /dev/shm mount", strings.Replace(minimal, `{"destination": "/dev/shm", "type": "tmpfs", "source": "shm"},`, "", 1), nil,
			`template my.tmpl: rendered spec: no mount for /dev/shm`},
		{"relative mount", strings.Replace(minimal, `"destination": "/sys"`, `"destination": "sys"`, 1), nil,
			`template my.tmpl: rendered spec: mounts[4]: destination "sys" is not absolute`},
		{"network namespace", strings.Replace(minimal, `{"type": "pid"}`, `{"type": "network"}`, 1), nil,
			`template my.tmpl: rendered spec: linux.namespaces has a network namespace: the app must share the pod's network`},
		{"no version", strings.Replace(minimal, `{{ ociVersion | json }}`, `""`, 1), nil,
			`template my.tmpl: rendered spec: ociVersion is not set`},
		{"other root", strings.Replace(minimal, `{{ json .Rootfs }}`, `"/"`, 1), nil,
			`template my.tmpl: rendered spec: root.path is "/", want the prepared root filesystem "/run/crwrap/rootfs"`},
		{"relative root", minimal, func(in *Input) { in.Rootfs = "rootfs" },
			`template my.tmpl: rendered spec: root.path "rootfs" is not absolute`},
		{"empty args", minimal, func(in *Input) { in.Args = nil },
			`template my.tmpl: rendered spec: process.args is empty`},
		{"relative cwd", minimal, func(in *Input) { in.Cwd = "srv" },
			`template my.tmpl: rendered spec: process.cwd "srv" is not absolute`},
		{"template ignores the user", minimal, func(in *Input) { in.UID, in.GID = 1000, 1001 },
			`template my.tmpl: rendered spec: process.user is 0:0, want 1000:1001 (cr.container.user, else crwrap's user): use .UID and .GID`},
		{"no linux", strings.Replace(minimal, `"linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}`, `"hostname": "x"`, 1), nil,
			`template my.tmpl: rendered spec: linux is not set`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := baseInput()
			if tt.in != nil {
				tt.in(&in)
			}
			_, err := Render("my.tmpl", tt.source, in)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%v does not match ErrInvalid", err)
			}
			if err.Error() != tt.want {
				t.Errorf("got  %s\nwant %s", err, tt.want)
			}
		})
	}
}

func TestJSONFunc(t *testing.T) {
	f := Funcs()["json"].(func(any) (string, error))
	for _, v := range []any{"a\"b\n$X ${Y} <&>", []string{"x", "y\tz"}, []uint32{1, 2}, 7, nil} {
		s, err := f(v)
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(s, "\n") {
			t.Errorf("json(%q) = %q spans lines", v, s)
		}
		var back any
		if err := json.Unmarshal([]byte(s), &back); err != nil {
			t.Errorf("json(%q) = %q: %v", v, s, err)
		}
	}
	if s, _ := f("<&>"); s != `"<&>"` {
		t.Errorf("HTML escaped: %s", s)
	}
}
