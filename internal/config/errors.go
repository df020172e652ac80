package config

import (
	"errors"
	"strconv"
	"strings"
)

// ErrInvalid is matched (errors.Is) by every configuration error Load returns: the caller
// maps it to exit code 2.
var ErrInvalid = errors.New("invalid configuration")

// Error is one configuration problem, located as precisely as it can be.
type Error struct {
	// File is the properties file the value came from ("" when none).
	File string
	// Line is the 1-based line in File where the key starts (0 when unknown or not from File).
	Line int
	// Key is the cr.* key concerned ("" for problems of the file as a whole).
	Key string
	// Msg says what is wrong, lowercase, without the location.
	Msg string
	// Source, when set, replaces File and Line in the message: "env CR_MODE" or "flag --mode".
	Source string
}

// Error formats the problem as one line: "file:line: key: msg", "env CR_MODE: key: msg" or
// "flag --mode: key: msg"; the parts that are unknown are left out.
func (e *Error) Error() string {
	var parts []string
	switch {
	case e.Source != "":
		parts = append(parts, e.Source)
	case e.File != "" && e.Line > 0:
		parts = append(parts, e.File+":"+strconv.Itoa(e.Line))
	case e.File != "":
		parts = append(parts, e.File)
	}
	if e.Key != "" {
		parts = append(parts, e.Key)
	}
	parts = append(parts, e.Msg)
	return oneLine(strings.Join(parts, ": "))
}

// Is reports whether target is ErrInvalid, so that errors.Is(err, ErrInvalid) holds for every *Error.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// oneLine keeps a message on one line whatever a value contained.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s)
}
