package termlog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestWrite(t *testing.T) {
	p := filepath.Join(t.TempDir(), "termination-log")
	if err := os.WriteFile(p, []byte("old message that is longer"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := (Writer{Path: p}).Write("restore failed: no checkpoint"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if string(b) != "restore failed: no checkpoint" {
		t.Errorf("got %q", b)
	}
}

func TestWriteWithoutFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "termination-log")
	if err := (Writer{Path: p}).Write("x"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("Write created %s", p)
	}
}

func TestWriteLong(t *testing.T) {
	p := filepath.Join(t.TempDir(), "termination-log")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	reason := "checkpoint failed: criu dump: exit status 1\n" + strings.Repeat("log line ü\n", 1000) + "Error (criu/sk-inet.c:199): last line"
	if err := (Writer{Path: p}).Write(reason); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if len(b) > MaxBytes {
		t.Errorf("wrote %d bytes, max %d", len(b), MaxBytes)
	}
	if !strings.HasPrefix(string(b), "checkpoint failed: criu dump: exit status 1\n[...]\n") ||
		!strings.HasSuffix(string(b), "last line") {
		t.Errorf("lost the head or the tail: %.80q ... %.80q", b, b[len(b)-80:])
	}
}

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		s   string
		max int
	}{
		{"short", 10},
		{strings.Repeat("é", 100), 15},
		{strings.Repeat("x", 100), 5},
		{strings.Repeat("ü", 50) + "\n" + strings.Repeat("ö", 50), 40},
	} {
		got := Truncate(tc.s, tc.max)
		if len(got) > tc.max || !utf8.ValidString(got) {
			t.Errorf("Truncate(%.10q, %d) = %q: %d bytes, valid %v", tc.s, tc.max, got, len(got), utf8.ValidString(got))
		}
	}
}
