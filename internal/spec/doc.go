// Package spec renders the app container's OCI runtime spec from a Go text/template and an
// Input, and checks the result before libcontainer sees it.
//
// Rendering is pure: no file is read and nothing is written. Templates run with
// missingkey=error and a json function that JSON-encodes a value, so no value (quotes,
// newlines, '$') can break the document; the output is decoded strictly into specs.Spec and
// validated against what crwrap needs (see Validate).
package spec
