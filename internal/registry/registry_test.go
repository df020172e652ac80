package registry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	"github.com/crwrap/crwrap/internal/checkpoint"
)

// fakeCheckpoint writes a checkpoint directory with a big page image and small files.
func fakeCheckpoint(t *testing.T) (string, *checkpoint.Manifest) {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{
		"checkpoint/pages-1.img":      bytes.Repeat([]byte("page"), 1<<19),
		"checkpoint/pages-2.img":      []byte("small pages"),
		"checkpoint/core-1.img":       []byte("core"),
		"checkpoint/inventory.img":    []byte("inventory"),
		"spec.dump":                   []byte("{}"),
		"config.dump":                 []byte("{}"),
		"rootfs-diff.tar":             bytes.Repeat([]byte{0}, 2<<20),
		"checkpoint/descriptors.json": []byte("[]"),
	}
	for p, b := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m := &checkpoint.Manifest{
		Name: "web", Created: time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC), CrwrapVersion: "test", CRIUVersion: "4.2",
		Host: checkpoint.Host{Kernel: "6.12.0", Arch: "amd64", CPUFlagsDigest: "abc"},
		App:  checkpoint.App{Args: []string{"/app", "-x"}, TemplateDigest: "t1"},
	}
	if err := checkpoint.WriteManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	return dir, m
}

// push opens dir as a checkpoint and pushes it to repo.
func push(t *testing.T, dir string, repo name.Repository) (*Pushed, error) {
	t.Helper()
	r, err := checkpoint.Open(dir, false)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return PushTo(context.Background(), r, repo)
}

func testRepo(t *testing.T) name.Repository {
	t.Helper()
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	repo, err := name.NewRepository(strings.TrimPrefix(srv.URL, "http://") + "/team/app")
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

func TestTagIsStableAndSeparatesClasses(t *testing.T) {
	app := checkpoint.App{Args: []string{"/app"}, TemplateDigest: "t"}
	h := checkpoint.Host{Kernel: "6.12.0", Arch: "amd64", CPUFlagsDigest: "f", Hostname: "node-a"}
	base := Tag("web", app, h, "4.2")
	if len(base) > 128 {
		t.Fatalf("tag %q longer than 128", base)
	}
	other := h
	other.Hostname = "node-b"
	if Tag("web", app, other, "4.2") != base {
		t.Error("the hostname changed the tag: nodes of one class must share it")
	}
	tests := []struct {
		name string
		tag  string
	}{
		{"kernel", Tag("web", app, checkpoint.Host{Kernel: "6.13.0", Arch: "amd64", CPUFlagsDigest: "f"}, "4.2")},
		{"cpu", Tag("web", app, checkpoint.Host{Kernel: "6.12.0", Arch: "amd64", CPUFlagsDigest: "g"}, "4.2")},
		{"arch", Tag("web", app, checkpoint.Host{Kernel: "6.12.0", Arch: "arm64", CPUFlagsDigest: "f"}, "4.2")},
		{"criu", Tag("web", app, h, "4.1")},
		{"command", Tag("web", checkpoint.App{Args: []string{"/app", "-v"}, TemplateDigest: "t"}, h, "4.2")},
		{"template", Tag("web", checkpoint.App{Args: []string{"/app"}, TemplateDigest: "u"}, h, "4.2")},
		{"name", Tag("api", app, h, "4.2")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.tag == base {
				t.Errorf("another %s gives the same tag %s", tt.name, base)
			}
			if _, err := name.NewTag("r.example/x:" + tt.tag); err != nil {
				t.Errorf("invalid tag %q: %v", tt.tag, err)
			}
		})
	}
	if long := Tag(strings.Repeat("n", 200), app, h, "4.2"); len(long) > 128 {
		t.Errorf("tag of a long name has %d characters", len(long))
	}
}

func TestPushPullRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir, m := fakeCheckpoint(t)
	repo := testRepo(t)
	p, err := push(t, dir, repo)
	if err != nil {
		t.Fatal(err)
	}
	if p.Ref.TagStr() != TagOf(m) {
		t.Errorf("pushed as %s, want tag %s", p.Ref, TagOf(m))
	}
	// crwrap.json + small files in one layer, each page image and the big rootfs diff alone.
	if p.Layers != 4 {
		t.Errorf("%d layers, want 4", p.Layers)
	}
	again, err := push(t, dir, repo)
	if err != nil || again.Digest != p.Digest {
		t.Fatalf("second push: %v, digest %v want %v (the image must be reproducible)", err, again.Digest, p.Digest)
	}

	want := Want{HostClass: HostClass(m.Host, m.CRIUVersion), App: AppClass(m.App)}
	r, err := Resolve(ctx, p.Ref, want)
	if err != nil {
		t.Fatal(err)
	}
	if r.Digest != p.Digest {
		t.Errorf("resolved %s, pushed %s", r.Digest, p.Digest)
	}
	if r.Manifest.Annotations[AnnotationCRIUVersion] != "4.2" || r.Manifest.Annotations[AnnotationName] != "web" {
		t.Errorf("annotations %v", r.Manifest.Annotations)
	}
	out := t.TempDir()
	n, err := Pull(ctx, r, out, WithFileDigests(true))
	if err != nil {
		t.Fatal(err)
	}
	if n != r.Bytes() {
		t.Errorf("pulled %d bytes, layers have %d", n, r.Bytes())
	}
	got, err := checkpoint.Open(out, true)
	if err != nil {
		t.Fatal(err)
	}
	got.Close()
	b, _ := os.ReadFile(filepath.Join(out, "checkpoint/pages-1.img"))
	if !bytes.Equal(b, bytes.Repeat([]byte("page"), 1<<19)) {
		t.Error("pages-1.img differs after the round trip")
	}
	if fi, _ := os.Stat(filepath.Join(out, "checkpoint")); fi.Mode().Perm() != 0o700 {
		t.Errorf("checkpoint/ has mode %v, want 0700", fi.Mode().Perm())
	}
}

func TestResolveRefuses(t *testing.T) {
	ctx := context.Background()
	dir, m := fakeCheckpoint(t)
	repo := testRepo(t)
	p, err := push(t, dir, repo)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ref  name.Reference
		want Want
		is   error
	}{
		{"other host class", p.Ref, Want{HostClass: "000000000000"}, checkpoint.ErrIncompatible},
		{"other app", p.Ref, Want{App: "000000000000"}, checkpoint.ErrForeign},
		{"no such tag", repo.Tag("nothing-here"), Want{}, ErrNotFound},
		{"no such repository", repo.Registry.Repo("other").Tag(TagOf(m)), Want{}, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Resolve(ctx, tt.ref, tt.want)
			if !errors.Is(err, tt.is) {
				t.Fatalf("Resolve: %v, want %v", err, tt.is)
			}
		})
	}
}

func TestPushRefusesDamagedCheckpoint(t *testing.T) {
	dir, _ := fakeCheckpoint(t)
	if err := os.WriteFile(filepath.Join(dir, "spec.dump"), []byte("[]"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := push(t, dir, testRepo(t))
	if !errors.Is(err, checkpoint.ErrDamaged) {
		t.Fatalf("push of a changed file: %v, want ErrDamaged", err)
	}
}

func TestPullUnreachable(t *testing.T) {
	ref, _ := name.NewTag("127.0.0.1:1/team/app:x")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Resolve(ctx, ref, Want{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Resolve on a closed port: %v, want ErrUnavailable", err)
	}
}

// A pulled file whose content (as hashed while it was written) is not what crwrap.json says
// is damaged, even when its size is right.
func TestCheckTreeComparesWrittenDigests(t *testing.T) {
	dir, m := fakeCheckpoint(t)
	good := &fileSums{m: map[string]string{}}
	for _, f := range m.Files {
		good.set(f.Path, f.SHA256)
	}
	if err := checkTree(dir, good); err != nil {
		t.Fatalf("intact: %v", err)
	}
	bad := &fileSums{m: map[string]string{}}
	for k, v := range good.m {
		bad.m[k] = v
	}
	bad.m["spec.dump"] = strings.Repeat("0", 64)
	if err := checkTree(dir, bad); !errors.Is(err, checkpoint.ErrDamaged) {
		t.Fatalf("changed content: %v, want ErrDamaged", err)
	}
}
