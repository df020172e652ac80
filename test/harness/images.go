package harness

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var exampleImages struct {
	sync.Mutex
	built map[string]error
}

// BuildExampleImages builds, once per test binary and tag, the example app image
// (examples/go-app) tagged appImage the way the docs do it, all with `docker build` from the
// repo's Dockerfiles: the local base images (images/base/make.sh), crwrap-base tagged baseImage
// (images/crwrap-base/build.sh), then the app on top of them. The same steps as the pod tests'
// images (test/pod).
func BuildExampleImages(t testing.TB, baseImage, appImage string) {
	t.Helper()
	exampleImages.Lock()
	defer exampleImages.Unlock()
	if exampleImages.built == nil {
		exampleImages.built = map[string]error{}
	}
	err, done := exampleImages.built[appImage]
	if !done {
		err = buildExampleImages(t, baseImage, appImage)
		exampleImages.built[appImage] = err
	}
	if err != nil {
		t.Fatalf("build images: %v", err)
	}
}

func buildExampleImages(t testing.TB, baseImage, appImage string) error {
	root := RepoRoot()
	run := func(name string, args ...string) error {
		start := time.Now()
		cmd := exec.Command(name, args...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		t.Logf("%s %s: %s", filepath.Base(name), strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
		if err != nil {
			return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, Tail(string(out), 60))
		}
		return nil
	}
	if err := run(filepath.Join(root, "images/base/make.sh")); err != nil {
		return err
	}
	if err := run(filepath.Join(root, "images/crwrap-base/build.sh"), baseImage); err != nil {
		return err
	}
	return run("docker", "build", "-t", appImage,
		"--build-arg", "CRWRAP_IMAGE="+baseImage,
		"--build-arg", "GO_IMAGE=crwrap-local/golang:1.26",
		"--build-arg", "RUNTIME_IMAGE=crwrap-local/static:latest",
		filepath.Join(root, "examples/go-app"))
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
