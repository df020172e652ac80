package trust

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/crwrap/crwrap/internal/layercrypt"
)

// prerequisite stops the test for want of something: a failure in CI, else a skip.
func prerequisite(t *testing.T, format string, a ...any) {
	t.Helper()
	msg := "prerequisite missing: " + fmt.Sprintf(format, a...)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// need returns the path of program or stops the test.
func need(t *testing.T, program, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(program)
	if err != nil {
		prerequisite(t, "%s (Debian package %s, installed by test/deps.sh)", program, pkg)
	}
	return p
}

// run runs argv and returns its combined output; a failure fails the test unless wantFail.
func run(t *testing.T, env []string, argv ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("$ %s\n%s", strings.Join(argv, " "), out.String())
	return out.String(), err
}

// opensslKeys writes a key pair made by openssl into dir as NAME.key and NAME.pub:
// alg "ec" (P-256), "ed25519" or "rsa" (3072 bits).
func opensslKeys(t *testing.T, dir, name, alg string) (key, pub string) {
	t.Helper()
	openssl := need(t, "openssl", "openssl")
	key, pub = filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pub")
	gen := []string{openssl, "genpkey", "-quiet", "-out", key}
	switch alg {
	case "ec":
		gen = append(gen, "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
	case "ed25519":
		gen = append(gen, "-algorithm", "ed25519")
	case "rsa":
		gen = append(gen, "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072")
	default:
		t.Fatalf("opensslKeys: unknown algorithm %s", alg)
	}
	if _, err := run(t, nil, gen...); err != nil {
		t.Fatalf("openssl genpkey: %v", err)
	}
	if _, err := run(t, nil, openssl, "pkey", "-in", key, "-pubout", "-out", pub); err != nil {
		t.Fatalf("openssl pkey -pubout: %v", err)
	}
	return key, pub
}

// descriptorOf is the manifest descriptor of an encrypted layer.
func descriptorOf(t *testing.T, l *layercrypt.Layer) v1.Descriptor {
	t.Helper()
	d, _ := l.Digest()
	s, _ := l.Size()
	mt, _ := l.MediaType()
	return v1.Descriptor{MediaType: mt, Size: s, Digest: d, Annotations: l.Annotations()}
}
