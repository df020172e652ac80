package registry

import (
	"context"
	"io"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Signer signs a pushed checkpoint image, e.g. by pushing a cosign signature for its digest.
type Signer interface {
	Sign(ctx context.Context, ref name.Digest, opts ...remote.Option) error
}

// Verifier accepts or refuses the image at ref before any of its blobs is fetched; a refusal
// should wrap ErrUntrusted.
type Verifier interface {
	Verify(ctx context.Context, ref name.Digest, opts ...remote.Option) error
}

// Encrypter turns a plaintext layer into the layer that is pushed (its media type and the
// annotations of its descriptor say how to decrypt it).
type Encrypter interface {
	EncryptLayer(l v1.Layer) (v1.Layer, map[string]string, error)
}

// Decrypter turns a pulled layer's bytes back into its plaintext tar; desc is the layer's
// descriptor from the manifest. Layers whose media type it does not handle are not passed.
type Decrypter interface {
	// Handles reports whether the layer of that descriptor is encrypted for this Decrypter.
	Handles(desc v1.Descriptor) bool
	DecryptLayer(desc v1.Descriptor, r io.Reader) (io.Reader, error)
}

// Option changes how Push, Resolve and Pull work.
type Option func(*options)

type options struct {
	remote    []remote.Option
	signer    Signer
	verifier  Verifier
	encrypter Encrypter
	decrypter Decrypter
	jobs      int
	maxBytes  int64
	maxLayers int
	// fileDigests: Pull also compares every file's sha256 with crwrap.json.
	fileDigests bool
	// keychain authenticates PullLazy's range requests.
	keychain authn.Keychain
}

func makeOptions(ctx context.Context, opts []Option) *options {
	o := &options{jobs: 4, maxBytes: 64 << 30, maxLayers: 4096, keychain: DefaultKeychain}
	for _, opt := range opts {
		opt(o)
	}
	o.remote = append([]remote.Option{remote.WithContext(ctx), remote.WithJobs(o.jobs)}, o.remote...)
	return o
}

// WithRemote passes options to go-containerregistry's remote package: authentication
// (remote.WithAuthFromKeychain), transport (remote.WithTransport), user agent, ....
func WithRemote(opts ...remote.Option) Option {
	return func(o *options) { o.remote = append(o.remote, opts...) }
}

// WithSigner signs every pushed image after its manifest is pushed.
func WithSigner(s Signer) Option { return func(o *options) { o.signer = s } }

// WithVerifier makes Resolve refuse images the verifier does not accept.
func WithVerifier(v Verifier) Option { return func(o *options) { o.verifier = v } }

// WithEncrypter encrypts every pushed layer.
func WithEncrypter(e Encrypter) Option { return func(o *options) { o.encrypter = e } }

// WithDecrypter decrypts pulled layers; without it an encrypted layer is refused.
func WithDecrypter(d Decrypter) Option { return func(o *options) { o.decrypter = d } }

// WithJobs sets how many blobs are transferred at once (default 4).
func WithJobs(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.jobs = n
		}
	}
}

// WithFileDigests makes Pull hash every file as it is written and compare it with the
// digest crwrap.json records (the blobs' digests are always checked; this adds the check
// cr.restore.verify=digest makes of a local checkpoint).
func WithFileDigests(on bool) Option { return func(o *options) { o.fileDigests = on } }

// WithLimits bounds what a pull accepts: the sum of the layer sizes and their number
// (default 64 GiB, 4096 layers).
func WithLimits(maxBytes int64, maxLayers int) Option {
	return func(o *options) { o.maxBytes, o.maxLayers = maxBytes, maxLayers }
}

// WithKeychain sets the keychain PullLazy's range requests authenticate with (default
// authn.DefaultKeychain, as the supervisor's remote options).
func WithKeychain(k authn.Keychain) Option { return func(o *options) { o.keychain = k } }
