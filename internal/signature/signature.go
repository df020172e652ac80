package signature

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Cosign's names for the parts of a key-based signature.
const (
	// PayloadMediaType is the media type of a signature layer (a simple-signing payload).
	PayloadMediaType types.MediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	// Annotation is the layer annotation holding the base64 signature of the payload.
	Annotation = "dev.cosignproject.cosign/signature"
	// PayloadType is critical.type of a cosign payload.
	PayloadType = "cosign container image signature"
	// TagSuffix ends the tag of a manifest's signature image: sha256-<hex>.sig.
	TagSuffix = ".sig"
)

// Bounds on what Verify reads from the registry before checking a byte of it.
const (
	maxSignatures = 100      // layers of one .sig image considered
	maxPayload    = 64 << 10 // bytes of one payload (they are ~250 bytes)
)

// ErrUntrusted is wrapped by every Verify error that is a trust decision (no signature, a
// signature by another key, a payload for another image, a malformed signature image), as
// opposed to not reaching the registry.
var ErrUntrusted = errors.New("untrusted")

// simpleSigning is cosign's payload (containers/image's simple signing format); field order
// and names are cosign's, so the bytes are the ones cosign produces.
type simpleSigning struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]any `json:"optional"`
}

// Payload is the simple-signing payload cosign signs for ref: its repository
// (registry/path) and manifest digest.
func Payload(ref name.Digest) ([]byte, error) {
	var p simpleSigning
	p.Critical.Identity.DockerReference = ref.Context().Name()
	p.Critical.Image.DockerManifestDigest = ref.DigestStr()
	p.Critical.Type = PayloadType
	return json.Marshal(p)
}

// Tag is where the signatures of ref's manifest live: REPO:sha256-<hex>.sig.
func Tag(ref name.Digest) (name.Tag, error) {
	h, err := v1.NewHash(ref.DigestStr())
	if err != nil {
		return name.Tag{}, fmt.Errorf("parse digest of %s: %w", ref, err)
	}
	return ref.Context().Tag(h.Algorithm + "-" + h.Hex + TagSuffix), nil
}

// Sign signs the manifest ref names and pushes the signature to ref's signature tag, keeping
// signatures already there (other keys). Signing twice with one key adds nothing.
func Sign(ctx context.Context, ref name.Digest, s *Signer, opts ...remote.Option) error {
	if err := sign(ctx, ref, s, opts); err != nil {
		return fmt.Errorf("sign %s: %w", ref, err)
	}
	return nil
}

func sign(ctx context.Context, ref name.Digest, s *Signer, opts []remote.Option) error {
	tag, err := Tag(ref)
	if err != nil {
		return err
	}
	payload, err := Payload(ref)
	if err != nil {
		return err
	}
	opts = append(append([]remote.Option{}, opts...), remote.WithContext(ctx))

	base, err := remote.Image(tag, opts...)
	switch {
	case isNotFound(err):
		base = mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	case err != nil:
		return fmt.Errorf("fetch existing signatures %s: %w", tag, err)
	default:
		m, err := base.Manifest()
		if err != nil {
			return fmt.Errorf("read existing signatures %s: %w", tag, err)
		}
		for _, l := range m.Layers {
			if ok, _ := signedBy(base, l, s.verifier, payload); ok {
				return nil
			}
		}
	}

	sig, err := s.Sign(payload)
	if err != nil {
		return fmt.Errorf("sign payload: %w", err)
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:       static.NewLayer(payload, PayloadMediaType),
		Annotations: map[string]string{Annotation: base64.StdEncoding.EncodeToString(sig)},
	})
	if err != nil {
		return fmt.Errorf("add signature layer: %w", err)
	}
	if err := remote.Write(tag, img, opts...); err != nil {
		return fmt.Errorf("push %s: %w", tag, err)
	}
	return nil
}

