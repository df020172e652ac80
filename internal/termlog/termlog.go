package termlog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"unicode/utf8"
)

// DefaultPath is the default terminationMessagePath of a Kubernetes container.
const DefaultPath = "/dev/termination-log"

// MaxBytes is the most the kubelet keeps of one container's termination message
// (MaxContainerTerminationMessageLength); it reads the file's last MaxBytes bytes.
const MaxBytes = 4096

// marker joins the head and the tail of a message that was too long.
const marker = "\n[...]\n"

// Writer writes termination messages to a file.
type Writer struct {
	// Path is the termination message file; empty means DefaultPath.
	Path string
}

// Write writes reason to DefaultPath; see Writer.Write.
func Write(reason string) error { return Writer{}.Write(reason) }

// Write replaces the termination message with reason when the file exists (Kubernetes mounts
// it; elsewhere there is nothing to do and Write returns nil). A reason longer than MaxBytes
// keeps its first line (the cause, cut if need be) and as much of its end (e.g. a CRIU log tail)
// as fits, so that the kubelet, which keeps a message's last MaxBytes bytes, shows both.
func (w Writer) Write(reason string) error {
	p := w.Path
	if p == "" {
		p = DefaultPath
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("write termination message: %w", err)
	}
	_, err = f.WriteString(Truncate(reason, MaxBytes))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write termination message: %w", err)
	}
	return nil
}

// Truncate shortens s to at most max bytes of valid UTF-8: its first line, a "[...]" marker
// line and its end. A first line longer than half of max is cut to that half.
func Truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	if max <= len(marker) {
		return cutEnd(s, max)
	}
	head, _, _ := strings.Cut(s, "\n")
	head = cutEnd(head, (max-len(marker))/2)
	tail := cutStart(s[len(head):], max-len(marker)-len(head))
	return head + marker + tail
}

// cutEnd returns the longest prefix of s of at most n bytes that ends on a rune boundary.
func cutEnd(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// cutStart returns the longest suffix of s of at most n bytes that starts on a rune boundary.
func cutStart(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := len(s) - n
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return s[i:]
}
