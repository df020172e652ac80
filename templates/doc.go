// Package templates holds crwrap's default OCI config.json template, embedded in the binary.
//
// The same file, config.json.tmpl, is copied into the /crwrap bundle so users have a starting
// point for their own cr.container.template. Render it with the spec package.
package templates
