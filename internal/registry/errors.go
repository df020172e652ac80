package registry

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/crwrap/crwrap/internal/checkpoint"
)

// Errors callers branch on (fallback reasons). Digest and size mismatches wrap
// checkpoint.ErrDamaged; an image of another app or host class wraps checkpoint.ErrForeign or
// checkpoint.ErrIncompatible.
var (
	// ErrNotFound: the registry has no image under that tag (or no such repository).
	ErrNotFound = errors.New("no checkpoint in the registry")
	// ErrUnavailable: the registry could not be reached or did not answer as it should
	// (connection refused, timeout, 5xx, authentication refused).
	ErrUnavailable = errors.New("registry unavailable")
	// ErrUntrusted: the image is not signed by the expected key, or is encrypted for a key
	// this node does not have.
	ErrUntrusted = errors.New("checkpoint image not trusted")
	// ErrFormat: the image is not a crwrap checkpoint this version reads.
	ErrFormat = errors.New("not a crwrap checkpoint image")
)

// classify wraps a go-containerregistry error in the sentinel it stands for.
func classify(action string, err error) error {
	if err == nil {
		return nil
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch {
		case te.StatusCode == http.StatusNotFound:
			return fmt.Errorf("%s: %w: %v", action, ErrNotFound, err)
		case len(te.Errors) > 0 && (te.Errors[0].Code == transport.ManifestUnknownErrorCode || te.Errors[0].Code == transport.NameUnknownErrorCode):
			return fmt.Errorf("%s: %w: %v", action, ErrNotFound, err)
		}
	}
	if errors.Is(err, checkpoint.ErrDamaged) || errors.Is(err, ErrUntrusted) || errors.Is(err, ErrFormat) ||
		errors.Is(err, checkpoint.ErrForeign) || errors.Is(err, checkpoint.ErrIncompatible) {
		return fmt.Errorf("%s: %w", action, err)
	}
	return fmt.Errorf("%s: %w: %w", action, ErrUnavailable, err)
}
