// Package container runs the app in a container through embedded runc (libcontainer):
// start, signal, wait, checkpoint and restore it, and clean up what an earlier crwrap left
// behind when it was killed. It is the only package that imports libcontainer.
package container
