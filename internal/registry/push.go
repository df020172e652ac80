package registry

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/crwrap/crwrap/internal/checkpoint"
)

// Pushed describes a pushed checkpoint image.
type Pushed struct {
	// Ref is the tag it was pushed under.
	Ref name.Tag
	// Digest is the manifest's digest, in the same repository.
	Digest name.Digest
	// Bytes is the size of all its layers.
	Bytes int64
	// Layers is the number of layers.
	Layers int
}

// Image builds the OCI image of the held checkpoint r (verified: see checkpoint.Open):
// layers as described in the package documentation, the checkpoint's manifest annotations,
// and an image config naming its architecture. Building reads every file once, through r,
// and refuses a file whose content no longer matches crwrap.json.
func Image(r *checkpoint.Reader, opts ...Option) (v1.Image, error) {
	o := makeOptions(context.Background(), opts)
	m := r.Manifest
	if m == nil {
		return nil, fmt.Errorf("image of %s: the checkpoint was not verified", r.Dir)
	}
	files, err := r.Files()
	if err != nil {
		return nil, err
	}
	var adds []mutate.Addendum
	for _, g := range group(files) {
		l, err := newFileLayer(r, g)
		if err != nil {
			return nil, err
		}
		add := mutate.Addendum{Layer: l, MediaType: types.OCIUncompressedLayer}
		if len(g) == 1 {
			add.Annotations = map[string]string{AnnotationTitle: g[0].Path}
		}
		if l.table != nil && o.encrypter == nil {
			// Ranges of a ciphertext do not map to the file: encrypted layers are pulled whole.
			for k, v := range l.table.annotations() {
				add.Annotations[k] = v
			}
		}
		if o.encrypter != nil {
			el, ann, err := o.encrypter.EncryptLayer(l)
			if err != nil {
				return nil, fmt.Errorf("encrypt layer: %w", err)
			}
			mt, err := el.MediaType()
			if err != nil {
				return nil, fmt.Errorf("encrypt layer: %w", err)
			}
			add.Layer, add.MediaType = el, mt
			if add.Annotations == nil {
				add.Annotations = map[string]string{}
			}
			for k, v := range ann {
				add.Annotations[k] = v
			}
		}
		adds = append(adds, add)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", m.Host.Arch
	cfg.Created = v1.Time{Time: m.Created.UTC()}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	return mutate.Annotations(img, annotations(m)).(v1.Image), nil
}

// Push pushes the held, verified checkpoint r to ref, then signs it when a Signer is set.
// Blobs the registry has are not sent again, so pushing the same checkpoint twice moves only
// its manifest.
func Push(ctx context.Context, r *checkpoint.Reader, ref name.Tag, opts ...Option) (*Pushed, error) {
	o := makeOptions(ctx, opts)
	img, err := Image(r, opts...)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", ref, err)
	}
	if err := remote.Write(ref, img, o.remote...); err != nil {
		return nil, classify("push "+ref.String(), err)
	}
	d, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", ref, err)
	}
	p := &Pushed{Ref: ref, Digest: ref.Context().Digest(d.String())}
	mf, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", ref, err)
	}
	for _, l := range mf.Layers {
		p.Bytes += l.Size
	}
	p.Layers = len(mf.Layers)
	if o.signer != nil {
		if err := o.signer.Sign(ctx, p.Digest, o.remote...); err != nil {
			return p, classify("sign "+p.Digest.String(), err)
		}
	}
	return p, nil
}

// PushTo pushes r to repo under the tag its manifest calls for (TagOf).
func PushTo(ctx context.Context, r *checkpoint.Reader, repo name.Repository, opts ...Option) (*Pushed, error) {
	if r.Manifest == nil {
		return nil, fmt.Errorf("push %s: the checkpoint was not verified", r.Dir)
	}
	return Push(ctx, r, repo.Tag(TagOf(r.Manifest)), opts...)
}
