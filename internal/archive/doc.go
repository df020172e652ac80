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
// The layout itself (file names, config.dump and spec.dump metadata, verification) is
// internal/checkpoint's: Export requires checkpoint.ArchiveEntries, Import checks the inner
// root filesystem diff and crwrap.json with checkpoint.Reader.
package archive
