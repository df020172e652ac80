package ops

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/crwrap/crwrap/test/harness"
)

// `crwrap inspect` describes a real checkpoint (text and --json) and reports one whose pages
// image was truncated as damaged, with exit 1.
func TestInspect(t *testing.T) {
	a := newApp(t, "-warmup", "300ms", "-heap", "4")
	a.checkpoint()
	criu := criuVersion(t)

	p, code := harness.Run(t, harness.Options{}, time.Minute, "inspect", a.path())
	if code != 0 {
		t.Fatalf("inspect exited %d, want 0\nstdout:\n%s\nstderr:\n%s", code, p.Stdout, p.Stderr)
	}
	text := p.Stdout.String()
	for _, w := range []string{strings.Join(a.command(), " "), "CRIU " + criu, "intact", "testapp"} {
		if !strings.Contains(text, w) {
			t.Errorf("inspect lacks %q:\n%s", w, text)
		}
	}

	p, code = harness.Run(t, harness.Options{}, time.Minute, "inspect", "--json", a.path())
	if code != 0 {
		t.Fatalf("inspect --json exited %d, want 0\nstderr:\n%s", code, p.Stderr)
	}
	var r struct {
		Damaged     bool     `json:"damaged"`
		Name        string   `json:"name"`
		Command     []string `json:"command"`
		CRIUVersion string   `json:"criuVersion"`
		Processes   []struct {
			PID uint32 `json:"pid"`
		} `json:"processes"`
	}
	if err := json.Unmarshal([]byte(p.Stdout.String()), &r); err != nil {
		t.Fatalf("inspect --json does not parse: %v\n%s", err, p.Stdout)
	}
	if r.Damaged || r.Name != a.name || !reflect.DeepEqual(r.Command, a.command()) || r.CRIUVersion != criu || len(r.Processes) == 0 {
		t.Errorf("inspect --json: damaged=%v name=%q command=%q criuVersion=%q %d processes; want intact, %q, %q, %q, some",
			r.Damaged, r.Name, r.Command, r.CRIUVersion, len(r.Processes), a.name, a.command(), criu)
	}

	// Damage it: cut a pages image in half.
	dir, err := filepath.EvalSymlinks(a.path())
	if err != nil {
		t.Fatal(err)
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "checkpoint", "pages-*.img"))
	if len(pages) == 0 {
		t.Fatalf("no pages image in %s/checkpoint", dir)
	}
	fi, err := os.Stat(pages[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(pages[0], fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	base := filepath.Base(pages[0])

	p, code = harness.Run(t, harness.Options{}, time.Minute, "inspect", a.path())
	if code != 1 {
		t.Errorf("inspect of a truncated checkpoint exited %d, want 1\nstdout:\n%s", code, p.Stdout)
	}
	if out := p.Stdout.String(); !strings.Contains(out, "DAMAGED") || !strings.Contains(out, base) {
		t.Errorf("inspect of a truncated checkpoint does not report %s damaged:\n%s", base, out)
	}
	if !strings.Contains(p.Stderr.String(), "damaged") {
		t.Errorf("inspect's error does not say damaged:\n%s", p.Stderr)
	}

	p, code = harness.Run(t, harness.Options{}, time.Minute, "inspect", "--json", a.path())
	if code != 1 {
		t.Errorf("inspect --json of a truncated checkpoint exited %d, want 1", code)
	}
	var d struct {
		Damaged bool     `json:"damaged"`
		Reasons []string `json:"reasons"`
	}
	if err := json.Unmarshal([]byte(p.Stdout.String()), &d); err != nil {
		t.Fatalf("inspect --json of a damaged checkpoint does not parse: %v\n%s", err, p.Stdout)
	}
	if !d.Damaged || !strings.Contains(strings.Join(d.Reasons, "\n"), base) {
		t.Errorf("inspect --json: damaged=%v reasons=%q, want damaged naming %s", d.Damaged, d.Reasons, base)
	}
}

// `crwrap inspect` checks a checkpoint as a restore does: a crwrap.json edited after it was
// sealed (every file it lists still intact) is damaged, exit 1, with or without --verify.
func TestInspectTamperedManifest(t *testing.T) {
	a := newApp(t, "-warmup", "300ms", "-heap", "4")
	a.checkpoint()
	dir, err := filepath.EvalSymlinks(a.path())
	if err != nil {
		t.Fatal(err)
	}
	mf := filepath.Join(dir, "crwrap.json")
	b, err := os.ReadFile(mf)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(b), `"kernel": "`, `"kernel": "x`, 1)
	if edited == string(b) {
		t.Fatalf("no kernel in %s:\n%s", mf, b)
	}
	if err := os.WriteFile(mf, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"inspect", a.path()}, {"inspect", "--verify", a.path()}} {
		p, code := harness.Run(t, harness.Options{}, time.Minute, args...)
		if code != 1 {
			t.Errorf("%q of a tampered manifest exited %d, want 1\nstdout:\n%s", args, code, p.Stdout)
		}
		if out := p.Stdout.String(); !strings.Contains(out, "DAMAGED") || !strings.Contains(out, "crwrap.json does not match crwrap.json.sha256") {
			t.Errorf("%q does not report the tampered manifest:\n%s", args, out)
		}
	}
}
