// Package version holds crwrap's version, set at link time:
// -ldflags "-X github.com/crwrap/crwrap/internal/version.Version=v1.2.3".
package version

// Version is crwrap's version.
var Version = "dev"
