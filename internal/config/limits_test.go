package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// A NUL byte in the file, or a value that decodes to one, is refused at its line, for every key.
func TestLoadNUL(t *testing.T) {
	type tc struct {
		name, text, want string
	}
	tests := []tc{
		{"in a comment", "cr.mode=run\n# a \x00 b\n", "FILE:2: contains a NUL byte (a properties file is text)"},
		{"in another key's value", "cr.mode=run\nother.key=a\x00\n", "FILE:2: contains a NUL byte (a properties file is text)"},
		{"on a continuation line", "cr.container.command=a \\\n b\x00\n", "FILE:2: contains a NUL byte (a properties file is text)"},
		{"in a key", "cr.mode=run\ncr.mo\x00de=run\n", "FILE:2: contains a NUL byte (a properties file is text)"},
	}
	for i, k := range Keys() {
		// Line 2 or 3, so that a line number from elsewhere would show.
		pad := strings.Repeat("\n", i%2)
		tests = append(tests,
			tc{"raw in " + k, "cr.log.level=info\n" + pad + k + "=a\x00b\n",
				fmt.Sprintf("FILE:%d: %s: contains a NUL byte (a properties file is text)", 2+i%2, k)},
			tc{"escaped in " + k, "cr.log.level=info\n" + pad + k + " = a\\u0000b\n",
				fmt.Sprintf("FILE:%d: %s: value contains a NUL character (\\u0000)", 2+i%2, k)})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeProps(t, tt.text)
			_, err := Load(LoadOptions{Path: p, Explicit: true, Args: []string{"app"}})
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%v does not match ErrInvalid", err)
			}
			if want := strings.ReplaceAll(tt.want, "FILE", p); err.Error() != want {
				t.Errorf("got  %s\nwant %s", err, want)
			}
		})
	}
}

// A file larger than a ConfigMap can hold is refused before it is parsed; one of exactly
// MaxFileSize bytes loads.
func TestLoadFileSize(t *testing.T) {
	comment := func(n int) string {
		return "cr.mode=run\n#" + strings.Repeat("x", n-len("cr.mode=run\n#")-1) + "\n"
	}
	p := writeProps(t, comment(MaxFileSize))
	if _, err := Load(LoadOptions{Path: p, Explicit: true, Args: []string{"app"}}); err != nil {
		t.Errorf("a file of MaxFileSize bytes: %v", err)
	}
	p = writeProps(t, comment(MaxFileSize+1))
	_, err := Load(LoadOptions{Path: p, Explicit: true, Args: []string{"app"}})
	want := p + ": properties file is larger than 1048576 bytes (1 MiB, what a ConfigMap holds)"
	if err == nil || err.Error() != want || !errors.Is(err, ErrInvalid) {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

// The line scanner reads each rune a bounded number of times whatever the shape of the text
// (line numbers used to be counted from the start of the text for every key: quadratic).
func TestKeyLinesLinear(t *testing.T) {
	shapes := map[string]string{
		"short keys":      "cr.k%d=v\n",
		"comments":        "# comment %d\n! another\n",
		"continuations":   "cr.command=a%d \\\n  b \\\n  c\n",
		"escapes":         "cr.\\u0065%d\\ k=\\t\\n\\u00e9\n",
		"blank lines":     "\n\n\r\n  \t%d\n",
		"key without val": "cr.only%d\n",
		"non-ASCII":       "cr.é%d=ü€\n",
	}
	for name, line := range shapes {
		t.Run(name, func(t *testing.T) {
			for _, n := range []int{10, 1000, 10000} {
				var b strings.Builder
				for i := 0; i < n; i++ {
					fmt.Fprintf(&b, line, i)
				}
				text := b.String()
				lines, reads := scanKeyLines(text)
				runes := utf8.RuneCountInString(text)
				if reads > 2*runes+2 {
					t.Errorf("%d lines: %d reads for %d runes, want at most 2 per rune", n, reads, runes)
				}
				if name == "short keys" && (len(lines) != n || lines[fmt.Sprintf("cr.k%d", n-1)] != n) {
					t.Errorf("%d lines: got %d keys, last at line %d", n, len(lines), lines[fmt.Sprintf("cr.k%d", n-1)])
				}
			}
		})
	}
}

// BenchmarkLoad loads a properties file of MaxFileSize bytes: many keys crwrap ignores and
// the cr.* keys of a checkpoint pod.
func BenchmarkLoad(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("cr.mode=checkpoint\ncr.checkpoint.name=app\ncr.checkpoint.directory=apps\n")
	for i := 0; sb.Len() < MaxFileSize-100; i++ {
		fmt.Fprintf(&sb, "other.key%d = some value \\\n  continued %d\n", i, i)
	}
	p := filepath.Join(b.TempDir(), "cr.properties")
	if err := os.WriteFile(p, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(sb.Len()))
	b.ResetTimer()
	for b.Loop() {
		if _, err := Load(LoadOptions{Path: p, Explicit: true, Args: []string{"app"}}); err != nil {
			b.Fatal(err)
		}
	}
}
