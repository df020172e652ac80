// Package archive turns a crwrap checkpoint directory into a checkpoint archive and back.
//
// The archive is a tar stream (optionally zstd- or gzip-compressed) with the layout that
// Podman, CRI-O and checkpointctl share: checkpoint/, spec.dump, config.dump, stats-dump, and
// crwrap's own crwrap.json. Export follows the directory's symlink to the published version;
// Import unpacks into a fresh directory beside the destination and renames it into place, so a
// failed import leaves nothing behind. Import refuses entries that could write outside the
// destination or smuggle special files, and it drops every permission bit but the owner's: a
// checkpoint holds process memory.
//
// The package also carries the metadata types checkpointctl reads from config.dump and spec.dump
// (ContainerConfig, SpecAnnotations), so the checkpoint writer can produce what those tools
// expect.
package archive
