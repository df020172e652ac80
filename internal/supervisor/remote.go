package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/crwrap/crwrap/internal/checkpoint"
	"github.com/crwrap/crwrap/internal/criu"
	"github.com/crwrap/crwrap/internal/layercrypt"
	"github.com/crwrap/crwrap/internal/metrics"
	"github.com/crwrap/crwrap/internal/nodecache"
	"github.com/crwrap/crwrap/internal/registry"
	"github.com/crwrap/crwrap/internal/signature"
)

// errPull marks an error of getting the checkpoint from cr.checkpoint.image.
var errPull = errors.New("pull from the registry")

// Fallback reasons of the registry path.
const (
	ReasonPullFailed = metrics.FallbackPullFailed
	ReasonUntrusted  = metrics.FallbackUntrusted
)

// pullReason is the fallback reason of an errPull error that is not a checkpoint's own
// (damaged, foreign, incompatible: those reasons come first).
func pullReason(err error) string {
	switch {
	case errors.Is(err, registry.ErrUntrusted):
		return ReasonUntrusted
	case errors.Is(err, registry.ErrNotFound):
		return ReasonNotFound
	case errors.Is(err, registry.ErrFormat):
		return ReasonDamaged
	default:
		return ReasonPullFailed
	}
}

// Push retries: after a failed push crwrap waits pushBackoff, doubling up to pushBackoffMax,
// for at most pushAttempts attempts in all (pushAttemptsExit before exiting with
// cr.checkpoint.exit, so that a Job is not held up for long).
const (
	pushAttempts     = 8
	pushAttemptsExit = 3
	pushBackoff      = 2 * time.Second
	pushBackoffMax   = time.Minute
)

// registryOptions are the options of every push and pull: credentials from the Docker
// config ($DOCKER_CONFIG/config.json, e.g. a kubernetes.io/dockerconfigjson Secret), never
// from cr.properties; TLS roots from the system (SSL_CERT_FILE adds a private CA).
func (s *Supervisor) registryOptions() []registry.Option {
	return []registry.Option{registry.WithRemote(
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithUserAgent("crwrap/"+s.Version),
	)}
}

// pushOptions adds signing (cr.checkpoint.signing-key) and encryption
// (cr.checkpoint.encryption-key).
func (s *Supervisor) pushOptions() ([]registry.Option, error) {
	opts := s.registryOptions()
	if p := s.Settings.SigningKey; p != "" {
		k, err := signature.LoadSigner(p)
		if err != nil {
			return nil, err
		}
		opts = append(opts, registry.SignWith(k))
	}
	if p := s.Settings.EncryptionKey; p != "" {
		k, err := layercrypt.LoadPublicKey(p)
		if err != nil {
			return nil, err
		}
		opts = append(opts, registry.EncryptFor(k))
	}
	return opts, nil
}

// pullOptions adds signature verification (cr.checkpoint.verify-key) and decryption
// (cr.checkpoint.decryption-key). A key that cannot be loaded is ErrUntrusted: nothing is
// restored unverified.
func (s *Supervisor) pullOptions() ([]registry.Option, error) {
	opts := append(s.registryOptions(), registry.WithFileDigests(s.Settings.RestoreVerify == "digest"))
	if p := s.Settings.VerifyKey; p != "" {
		k, err := signature.LoadVerifier(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", registry.ErrUntrusted, err)
		}
		opts = append(opts, registry.VerifyWith(k))
	}
	if p := s.Settings.DecryptionKey; p != "" {
		k, err := layercrypt.LoadPrivateKey(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", registry.ErrUntrusted, err)
		}
		opts = append(opts, registry.DecryptWith(k))
	}
	return opts, nil
}

// pushPublished pushes the published checkpoint to cr.checkpoint.image. It never fails the
// checkpoint: each failure is logged and counted, and the push is tried again with backoff
// until it worked, pushAttempts were made or ctx ended.
func (s *Supervisor) pushPublished(ctx context.Context, st checkpoint.Store) {
	repo, err := name.NewRepository(s.Settings.CheckpointImage)
	if err != nil { // checked by config already
		s.Log.WithError(err).Error("not pushing the checkpoint")
		return
	}
	attempts := pushAttempts
	if s.Settings.CheckpointExit {
		attempts = pushAttemptsExit
	}
	wait := pushBackoff
	for attempt := 1; ; attempt++ {
		err := s.pushOnce(ctx, st, repo)
		if err == nil || ctx.Err() != nil {
			return
		}
		fields := logrus.Fields{"phase": "push", "image": repo.String(), "attempt": attempt}
		if attempt == attempts || !errors.Is(err, registry.ErrUnavailable) {
			s.Log.WithFields(fields).WithError(err).Error("push failed; giving up (the local checkpoint is not affected)")
			return
		}
		fields["retry_in"] = wait.String()
		s.Log.WithFields(fields).WithError(err).Warn("push failed (the local checkpoint is not affected); trying again")
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, pushBackoffMax)
	}
}

