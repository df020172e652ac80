package registryd

import (
	"context"
	"errors"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func TestRegistry(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"plain", Options{}},
		{"tls-auth", Options{TLS: true, Auth: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Start(t, tc.opts)
			ref, err := name.ParseReference(r.Ref("test/img:v1"))
			if err != nil {
				t.Fatal(err)
			}
			img, err := random.Image(1024, 2)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(r.Transport())}
			if tc.opts.Auth {
				// Credentials from DOCKER_CONFIG, as a pod gets them from a mounted Secret.
				t.Setenv("DOCKER_CONFIG", r.DockerConfig)
				opts = append(opts, remote.WithAuthFromKeychain(authn.DefaultKeychain))
				err := remote.Write(ref, img, remote.WithContext(ctx), remote.WithTransport(r.Transport()))
				var terr *transport.Error
				if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
					t.Fatalf("push without credentials: got %v, want 401", err)
				}
			}
			if err := remote.Write(ref, img, opts...); err != nil {
				t.Fatalf("push: %v\n%s", err, r.Log())
			}
			layers, _ := img.Layers()
			d, _ := layers[0].Digest()
			if _, err := os.Stat(r.BlobPath(d.String())); err != nil {
				t.Fatalf("layer blob not in storage: %v", err)
			}
			blobs, err := r.Blobs()
			if err != nil || len(blobs) < 4 { // 2 layers, config, manifest
				t.Fatalf("blobs in storage: %d, %v", len(blobs), err)
			}

			r.Restart()
			got, err := remote.Image(ref, opts...)
			if err != nil {
				t.Fatalf("pull after restart: %v", err)
			}
			want, _ := img.Digest()
			if gd, _ := got.Digest(); gd != want {
				t.Fatalf("pulled digest %s, pushed %s", gd, want)
			}
			if !r.WaitLog(`"GET /v2/test/img/manifests/v1 `, 5*time.Second) {
				t.Fatalf("access log does not show the manifest pull:\n%s", r.Log())
			}
		})
	}
}
