package container

import (
	"reflect"
	"testing"

	"github.com/opencontainers/runc/libcontainer"
)

func TestLibcontainerVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"4.2.1", 40201, true},
		{"4.2", 40200, true},
		{" 3.17.1\n", 31701, true},
		{"4", 0, false},
		{"4.x.1", 0, false},
		{"4.2.1.5", 0, false},
		{"4.200", 0, false},
		{"", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := libcontainerVersion(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("libcontainerVersion(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}

// TestPresetCRIUVersion fails when a libcontainer upgrade renames or retypes the cached CRIU
// version: restores would then start CRIU twice again.
func TestPresetCRIUVersion(t *testing.T) {
	c := &libcontainer.Container{}
	if !presetCRIUVersion(c, 40201) {
		t.Fatalf("libcontainer.Container has no int field %q any more", criuVersionField)
	}
	if got := reflect.ValueOf(c).Elem().FieldByName(criuVersionField).Int(); got != 40201 {
		t.Fatalf("criuVersion = %d after preset, want 40201", got)
	}
	if presetCRIUVersion(nil, 40201) || presetCRIUVersion(c, 0) {
		t.Fatal("preset of a nil container or a zero version must do nothing")
	}
}
