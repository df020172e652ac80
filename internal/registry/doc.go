// Package registry moves checkpoints between a node's checkpoint directory and an OCI
// registry: the image format (an OCI image manifest whose layers are tar archives of the
// checkpoint's files, the big page images one per layer, annotated with checkpointctl's
// org.criu.checkpoint.* keys), the tag that names a checkpoint by app identity and host
// class, and push and pull. A pull writes only into a directory its caller discards on
// error, checks every blob's digest and size while writing it, and verifies the result
// against the checkpoint's own manifest before returning. Signing, signature verification
// and layer encryption plug in as options; the package logs nothing.
package registry
