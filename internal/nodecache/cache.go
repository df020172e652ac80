package nodecache

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crwrap/crwrap/internal/checkpoint"
)

// Result says how Get found an entry.
type Result string

// The results of Get (the result label of crwrap_registry_cache_total).
const (
	// Hit: the entry was there.
	Hit Result = "hit"
	// Miss: this caller filled the entry.
	Miss Result = "miss"
	// Waited: another pod of the node was filling it; this caller waited, then used it.
	Waited Result = "waited"
)

// Cache is a cache directory:
//
//	<dir>/sha256/<hex>/             complete entries (checkpoint directories)
//	<dir>/sha256/.<hex>.lock        held by the pod filling the entry
//	<dir>/sha256/.<hex>.tmp-<rand>  an entry being filled (or left by a killed filler)
//	<dir>/refs/<hash of the ref>    the digest a tag last resolved to
type Cache struct {
	dir string
}

// New opens (creating, root-only) the cache directory dir.
func New(dir string) (*Cache, error) {
	for _, d := range []string{dir, filepath.Join(dir, "sha256"), filepath.Join(dir, "refs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create cache %s: %w", d, err)
		}
	}
	return &Cache{dir: dir}, nil
}

// Dir is the cache directory.
func (c *Cache) Dir() string { return c.dir }

var hexRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (c *Cache) entry(digest string) (string, error) {
	h, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || !hexRE.MatchString(h) {
		return "", fmt.Errorf("cache entry %q: not a sha256 digest", digest)
	}
	return filepath.Join(c.dir, "sha256", h), nil
}

// Fill writes a complete, verified entry into the empty directory dir, or fails (the
// directory is then removed).
type Fill func(ctx context.Context, dir string) error

// Get returns the entry for digest held for reading (see checkpoint.Hold), filling it first
// with fill when it is not there. Only one caller on the node fills a digest; the others wait
// for it (until ctx is done) and use its result, or fill it themselves should it fail. A
// failed fill leaves nothing.
func (c *Cache) Get(ctx context.Context, digest string, fill Fill) (*checkpoint.Reader, Result, error) {
	p, err := c.entry(digest)
	if err != nil {
		return nil, "", err
	}
	if r, err := hold(p); err == nil {
		return r, Hit, nil
	}
	lock, waited, err := lockFile(ctx, filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".lock"))
	if err != nil {
		return nil, "", err
	}
	defer lock.Close()
	if r, err := hold(p); err == nil {
		if waited {
			return r, Waited, nil
		}
		return r, Hit, nil
	}
	c.removeTemps(filepath.Base(p))
	tmp := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".tmp-"+random())
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return nil, "", fmt.Errorf("create cache entry: %w", err)
	}
	if err := fill(ctx, tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, "", err
	}
	if err := checkpoint.SyncTree(tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, "", err
	}
	if err := os.Rename(tmp, p); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, "", fmt.Errorf("publish cache entry %s: %w", p, err)
	}
	_ = checkpoint.SyncDir(filepath.Dir(p))
	r, err := hold(p)
	if err != nil {
		return nil, "", fmt.Errorf("open cache entry %s: %w", p, err)
	}
	return r, Miss, nil
}

// Has reports whether a complete entry for digest is there.
func (c *Cache) Has(digest string) bool {
	p, err := c.entry(digest)
	if err != nil {
		return false
	}
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func (c *Cache) refPath(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return filepath.Join(c.dir, "refs", hex.EncodeToString(sum[:16]))
}

// Remember records that ref (a tag) resolved to digest, and removes the entries no ref
// names any more (the one ref resolved to before, typically) unless a pod is reading them.
func (c *Cache) Remember(ref, digest string) error {
	old, _ := c.Lookup(ref)
	if old == digest {
		return nil
	}
	p := c.refPath(ref)
	tmp := p + ".tmp-" + random()
	if err := os.WriteFile(tmp, []byte(digest+"\n"), 0o600); err != nil {
		return fmt.Errorf("record %s: %w", ref, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("record %s: %w", ref, err)
	}
	c.prune()
	return nil
}

// prune removes the entries no ref names any more, unless a pod is reading them (a later
// Remember removes those).
func (c *Cache) prune() {
	named := map[string]bool{}
	refs, _ := os.ReadDir(filepath.Join(c.dir, "refs"))
	for _, r := range refs {
		if b, err := os.ReadFile(filepath.Join(c.dir, "refs", r.Name())); err == nil {
			named[strings.TrimPrefix(strings.TrimSpace(string(b)), "sha256:")] = true
		}
	}
	entries, _ := os.ReadDir(filepath.Join(c.dir, "sha256"))
	for _, e := range entries {
		if !e.IsDir() || !hexRE.MatchString(e.Name()) || named[e.Name()] {
			continue
		}
		// An entry filled a moment ago may not be named yet by the pod that pulled it.
		if fi, err := e.Info(); err != nil || time.Since(fi.ModTime()) < pruneGrace {
			continue
		}
		removeIfUnread(filepath.Join(c.dir, "sha256", e.Name()))
	}
}

// pruneGrace is how old an unnamed entry must be before prune removes it.
var pruneGrace = time.Minute

// Lookup returns the digest ref last resolved to on this node ("" when unknown).
func (c *Cache) Lookup(ref string) (string, error) {
	b, err := os.ReadFile(c.refPath(ref))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// removeTemps removes what killed fillers of entry left; the caller holds its lock.
func (c *Cache) removeTemps(entry string) {
	ms, _ := filepath.Glob(filepath.Join(c.dir, "sha256", "."+entry+".tmp-*"))
	for _, m := range ms {
		_ = os.RemoveAll(m)
	}
}

func hold(p string) (*checkpoint.Reader, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("cache entry %s is not a directory", p)
	}
	return checkpoint.Hold(p)
}

// lockFile takes an exclusive flock on p, polling so that ctx can end the wait; waited says
// whether another process held it.
func lockFile(ctx context.Context, p string) (*os.File, bool, error) {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("open lock %s: %w", p, err)
	}
	waited := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, waited, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, false, fmt.Errorf("lock %s: %w", p, err)
		}
		waited = true
		select {
		case <-ctx.Done():
			f.Close()
			return nil, true, fmt.Errorf("wait for another pod's pull (%s): %w", p, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func removeIfUnread(p string) {
	d, err := os.Open(p)
	if err != nil {
		return
	}
	defer d.Close()
	if unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return // a restore is reading it
	}
	// Renamed away first so that no reader finds a half-removed entry.
	gone := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".tmp-removed-"+random())
	if os.Rename(p, gone) == nil {
		_ = os.RemoveAll(gone)
	}
}

func random() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
