// Package checkpoint owns checkpoints on disk: where they live under the checkpoint root,
// how a new one is published atomically next to the previous one, how readers open one
// without it being removed under them, and how crwrap decides that a checkpoint belongs
// to this app on this host and is intact (manifest, identity, host compatibility).
package checkpoint