// Verify accepts the manifest ref names when one of its signatures is by v's key over a
// payload naming ref's repository and digest. Otherwise the error wraps ErrUntrusted and
// says why (or, when the registry cannot be asked, is that registry error).
func Verify(ctx context.Context, ref name.Digest, v *Verifier, opts ...remote.Option) error {
	tag, err := Tag(ref)
	if err != nil {
		return fmt.Errorf("verify %s: %w: %w", ref, ErrUntrusted, err)
	}
	opts = append(append([]remote.Option{}, opts...), remote.WithContext(ctx))
	img, err := remote.Image(tag, opts...)
	if isNotFound(err) {
		return fmt.Errorf("verify %s: %w: not signed (no %s)", ref, ErrUntrusted, tag.TagStr())
	}
	if err != nil {
		return fmt.Errorf("verify %s: fetch signatures %s: %w", ref, tag, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return fmt.Errorf("verify %s: %w: malformed signatures %s: %w", ref, ErrUntrusted, tag, err)
	}
	payload, err := Payload(ref)
	if err != nil {
		return fmt.Errorf("verify %s: %w", ref, err)
	}

	// Newest first: Sign appends, so with more than maxSignatures the latest are the ones read.
	var reasons []string
	for i := len(m.Layers) - 1; i >= 0; i-- {
		if len(m.Layers)-i > maxSignatures {
			reasons = append(reasons, fmt.Sprintf("only the newest %d of %d signatures read", maxSignatures, len(m.Layers)))
			break
		}
		ok, reason := signedBy(img, m.Layers[i], v, payload)
		if ok {
			return nil
		}
		reasons = append(reasons, reason)
	}
	if len(reasons) == 0 {
		reasons = append(reasons, "signature image has no signatures")
	}
	return fmt.Errorf("verify %s: %w: %s", ref, ErrUntrusted, strings.Join(dedupe(reasons), "; "))
}

// signedBy reports whether layer l of the signature image is a signature by v of a payload
// that names the same image as want, and if not, why.
func signedBy(img v1.Image, l v1.Descriptor, v *Verifier, want []byte) (bool, string) {
	if l.MediaType != PayloadMediaType {
		return false, fmt.Sprintf("layer of media type %q is not a signature", l.MediaType)
	}
	b64, ok := l.Annotations[Annotation]
	if !ok {
		return false, "signature layer without " + Annotation
	}
	sig, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return false, "signature is not base64"
	}
	if l.Size > maxPayload {
		return false, fmt.Sprintf("payload of %d bytes is larger than %d", l.Size, maxPayload)
	}
	payload, err := readLayer(img, l)
	if err != nil {
		return false, "read payload: " + err.Error()
	}
	if !v.Verify(payload, sig) {
		return false, "signed by another key"
	}
	if bytes.Equal(payload, want) {
		return true, ""
	}
	// The key signed something else: say what, from a payload we now know is authentic.
	var got, exp simpleSigning
	if err := json.Unmarshal(payload, &got); err != nil {
		return false, "signed payload is not JSON: " + err.Error()
	}
	_ = json.Unmarshal(want, &exp)
	switch {
	case got.Critical.Type != PayloadType:
		return false, fmt.Sprintf("signed payload of type %q", got.Critical.Type)
	case got.Critical.Image.DockerManifestDigest != exp.Critical.Image.DockerManifestDigest:
		return false, "signature is for another image " + got.Critical.Image.DockerManifestDigest
	case got.Critical.Identity.DockerReference != exp.Critical.Identity.DockerReference:
		return false, "signature is for another repository " + got.Critical.Identity.DockerReference
	}
	// Same type, digest and repository in other bytes (cosign's optional annotations):
	// as cosign does, accept it.
	return true, ""
}

// readLayer reads a payload blob of at most maxPayload bytes; go-containerregistry checks
// its digest at EOF.
func readLayer(img v1.Image, l v1.Descriptor) ([]byte, error) {
	layer, err := img.LayerByDigest(l.Digest)
	if err != nil {
		return nil, err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxPayload+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPayload {
		return nil, fmt.Errorf("larger than %d bytes", maxPayload)
	}
	if h, _, err := v1.SHA256(bytes.NewReader(b)); err != nil || h != l.Digest {
		return nil, fmt.Errorf("content does not match digest %s", l.Digest)
	}
	return b, nil
}

func isNotFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
