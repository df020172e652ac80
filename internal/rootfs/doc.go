// Package rootfs prepares the app's root filesystem: an overlay whose lower layer is the
// pod's own root (a non-recursive bind of "/", so none of the pod's other mounts leak in)
// and whose upper layer is a scratch directory of crwrap's. Everything the app writes to
// its root lands in the upper layer, which is what a checkpoint saves as rootfs-diff.tar
// (and deleted.files) and what a restore puts back before CRIU runs.
package rootfs
