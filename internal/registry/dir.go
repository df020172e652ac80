package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/crwrap/crwrap/internal/checkpoint"
)

// PushDir pushes the checkpoint directory dir (or the published link to one), opened as any
// checkpoint from elsewhere (checkpoint.Open), to repo: under tag when it is not "", else
// under the tag its manifest calls for (PushTo). What crwrap push does.
func PushDir(ctx context.Context, dir string, repo name.Repository, tag string, opts ...Option) (*Pushed, error) {
	r, err := checkpoint.Open(dir, false)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", dir, err)
	}
	defer r.Close()
	if tag != "" {
		return Push(ctx, r, repo.Tag(tag), opts...)
	}
	return PushTo(ctx, r, repo, opts...)
}

// PullDir pulls the checkpoint image ref (any host and app class) into dir, which must not
// exist (an error wrapping fs.ErrExist): into a private directory beside it first, checked
// (Pull), then renamed to dir, so that dir appears complete or not at all. It returns the
// image's digest. What crwrap pull does.
func PullDir(ctx context.Context, ref name.Reference, dir string, opts ...Option) (name.Digest, error) {
	exists := fmt.Errorf("pull into %s: %w", dir, fs.ErrExist)
	if _, err := os.Lstat(dir); err == nil {
		return name.Digest{}, exists
	}
	res, err := Resolve(ctx, ref, Want{}, opts...)
	if err != nil {
		return name.Digest{}, err
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	dst := filepath.Clean(dir)
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-"+hex.EncodeToString(b))
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return name.Digest{}, fmt.Errorf("pull into %s: %w", dir, err)
	}
	if _, err := Pull(ctx, res, tmp, opts...); err != nil {
		_ = os.RemoveAll(tmp)
		return name.Digest{}, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.RemoveAll(tmp)
		if errors.Is(err, fs.ErrExist) {
			return name.Digest{}, exists
		}
		return name.Digest{}, fmt.Errorf("pull into %s: %w", dir, err)
	}
	return res.Digest, nil
}
