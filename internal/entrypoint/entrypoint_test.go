package entrypoint

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/crwrap/crwrap/internal/config"
	"github.com/crwrap/crwrap/templates"
)

func TestLoadTemplate(t *testing.T) {
	dir := t.TempDir()
	own := filepath.Join(dir, "config.json.tmpl")
	if err := os.WriteFile(own, []byte(`{"ociVersion": "1.2.0"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, template, want string
		key                  bool // a config.Error naming cr.container.template
	}{
		{"built-in", "", templates.Default, false},
		{"own file", own, `{"ociVersion": "1.2.0"}`, false},
		{"missing file", filepath.Join(dir, "none"), "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LoadTemplate(&config.Settings{Template: tc.template, File: "/etc/cr.properties"})
			var ce *config.Error
			if tc.key {
				if !errors.As(err, &ce) || ce.Key != "cr.container.template" || ce.File != "/etc/cr.properties" {
					t.Fatalf("got %v, want a config.Error for cr.container.template", err)
				}
				return
			}
			if err != nil || got.Source != tc.want {
				t.Fatalf("got %q, %v; want %q", got.Source, err, tc.want)
			}
		})
	}
}

func TestEnvOr(t *testing.T) {
	t.Setenv("CRWRAP_TEST_DIR", "/tmp//x/")
	if got := envOr("CRWRAP_TEST_DIR", "/def"); got != "/tmp/x" {
		t.Errorf("set: %q, want /tmp/x", got)
	}
	if got := envOr("CRWRAP_TEST_UNSET", "/def"); got != "/def" {
		t.Errorf("unset: %q, want /def", got)
	}
}

// A run-mode app has no CRIU cache to load or save.
func TestKdatCacheRunMode(t *testing.T) {
	if f := kdatCache(&config.Settings{Mode: config.ModeRun}, "4.2.1", nil); f != nil {
		t.Error("run mode: a save function")
	}
}
