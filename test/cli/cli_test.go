package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crwrap/crwrap/test/harness"
)

// result is one finished crwrap.
type result struct {
	code           int
	stdout, stderr string
}

// crwrap runs the built crwrap with args and only env from the cr.* world (the test's own
// CR_* and CRWRAP_* variables are dropped, so that the runner's environment plays no part).
func crwrap(t *testing.T, env []string, args ...string) result {
	t.Helper()
	var clean []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CR_") && !strings.HasPrefix(kv, "CRWRAP_") {
			clean = append(clean, kv)
		}
	}
	cmd := exec.Command(harness.Crwrap(), args...)
	cmd.Env = append(clean, env...)
	cmd.Dir = t.TempDir()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatalf("start crwrap: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("crwrap %q still running after 20s\nstderr:\n%s", args, errb.String())
	}
	code := cmd.ProcessState.ExitCode()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	return result{code, out.String(), errb.String()}
}

// file writes content to name in dir and returns its path.
func file(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A template that fails to parse on its line 3.
const badParse = `{
  "ociVersion": {{ ociVersion | json }},
  "process": {{ .Nope }
}
`

// A template that renders JSON cut short.
const badJSON = `{ "ociVersion": {{ ociVersion | json }},
  "process": { "args": {{ json .Args }}
`

// defaultTemplateWithout is the repository's default template without its lines that
// contain any of drop.
func defaultTemplateWithout(t *testing.T, drop ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "templates", "config.json.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	removed := 0
next:
	for _, l := range strings.Split(string(b), "\n") {
		for _, d := range drop {
			if strings.Contains(l, d) {
				removed++
				continue next
			}
		}
		keep = append(keep, l)
	}
	if removed == 0 {
		t.Fatalf("the default template has no line with %q: update the test", drop)
	}
	return strings.Join(keep, "\n")
}

// Every bad input: exit 2 and one line on stderr that names where (file:line, a flag or an
// environment variable) and the key.
func TestBadInput(t *testing.T) {
	harness.RequireBuild(t)
	t.Parallel()
	type files map[string]string // name → content, written to the case's directory
	for _, tc := range []struct {
		name string
		// props is the properties file's content ("" = no file; CR_PROPERTIES points at an
		// empty one so that a host's /etc/cr.properties plays no part).
		props string
		files files
		env   []string
		// args; "$DIR" in them stands for the case's directory.
		args []string
		// want are the substrings of the one line; "$DIR" as in args, "$PROPS" is the
		// properties file.
		want []string
		// root: crwrap run checks for root before it reads the template, so without
		// root such a case is exit 1 and is skipped.
		root bool
	}{
		{name: "missing --config file",
			args: []string{"run", "--config", "$DIR/missing.properties", "--", "true"},
			want: []string{"$DIR/missing.properties", "no such file"}},
		{name: "missing CR_PROPERTIES file",
			env:  []string{"CR_PROPERTIES=$DIR/missing.properties"},
			args: []string{"run", "--", "true"},
			want: []string{"$DIR/missing.properties", "no such file"}},
		{name: "unknown key",
			props: "# comment\ncr.readiness.interval=20ms\ncr.container.readines=true\n",
			args:  []string{"run", "--", "true"},
			want:  []string{"$PROPS:3:", "cr.container.readines", "did you mean cr.container.readiness"}},
		{name: "unknown key in --set",
			args: []string{"run", "--set", "cr.checkpoint.nmae=x", "--", "true"},
			want: []string{"--set", "cr.checkpoint.nmae", "did you mean cr.checkpoint.name"}},
		{name: "bad duration",
			props: "cr.checkpoint.name=app\n\ncr.readiness.interval=5x\n",
			args:  []string{"run", "--", "true"},
			want:  []string{"$PROPS:3:", "cr.readiness.interval", `"5x"`}},
		{name: "bad duration in env",
			env:  []string{"CR_READINESS_TIMEOUT=ten"},
			args: []string{"run", "--", "true"},
			want: []string{"CR_READINESS_TIMEOUT", "cr.readiness.timeout", `"ten"`}},
		{name: "bad boolean",
			props: "cr.checkpoint.exit=maybe\n",
			args:  []string{"run", "--", "true"},
			want:  []string{"$PROPS:1:", "cr.checkpoint.exit", `"maybe"`}},
		{name: "unknown mode --mode",
			args: []string{"run", "--mode", "x", "--", "true"},
			want: []string{"--mode", "cr.mode", `"x"`}},
		{name: "unknown mode CR_MODE",
			env:  []string{"CR_MODE=x"},
			args: []string{"run", "--", "true"},
			want: []string{"CR_MODE", "cr.mode", `"x"`}},
		{name: "unknown mode in file",
			props: "cr.log.level=info\ncr.mode=x\n",
			args:  []string{"run", "--", "true"},
			want:  []string{"$PROPS:2:", "cr.mode", `"x"`}},
		{name: "checkpoint name with /",
			props: "cr.checkpoint.name=a/b\ncr.checkpoint.directory=apps\n",
			args:  []string{"checkpoint", "--", "true"},
			want:  []string{"$PROPS:1:", "cr.checkpoint.name", `"a/b"`}},
		{name: "checkpoint name ..",
			props: "cr.checkpoint.directory=apps\ncr.checkpoint.name=..\n",
			args:  []string{"checkpoint", "--", "true"},
			want:  []string{"$PROPS:2:", "cr.checkpoint.name", `".."`}},
		{name: "checkpoint name with other characters",
			props: "cr.checkpoint.directory=apps\ncr.checkpoint.name=a*b\n",
			args:  []string{"restore", "--", "true"},
			want:  []string{"$PROPS:2:", "cr.checkpoint.name", `"a*b"`}},
		{name: "absolute directory",
			props: "cr.checkpoint.name=app\ncr.checkpoint.directory=/abs\n",
			args:  []string{"checkpoint", "--", "true"},
			want:  []string{"$PROPS:2:", "cr.checkpoint.directory", `"/abs"`}},
		{name: ".. directory",
			props: "cr.checkpoint.name=app\ncr.checkpoint.directory=apps/../../etc\n",
			args:  []string{"checkpoint", "--", "true"},
			want:  []string{"$PROPS:2:", "cr.checkpoint.directory", `".."`}},
		{name: ".. directory (run --mode checkpoint)",
			props: "cr.checkpoint.name=app\ncr.checkpoint.directory=..\n",
			args:  []string{"run", "--mode", "checkpoint", "--", "true"},
			want:  []string{"$PROPS:2:", "cr.checkpoint.directory"}},
		{name: "empty app command",
			props: "cr.log.level=info\n",
			args:  []string{"run"},
			want:  []string{"$PROPS", "cr.container.command"}},
		{name: "empty app command after --",
			props: "cr.log.level=info\n",
			args:  []string{"run", "--"},
			want:  []string{"$PROPS", "cr.container.command"}},
		{name: "template fails to parse (render)",
			files: files{"bad.tmpl": badParse},
			props: "cr.container.template=$DIR/bad.tmpl\n",
			args:  []string{"render", "--", "true"},
			want:  []string{"$DIR/bad.tmpl:3"}},
		{name: "template fails to parse (run)", root: true,
			files: files{"bad.tmpl": badParse},
			props: "cr.container.template=$DIR/bad.tmpl\n",
			args:  []string{"run", "--", "true"},
			want:  []string{"$DIR/bad.tmpl:3"}},
		{name: "template renders invalid JSON (render)",
			files: files{"bad.tmpl": badJSON},
			props: "cr.container.template=$DIR/bad.tmpl\n",
			args:  []string{"render", "--", "true"},
			want:  []string{"$DIR/bad.tmpl", "JSON", "line"}},
		{name: "template renders invalid JSON (run)", root: true,
			files: files{"bad.tmpl": badJSON},
			props: "cr.container.template=$DIR/bad.tmpl\n",
			args:  []string{"run", "--", "true"},
			want:  []string{"$DIR/bad.tmpl", "JSON", "line"}},
		{name: "template without /dev (render)",
			files: files{"nodev.tmpl": "$NODEV"},
			props: "cr.container.template=$DIR/nodev.tmpl\n",
			args:  []string{"render", "--", "true"},
			want:  []string{"$DIR/nodev.tmpl", "/dev"}},
		{name: "template without /dev (run)", root: true,
			files: files{"nodev.tmpl": "$NODEV"},
			props: "cr.container.template=$DIR/nodev.tmpl\n",
			args:  []string{"run", "--", "true"},
			want:  []string{"$DIR/nodev.tmpl", "/dev"}},
		{name: "unknown mode in file (render)",
			props: "cr.log.level=info\ncr.mode=x\n",
			args:  []string{"render", "--", "true"},
			want:  []string{"$PROPS:2:", "cr.mode", `"x"`}},
		{name: "checkpoint mode without a name (render)",
			props: "cr.mode=checkpoint\ncr.checkpoint.directory=apps\n",
			args:  []string{"render", "--", "true"},
			want:  []string{"$PROPS", "cr.checkpoint.name", "required"}},
		{name: "NUL byte (render)",
			props: "cr.log.level=info\ncr.container.command=a\x00b\n",
			args:  []string{"render"},
			want:  []string{"$PROPS:2:", "cr.container.command", "NUL"}},
		{name: "missing template file",
			props: "cr.container.template=$DIR/none.tmpl\n",
			args:  []string{"render", "--", "true"},
			want:  []string{"$DIR/none.tmpl"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.root && os.Geteuid() != 0 {
				t.Skip("crwrap run checks for root before it reads the template")
			}
			dir := t.TempDir()
			expand := func(s string) string { return strings.ReplaceAll(s, "$DIR", dir) }
			for name, content := range tc.files {
				if content == "$NODEV" {
					content = defaultTemplateWithout(t, `"destination": "/dev", "type": "tmpfs"`, `"strictatime"`)
				}
				file(t, dir, name, content)
			}
			props := file(t, dir, "cr.properties", expand(tc.props))
			env := []string{"CR_PROPERTIES=" + props, "CRWRAP_STATE_DIR=" + filepath.Join(dir, "state")}
			for _, kv := range tc.env {
				env = append(env, expand(kv))
			}
			var args []string
			for _, a := range tc.args {
				args = append(args, expand(a))
			}
			r := crwrap(t, env, args...)
			if r.code != 2 {
				t.Errorf("exit code %d, want 2", r.code)
			}
			lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			if len(lines) != 1 || lines[0] == "" {
				t.Errorf("stderr has %d lines, want one:\n%s", len(lines), r.stderr)
			}
			for _, w := range tc.want {
				w = strings.ReplaceAll(expand(w), "$PROPS", props)
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not name %q:\n%s", w, r.stderr)
				}
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
			if _, err := os.Stat(filepath.Join(dir, "state")); err == nil {
				t.Errorf("bad input created the state directory: crwrap went on after the error")
			}
		})
	}
}

// render prints the spec the app would get and changes nothing.
func TestRender(t *testing.T) {
	harness.RequireBuild(t)
	t.Parallel()
	dir := t.TempDir()
	props := file(t, dir, "cr.properties", "cr.container.mounts="+dir+"\n")
	state := filepath.Join(dir, "state")
	r := crwrap(t, []string{"CR_PROPERTIES=" + props, "CRWRAP_STATE_DIR=" + state, "RENDER_TEST=1"}, "render", "--", "/bin/true")
	if r.code != 0 {
		t.Fatalf("exit code %d, want 0\nstderr:\n%s", r.code, r.stderr)
	}
	var sp specs.Spec
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sp); err != nil {
		t.Fatalf("stdout is not an OCI spec: %v\n%s", err, r.stdout)
	}
	if dec.More() {
		t.Errorf("stdout has more than one JSON value")
	}
	if sp.Process == nil || !reflect.DeepEqual(sp.Process.Args, []string{"/bin/true"}) {
		t.Errorf("process.args = %v, want [/bin/true]", sp.Process)
	}
	if sp.Version == "" || sp.Root == nil || sp.Linux == nil {
		t.Errorf("spec lacks ociVersion, root or linux: %+v", sp)
	}
	if sp.Process != nil && !contains(sp.Process.Env, "RENDER_TEST=1") {
		t.Errorf("process.env lacks crwrap's environment (RENDER_TEST=1): %v", sp.Process.Env)
	}
	mounted := false
	for _, m := range sp.Mounts {
		if m.Destination == dir {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("cr.container.mounts=%s is not in the spec's mounts", dir)
	}
	if _, err := os.Stat(state); err == nil {
		t.Errorf("render created the state directory %s: it must change nothing", state)
	}
}

func TestVersionAndHelp(t *testing.T) {
	harness.RequireBuild(t)
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"version"}, []string{"crwrap "}},
		{[]string{"--help"}, []string{"Usage:", "run", "checkpoint", "restore", "render", "doctor", "version", "--config"}},
		{[]string{"run", "--help"}, []string{"Usage:", "--mode"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			r := crwrap(t, nil, tc.args...)
			if r.code != 0 {
				t.Errorf("exit code %d, want 0\nstderr:\n%s", r.code, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
				}
			}
		})
	}
}

// An unknown command or flag is bad usage: exit 2.
func TestBadUsage(t *testing.T) {
	harness.RequireBuild(t)
	t.Parallel()
	for _, args := range [][]string{{"nosuchcommand"}, {"run", "--nosuchflag", "--", "true"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			r := crwrap(t, nil, args...)
			if r.code != 2 {
				t.Errorf("exit code %d, want 2\nstderr:\n%s", r.code, r.stderr)
			}
			if lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "nosuch") {
				t.Errorf("stderr is not one line naming the bad word:\n%s", r.stderr)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