func (s *Supervisor) pushOnce(ctx context.Context, st checkpoint.Store, repo name.Repository) error {
	t := time.Now()
	r, err := st.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	if _, err := r.Verify(false); err != nil {
		return err
	}
	opts, err := s.pushOptions()
	if err != nil {
		return err
	}
	p, err := registry.PushTo(ctx, r, repo, opts...)
	var bytes int64
	if p != nil {
		bytes = p.Bytes
	}
	s.Metrics.ObserveTransfer(metrics.DirectionPush, time.Since(t), bytes, err)
	if err != nil {
		return err
	}
	s.phase("push", t, logrus.Fields{"checkpoint": r.Dir, "image": p.Ref.String(), "digest": p.Digest.DigestStr(), "bytes": p.Bytes, "layers": p.Layers})
	return nil
}

// startPush pushes the published checkpoint when cr.checkpoint.image is set: in the
// background while the checkpoint pod idles, or before returning when it is about to exit
// (cr.checkpoint.exit).
func (s *Supervisor) startPush(ctx context.Context, st checkpoint.Store) {
	if s.Settings.CheckpointImage == "" {
		return
	}
	if s.Settings.CheckpointExit {
		s.pushPublished(ctx, st)
		return
	}
	go s.pushPublished(ctx, st)
}

// locate finds the checkpoint to restore and checks it: the node's own when it is usable;
// otherwise, with cr.checkpoint.image, the registry's (through the node cache); when neither
// has one, the node's own after waiting up to cr.restore.wait.
func (s *Supervisor) locate(ctx context.Context, st checkpoint.Store) (*checkpoint.Reader, error) {
	if s.Settings.CheckpointImage == "" {
		return s.findChecked(ctx, st)
	}
	t := time.Now()
	r, err := st.Open()
	if err == nil {
		if _, err = s.check(r); err == nil {
			s.phase("find", t, logrus.Fields{"checkpoint": r.Dir})
			s.phase("verify", t, logrus.Fields{"checkpoint": r.Dir, "verify": s.Settings.RestoreVerify})
			return r, nil
		}
		r.Close()
	}
	local := err
	s.Log.WithFields(logrus.Fields{"checkpoint": st.Path(), "reason": local.Error(), "image": s.Settings.CheckpointImage}).
		Info("no usable checkpoint on this node: getting it from the registry")
	r, err = s.pull(ctx)
	if err == nil {
		return r, nil
	}
	if errors.Is(err, registry.ErrNotFound) && errors.Is(local, checkpoint.ErrNotFound) && s.Settings.RestoreWait > 0 {
		s.Log.WithError(err).Info("the registry has no checkpoint for this node either")
		return s.findChecked(ctx, st)
	}
	if errors.Is(err, registry.ErrNotFound) {
		// Nothing there for this node: the node's own reason is the one to report.
		return nil, fmt.Errorf("%w (and %s has no checkpoint for this node's class)", local, s.Settings.CheckpointImage)
	}
	return nil, err
}

// findChecked is find followed by check.
func (s *Supervisor) findChecked(ctx context.Context, st checkpoint.Store) (*checkpoint.Reader, error) {
	r, err := s.find(ctx, st)
	if err != nil {
		return nil, err
	}
	t := time.Now()
	if _, err := s.check(r); err != nil {
		r.Close()
		return nil, err
	}
	s.phase("verify", t, logrus.Fields{"checkpoint": r.Dir, "verify": s.Settings.RestoreVerify})
	return r, nil
}

