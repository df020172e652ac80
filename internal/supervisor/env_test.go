package supervisor

import (
	"slices"
	"testing"
)

func TestAppEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want []string
	}{
		{"adds multipathtcp", []string{"PATH=/bin"}, []string{"PATH=/bin", "GODEBUG=multipathtcp=0"}},
		{"appends to GODEBUG", []string{"GODEBUG=gctrace=1"}, []string{"GODEBUG=gctrace=1,multipathtcp=0"}},
		{"empty GODEBUG", []string{"GODEBUG="}, []string{"GODEBUG=multipathtcp=0"}},
		{"keeps explicit", []string{"GODEBUG=multipathtcp=1"}, []string{"GODEBUG=multipathtcp=1"}},
		{"drops crwrap and libcontainer", []string{"CRWRAP_X=1", "_LIBCONTAINER_INITPIPE=3", "A=b"}, []string{"A=b", "GODEBUG=multipathtcp=0"}},
		{"value with $ passes", []string{"X=$HOME ${Y}"}, []string{"X=$HOME ${Y}", "GODEBUG=multipathtcp=0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := appEnv(tc.in); !slices.Equal(got, tc.want) {
				t.Fatalf("appEnv(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
