// Package registry holds the root tests of checkpoints shared across nodes through an OCI
// registry: a real registry (Debian's docker-registry, CNCF distribution) started by the test
// on loopback with its own configuration and storage, once with TLS and htpasswd basic auth;
// "nodes" are checkpoint roots and node caches of their own, with crwrap run as a child
// process as in test/cr. Node A checkpoints and pushes, an empty node B restores from the
// registry with the app's memory intact and next from its cache, four restores at once on an
// empty node pull once, and every hostile case (a tampered blob, a registry killed mid-pull or
// answering 500, an image of another host class) is a cold start with its reason and nothing
// half-written in the cache.
package registry
