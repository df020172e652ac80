// Package lazyfs mounts a read-only FUSE view of one flat directory whose files are served
// by ReaderAts: CRIU reads a checkpoint's images from it as from any directory while the
// reads of page images wait until their range has arrived (internal/registry's LazyFile).
// Reading is all it does: no writes, no links, no other file types.
package lazyfs
