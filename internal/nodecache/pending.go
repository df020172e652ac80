package nodecache

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/crwrap/crwrap/internal/checkpoint"
)

// Pending is a cache entry this process fills over time (a lazy pull, whose page images
// arrive while the restored app already runs). It holds the entry's lock until Publish or
// Abort, so other pods of the node wait for it as for a Get's fill; until Publish the entry
// is a temporary directory no lookup finds, and a killed filler's is removed by the next one.
type Pending struct {
	lock       *os.File
	tmp, final string
}

// Begin returns the entry for digest held for reading when it is there, or else a Pending to
// fill (waiting, as Get does, while another pod fills it).
func (c *Cache) Begin(ctx context.Context, digest string) (*checkpoint.Reader, Result, *Pending, error) {
	p, err := c.entry(digest)
	if err != nil {
		return nil, "", nil, err
	}
	if r, err := hold(p); err == nil {
		return r, Hit, nil, nil
	}
	lock, waited, err := lockFile(ctx, filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".lock"))
	if err != nil {
		return nil, "", nil, err
	}
	if r, err := hold(p); err == nil {
		lock.Close()
		if waited {
			return r, Waited, nil, nil
		}
		return r, Hit, nil, nil
	}
	c.removeTemps(filepath.Base(p))
	tmp := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".tmp-"+random())
	if err := os.Mkdir(tmp, 0o700); err != nil {
		lock.Close()
		return nil, "", nil, fmt.Errorf("create cache entry: %w", err)
	}
	return nil, Miss, &Pending{lock: lock, tmp: tmp, final: p}, nil
}

// Dir is the directory to fill.
func (p *Pending) Dir() string { return p.tmp }

// Publish makes the filled directory the entry (synced first) and releases the lock. The
// caller has verified it completely.
func (p *Pending) Publish() error {
	defer p.lock.Close()
	if err := checkpoint.SyncTree(p.tmp); err != nil {
		_ = os.RemoveAll(p.tmp)
		return err
	}
	if err := os.Rename(p.tmp, p.final); err != nil {
		_ = os.RemoveAll(p.tmp)
		return fmt.Errorf("publish cache entry %s: %w", p.final, err)
	}
	_ = checkpoint.SyncDir(filepath.Dir(p.final))
	return nil
}

// Abort removes what was filled and releases the lock.
func (p *Pending) Abort() {
	_ = os.RemoveAll(p.tmp)
	p.lock.Close()
}
