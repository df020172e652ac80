package templates

import _ "embed"

// DefaultName is the name the built-in template is known by in error messages, and its file
// name in this directory and in the /crwrap bundle.
const DefaultName = "config.json.tmpl"

// Default is the built-in OCI config.json template (Go text/template over spec.Input), used
// when cr.container.template is not set.
//
//go:embed config.json.tmpl
var Default string
