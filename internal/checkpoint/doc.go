// Package checkpoint owns checkpoints on disk: where they live under the checkpoint root,
// how a new one is published atomically next to the previous one, how readers open one
// without it being removed under them, and how crwrap decides that a checkpoint belongs
// to this app on this host and is intact (manifest, identity, host compatibility).
//
// A checkpoint directory is untrusted input. Code that reads one made elsewhere (restore,
// import, a registry pull) calls Open (or Store.Open, then Reader.Verify): the version is held
// by one descriptor, crwrap.json is checked against crwrap.json.sha256 before it is parsed,
// and the tree is checked against crwrap.json without following a symlink. The Reader then
// gives files (OpenFile) and directories for other processes (Path, a /proc/<pid>/fd path)
// from that held directory only. Reader.ManifestDigest ("sha256:<hex>" of crwrap.json) covers
// every file of the checkpoint: it is what a signature signs. WriteManifest writes and seals
// the manifest of a new version; SealManifest seals an edited one.
package checkpoint
