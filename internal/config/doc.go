// Package config turns /etc/cr.properties, the environment and the command line into typed,
// validated Settings.
//
// Every setting is a cr.* key of the DESIGN.md table. Its value comes from the first of: a
// command-line flag, the environment variable named by EnvName (CR_MODE for cr.mode), the
// properties file, the built-in default. Values are taken literally: ${...} expansion of the
// properties library is disabled, so a readiness command such as `test -f $HOME/x` reaches
// the shell as written.
//
// Every problem is reported as one *Error naming where the bad value came from (file and line,
// environment variable or flag) and the key; all of them match ErrInvalid with errors.Is.
package config
