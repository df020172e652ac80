package container

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unsafe"

	"github.com/opencontainers/runc/libcontainer"
)

// libcontainer asks CRIU for its version before every checkpoint and restore: it starts
// `criu swrk` once only to ask (checkCriuVersion in libcontainer/criu_linux.go), then again
// for the real work, and keeps the answer in the unexported field criuVersion of the
// *libcontainer.Container. crwrap already knows the version (the bundle's VERSION file, or
// CRIU's answer at start-up when cr.criu.path names another CRIU), so it fills that field in
// and saves one CRIU start per checkpoint or restore (~4 ms here, more on a loaded node).
// The field is looked up by name and type; should a libcontainer upgrade rename it, nothing
// is set and libcontainer asks CRIU as before (TestPresetCRIUVersion then fails).

// criuVersionField is the name of libcontainer's cached CRIU version (runc v1.4.x).
const criuVersionField = "criuVersion"

// libcontainerVersion converts "4.2.1" or "4.2" to libcontainer's number (40201).
func libcontainerVersion(v string) (int, error) {
	parts := strings.Split(strings.TrimSpace(v), ".")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, fmt.Errorf("parse CRIU version %q: want major.minor[.patch]", v)
	}
	n := 0
	for i := range 3 {
		x := 0
		if i < len(parts) {
			var err error
			if x, err = strconv.Atoi(parts[i]); err != nil || x < 0 || x > 99 {
				return 0, fmt.Errorf("parse CRIU version %q: bad number %q", v, parts[i])
			}
		}
		n = n*100 + x
	}
	return n, nil
}

// presetCRIUVersion stores version (libcontainer's number) in c's CRIU version cache; it
// reports whether it could.
func presetCRIUVersion(c *libcontainer.Container, version int) bool {
	if c == nil || version <= 0 {
		return false
	}
	f := reflect.ValueOf(c).Elem().FieldByName(criuVersionField)
	if !f.IsValid() || f.Kind() != reflect.Int {
		return false
	}
	reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().SetInt(int64(version))
	return true
}
