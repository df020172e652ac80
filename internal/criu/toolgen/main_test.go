package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedFilesCurrent fails when a committed file differs from what internal/criu's table
// renders: run `go generate ./internal/criu` after changing tools.go.
func TestGeneratedFilesCurrent(t *testing.T) {
	for _, f := range files {
		t.Run(f.path, func(t *testing.T) {
			got, err := os.ReadFile(filepath.Join("..", "..", "..", f.path))
			if err != nil {
				t.Fatal(err)
			}
			if want := f.render(); !bytes.Equal(got, want) {
				t.Fatalf("%s is stale: run go generate ./internal/criu", f.path)
			}
			if first, _, _ := strings.Cut(string(got), "\n"); !strings.HasSuffix(first, " DO NOT EDIT.") ||
				!strings.Contains(first, "Code generated ") {
				t.Fatalf("%s: first line %q is not a generated-file header", f.path, first)
			}
		})
	}
}