// pull gets the checkpoint for this node's host class and this app from the registry into
// the node cache (one pull per node: other pods wait for it) and returns it held and checked.
// It takes at most cr.checkpoint.pull-timeout.
func (s *Supervisor) pull(ctx context.Context) (*checkpoint.Reader, error) {
	t := time.Now()
	bg := ctx // a lazy fetch goes on after the pull phase
	ctx, cancel := context.WithTimeout(ctx, s.Settings.PullTimeout)
	defer cancel()
	fail := func(err error) (*checkpoint.Reader, error) {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w (cr.checkpoint.pull-timeout=%s)", err, s.Settings.PullTimeout)
		}
		return nil, fmt.Errorf("%w: %w", errPull, err)
	}
	host, err := checkpoint.CurrentHost()
	if err != nil {
		return fail(err)
	}
	repo, err := name.NewRepository(s.Settings.CheckpointImage)
	if err != nil {
		return fail(err)
	}
	app := s.identity()
	ref := repo.Tag(registry.Tag(s.Settings.CheckpointName, app, host, s.CRIUVersion))
	cache, err := nodecache.New(s.Settings.CheckpointCache)
	if err != nil {
		return fail(err)
	}
	opts, err := s.pullOptions()
	if err != nil {
		return fail(err)
	}
	want := registry.Want{HostClass: registry.HostClass(host, s.CRIUVersion), App: registry.AppClass(app)}
	res, err := registry.Resolve(ctx, ref, want, opts...)
	if err != nil {
		if errors.Is(err, registry.ErrUnavailable) {
			// A checkpoint this node pulled for the tag before still restores while the
			// registry is down (it was verified when it was pulled).
			if d, lerr := cache.Lookup(ref.String()); lerr == nil && cache.Has(d) {
				s.Log.WithError(err).WithField("digest", d).Warn("registry unavailable: restoring the checkpoint this node pulled before")
				return s.fromCache(ctx, cache, ref, d, nil, t, opts)
			}
		}
		s.Metrics.ObserveTransfer(metrics.DirectionPull, time.Since(t), 0, err)
		return fail(err)
	}
	if s.Settings.RestoreFetch == "lazy" && !cache.Has(res.Digest.DigestStr()) {
		switch {
		case !registry.CanPullLazy(res):
			s.Log.WithField("image", ref.String()).Info("cr.restore.fetch=lazy: the image has no chunk tables (pushed by an older crwrap, or encrypted); pulling it whole")
		case !fuseAvailable():
			s.Log.WithField("image", ref.String()).Warn("cr.restore.fetch=lazy needs /dev/fuse in the pod; pulling the checkpoint whole")
		default:
			return s.pullLazy(ctx, bg, cache, ref, res, t, opts)
		}
	}
	return s.fromCache(ctx, cache, ref, res.Digest.DigestStr(), res, t, opts)
}

// fromCache returns the cache entry for digest, pulling res into it when it is not there
// (res nil: only a cached entry will do).
func (s *Supervisor) fromCache(ctx context.Context, cache *nodecache.Cache, ref name.Tag, digest string, res *registry.Resolved, t time.Time, opts []registry.Option) (*checkpoint.Reader, error) {
	var pulled int64
	r, result, err := cache.Get(ctx, digest, func(ctx context.Context, dir string) error {
		if res == nil {
			return fmt.Errorf("cache entry %s is gone", digest)
		}
		n, err := registry.Pull(ctx, res, dir, opts...)
		pulled = n
		return err
	})
	if result == nodecache.Miss || err != nil {
		s.Metrics.ObserveTransfer(metrics.DirectionPull, time.Since(t), pulled, err)
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w (cr.checkpoint.pull-timeout=%s)", err, s.Settings.PullTimeout)
		} else if errors.Is(err, unix.ENOSPC) {
			err = fmt.Errorf("%w (cache %s is full)", err, cache.Dir())
		}
		return nil, fmt.Errorf("%w: %w", errPull, err)
	}
	s.Metrics.IncCache(string(result))
	if err := cache.Remember(ref.String(), digest); err != nil {
		s.Log.WithError(err).Warn("could not record the tag in the cache")
	}
	s.phase("pull", t, logrus.Fields{"image": ref.String(), "digest": digest, "cache": string(result), "bytes": pulled, "checkpoint": r.Dir})
	vt := time.Now()
	if _, err := s.check(r); err != nil {
		r.Close()
		return nil, fmt.Errorf("%w: %s: %w", errPull, ref, err)
	}
	s.phase("verify", vt, logrus.Fields{"checkpoint": r.Dir, "verify": s.Settings.RestoreVerify})
	s.loadKdat()
	return r, nil
}

// A node that restores from the registry may have no CRIU kernel probe cache on its
// checkpoint root yet (its own checkpoint pod writes it there after its first dump), and the
// restore pods cannot write /cr: the node cache keeps one for them, or CRIU probes the kernel
// on every restore (a few hundred ms).
func (s *Supervisor) cacheKdat() criu.KdatCache {
	return criu.KdatCacheIn(s.Settings.CheckpointCache, s.CRIUVersion)
}

func (s *Supervisor) rootKdatMissing() bool {
	_, err := os.Stat(criu.KdatCacheIn(s.Settings.CheckpointRoot, s.CRIUVersion).Path)
	return errors.Is(err, os.ErrNotExist)
}

// loadKdat puts the node cache's probe cache in place when the checkpoint root has none.
func (s *Supervisor) loadKdat() {
	if s.rootKdatMissing() {
		if err := s.cacheKdat().Load(); err != nil {
			s.Log.WithError(err).Debug("CRIU kernel probe cache")
		}
	}
}

// keepKdat saves CRIU's probe cache to the node cache after a restore, when the registry is
// in use and the checkpoint root has none.
func (s *Supervisor) keepKdat() {
	if s.Settings.CheckpointImage == "" || !s.rootKdatMissing() {
		return
	}
	if err := s.cacheKdat().Save(); err != nil {
		s.Log.WithError(err).Debug("CRIU kernel probe cache not saved")
	}
}
