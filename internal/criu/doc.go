// Package criu is crwrap's side of the self-contained CRIU bundle: it finds the bundle next to
// the running crwrap binary, puts it on PATH for runc (which only ever execs "criu" from PATH),
// dispatches crwrap's multi-call names (criu, tar, gzip, iptables-restore, nft ...) to the
// bundled programs through the bundle's own dynamic loader, and reads and compares CRIU and
// kernel versions.
//
// The bundle, as images/criu/bundle.sh lays it out under /crwrap/criu:
//
//	root/lib64/ld-linux-x86-64.so.2      the loader every bundled program runs under
//	root/usr/sbin/criu, root/usr/bin/tar ... the programs and their shared libraries
//	bin/criu, bin/tar ...                symlinks to ../../bin/crwrap (this binary)
//	VERSION                              CRIU's version as the bundled criu reports it
//
// No shell is involved anywhere: distroless images have none.
package criu
