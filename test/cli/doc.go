// Package cli tests crwrap's command line against the built binary: every bad input is exit
// code 2 and one line on stderr naming where the problem is (file:line, flag or environment
// variable) and the key; render, version and help work. None of it needs root.
package cli
