// Package nodecache is a node's cache of pulled checkpoints: complete, verified checkpoint
// directories named by the digest of the image they came from, shared by every pod of the
// node through a hostPath. However many pods ask for one digest at once, one of them fills
// the entry (an flock per digest) while the others wait for it; an entry appears by a
// rename only once it was filled and synced, so a reader never sees a part, and whatever a
// killed filler left is removed by the next one.
package nodecache
