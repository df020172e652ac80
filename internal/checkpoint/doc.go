// Package checkpoint owns checkpoints on disk: the layout of a checkpoint directory (which
// files there are, their names, how each is written and how the whole is sealed), where
// checkpoints live under the checkpoint root, how a new one is published atomically next to
// the previous one, how readers open one without it being removed under them, and how crwrap
// decides that a checkpoint belongs to this app on this host and is intact (manifest,
// identity, host compatibility). No other package names a file of a checkpoint or checks
// one of its digests: restore, inspect, import/export and the registry code go through
// Draft and Reader.
//
// Writing: Writer.NewVersion gives a private directory; a Draft of it says where CRIU's images
// go (ImagesDir) and writes the other parts (WriteRootfsDiff, CopyStats, WriteSpec,
// WriteConfigDump, the metadata checkpointctl reads); Draft.Seal makes it root-only and writes
// crwrap.json and crwrap.json.sha256 last; Writer.Publish puts it in place.
//
// Reading: a checkpoint directory is untrusted input. Code that reads one made elsewhere
// (restore, import, a registry pull) calls Open (or Store.Open, then Reader.Verify): the
// version is held by one descriptor, crwrap.json is checked against crwrap.json.sha256 before
// it is parsed, and the tree is checked against crwrap.json without following a symlink.
// Reader.Check makes the same checks for a report (crwrap inspect), listing every problem
// instead of stopping at the first. The Reader then gives files (OpenFile, OpenListed, which
// checks a file's digest as it is streamed, ConfigDump, ApplyRootfsDiff) and directories for
// other processes (Path: a /proc/<pid>/fd path) from that held directory only.
// Reader.ManifestDigest ("sha256:<hex>" of crwrap.json) covers every file of the checkpoint:
// it is what a signature signs.
package checkpoint
