package rootfs

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

type entry struct {
	name, link string
	typ        byte
	mode       int64
	body       string
}

func makeDiff(t *testing.T, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: mode, Size: int64(len(e.body)),
			Uid: os.Getuid(), Gid: os.Getgid()}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Size > 0 {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Hostile diffs are refused, and nothing is written outside the upper directory.
func TestApplyDiffRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []entry
		deleted string
	}{
		{"symlink out, then a file through it", []entry{{name: "etc", typ: tar.TypeSymlink, link: "OUTSIDE"}, {name: "etc/passwd", typ: tar.TypeReg, body: "x"}}, ""},
		{"symlink to an absolute path, then a file through it", []entry{{name: "bin", typ: tar.TypeSymlink, link: "/"}, {name: "bin/OUTSIDE/x", typ: tar.TypeReg, body: "x"}}, ""},
		{"symlink inside, then a file through it", []entry{{name: "d", typ: tar.TypeDir}, {name: "l", typ: tar.TypeSymlink, link: "d"}, {name: "l/x", typ: tar.TypeReg, body: "x"}}, ""},
		{"dot-dot", []entry{{name: "../OUTSIDE/x", typ: tar.TypeReg, body: "x"}}, ""},
		{"dot-dot inside", []entry{{name: "a/../../OUTSIDE/x", typ: tar.TypeReg, body: "x"}}, ""},
		{"absolute", []entry{{name: "/OUTSIDE/x", typ: tar.TypeReg, body: "x"}}, ""},
		{"hardlink out", []entry{{name: "h", typ: tar.TypeLink, link: "../OUTSIDE/secret"}}, ""},
		{"hardlink inside", []entry{{name: "a", typ: tar.TypeReg, body: "x"}, {name: "h", typ: tar.TypeLink, link: "a"}}, ""},
		{"char device", []entry{{name: "mem", typ: tar.TypeChar}}, ""},
		{"block device", []entry{{name: "sda", typ: tar.TypeBlock}}, ""},
		{"setuid file", []entry{{name: "su", typ: tar.TypeReg, mode: 0o4755, body: "x"}}, ""},
		{"setgid directory", []entry{{name: "d", typ: tar.TypeDir, mode: 0o2755}}, ""},
		{"duplicate", []entry{{name: "a", typ: tar.TypeReg, body: "1"}, {name: "a", typ: tar.TypeReg, body: "2"}}, ""},
		{"name too long", []entry{{name: strings.Repeat("a/", 2100) + "x", typ: tar.TypeReg, body: "x"}}, ""},
		{"deleted path with ..", nil, `["/../OUTSIDE/x"]`},
		{"deleted relative path", nil, `["OUTSIDE"]`},
		{"deleted below a symlink", []entry{{name: "l", typ: tar.TypeSymlink, link: "/"}}, `["/l/x"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			upper := filepath.Join(base, "upper")
			os.MkdirAll(filepath.Join(base, "OUTSIDE"), 0o755)
			os.WriteFile(filepath.Join(base, "OUTSIDE", "secret"), []byte("s"), 0o600)
			os.Mkdir(upper, 0o755)
			var diff, del *bytes.Reader
			if tc.entries != nil {
				diff = bytes.NewReader(makeDiff(t, tc.entries))
			}
			if tc.deleted != "" {
				del = bytes.NewReader([]byte(tc.deleted))
			}
			err := ApplyDiff(upper, readerOrNil(diff), readerOrNil(del))
			if !errors.Is(err, ErrUnsafeDiff) {
				t.Fatalf("ApplyDiff: %v, want ErrUnsafeDiff", err)
			}
			if tc.entries != nil {
				if err := CheckDiff(bytes.NewReader(makeDiff(t, tc.entries))); tc.deleted == "" && !errors.Is(err, ErrUnsafeDiff) {
					t.Fatalf("CheckDiff: %v, want ErrUnsafeDiff", err)
				}
			}
			ents, _ := os.ReadDir(filepath.Join(base, "OUTSIDE"))
			if len(ents) != 1 {
				t.Fatalf("written outside the upper directory: %v", ents)
			}
		})
	}
}

func readerOrNil(r *bytes.Reader) io.Reader {
	if r == nil {
		return nil
	}
	return r
}

// What ExportDiff writes, ApplyDiff puts back: files, directories, symlinks (any target),
// FIFOs, owners, modes; sockets are skipped; setuid bits are dropped.
func TestExportApplyRoundTrip(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "var", "tmp"), 0o755)
	os.Chmod(filepath.Join(src, "var", "tmp"), fs.ModeSticky|0o777)
	os.WriteFile(filepath.Join(src, "var", "data"), []byte("hello"), 0o640)
	os.WriteFile(filepath.Join(src, "var", "tool"), []byte("#!"), 0o755)
	os.Chmod(filepath.Join(src, "var", "tool"), fs.ModeSetuid|0o755)
	os.Symlink("/etc/hostname", filepath.Join(src, "var", "link"))
	if err := unix.Mkfifo(filepath.Join(src, "var", "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(src, "var", "fifo"), 0o620)
	l, err := net.Listen("unix", filepath.Join(src, "var", "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	out := t.TempDir()
	tarPath, delPath := filepath.Join(out, DiffFile), filepath.Join(out, DeletedFile)
	wroteTar, _, err := ExportDiff(src, tarPath, delPath)
	if err != nil || !wroteTar {
		t.Fatalf("ExportDiff: %v (wrote tar: %v)", err, wroteTar)
	}
	f, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	upper := t.TempDir()
	if err := ApplyDiff(upper, f, nil); err != nil {
		t.Fatalf("ApplyDiff: %v", err)
	}
	for _, c := range []struct {
		name string
		mode fs.FileMode
	}{
		{"var/tmp", fs.ModeDir | fs.ModeSticky | 0o777},
		{"var/data", 0o640},
		{"var/tool", 0o755},
		{"var/fifo", fs.ModeNamedPipe | 0o620},
		{"var/link", fs.ModeSymlink | 0o777},
	} {
		fi, err := os.Lstat(filepath.Join(upper, c.name))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if fi.Mode() != c.mode {
			t.Errorf("%s: mode %v, want %v", c.name, fi.Mode(), c.mode)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(upper, "var", "data")); string(b) != "hello" {
		t.Errorf("var/data = %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(upper, "var", "link")); l != "/etc/hostname" {
		t.Errorf("var/link -> %q", l)
	}
	if fi, _ := os.Stat(filepath.Join(src, "var", "tool")); fi.Mode()&fs.ModeSetuid == 0 {
		t.Fatal("the source file lost its setuid bit: the test proves nothing")
	}
	if _, err := os.Lstat(filepath.Join(upper, "var", "sock")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the socket was restored as a file: %v", err)
	}
}

// Whiteouts and opaque directories (root only: a whiteout is a 0/0 character device).
func TestApplyDeleted(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("whiteouts need CAP_MKNOD")
	}
	upper := t.TempDir()
	diff := makeDiff(t, []entry{{name: "opaque", typ: tar.TypeDir, mode: 0o755}})
	if err := ApplyDiff(upper, bytes.NewReader(diff), strings.NewReader(`["/gone/file", "/opaque"]`)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(upper, "gone", "file"))
	if err != nil || !isWhiteout(fi) {
		t.Errorf("/gone/file is no whiteout: %v %v", fi, err)
	}
	if !isOpaque(filepath.Join(upper, "opaque")) {
		t.Errorf("/opaque is not opaque")
	}
}

// A file the app deleted from the pod's root (an overlay whiteout in the upper layer) is
// listed in deleted.files, not archived as a device.
func TestExportDeleted(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("whiteouts need CAP_MKNOD")
	}
	src := t.TempDir()
	os.Mkdir(filepath.Join(src, "etc"), 0o755)
	if err := unix.Mknod(filepath.Join(src, "etc", "motd"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	tarPath, delPath := filepath.Join(out, DiffFile), filepath.Join(out, DeletedFile)
	if _, wroteDel, err := ExportDiff(src, tarPath, delPath); err != nil || !wroteDel {
		t.Fatalf("ExportDiff: %v (wrote deleted.files: %v)", err, wroteDel)
	}
	if b, _ := os.ReadFile(delPath); string(b) != `["/etc/motd"]` {
		t.Fatalf("deleted.files = %s", b)
	}
}

// More entries than the limit: refused (the limit is lowered here; it is 1,000,000).
func TestDiffEntryLimit(t *testing.T) {
	defer func(n int) { diffEntryLimit = n }(diffEntryLimit)
	diffEntryLimit = 10
	var entries []entry
	for i := 0; i < 11; i++ {
		entries = append(entries, entry{name: "d" + strings.Repeat("x", i), typ: tar.TypeDir})
	}
	if err := CheckDiff(bytes.NewReader(makeDiff(t, entries))); !errors.Is(err, ErrUnsafeDiff) || !strings.Contains(err.Error(), "more than 10 entries") {
		t.Fatalf("CheckDiff: %v", err)
	}
	if err := ApplyDiff(t.TempDir(), bytes.NewReader(makeDiff(t, entries[:10])), nil); err != nil {
		t.Fatalf("ApplyDiff at the limit: %v", err)
	}
	if err := CheckDeleted(strings.NewReader(`["/a","/b","/c","/d","/e","/f","/g","/h","/i","/j","/k"]`)); !errors.Is(err, ErrUnsafeDiff) {
		t.Fatalf("CheckDeleted: %v", err)
	}
}
