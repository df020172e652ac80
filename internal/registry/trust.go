package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/crwrap/crwrap/internal/layercrypt"
	"github.com/crwrap/crwrap/internal/signature"
)

// SignWith signs every pushed image with s as cosign does (the REPO:sha256-<hex>.sig tag),
// so that `cosign verify --key` accepts it.
func SignWith(s *signature.Signer) Option { return WithSigner(cosignSigner{s}) }

// VerifyWith accepts only images signed by v's key pair.
func VerifyWith(v *signature.Verifier) Option { return WithVerifier(cosignVerifier{v}) }

// EncryptFor encrypts every pushed layer for the recipients (ocicrypt JWE layers).
func EncryptFor(recipients ...*layercrypt.PublicKey) Option {
	return WithEncrypter(jweEncrypter{recipients})
}

// DecryptWith decrypts pulled layers encrypted for k's public key.
func DecryptWith(k *layercrypt.PrivateKey) Option { return WithDecrypter(jweDecrypter{k}) }

type cosignSigner struct{ s *signature.Signer }

func (c cosignSigner) Sign(ctx context.Context, ref name.Digest, opts ...remote.Option) error {
	return signature.Sign(ctx, ref, c.s, opts...)
}

type cosignVerifier struct{ v *signature.Verifier }

func (c cosignVerifier) Verify(ctx context.Context, ref name.Digest, opts ...remote.Option) error {
	err := signature.Verify(ctx, ref, c.v, opts...)
	if err != nil && errors.Is(err, signature.ErrUntrusted) {
		return fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	return err
}

type jweEncrypter struct{ to []*layercrypt.PublicKey }

func (e jweEncrypter) EncryptLayer(l v1.Layer) (v1.Layer, map[string]string, error) {
	el, err := layercrypt.Encrypt(l, e.to...)
	if err != nil {
		return nil, nil, err
	}
	return el, el.Annotations(), nil
}

type jweDecrypter struct{ k *layercrypt.PrivateKey }

func (d jweDecrypter) Handles(desc v1.Descriptor) bool {
	return strings.HasSuffix(string(desc.MediaType), layercrypt.MediaTypeSuffix)
}

func (d jweDecrypter) DecryptLayer(desc v1.Descriptor, r io.Reader) (io.Reader, error) {
	return layercrypt.Decrypt(r, desc, d.k)
}
