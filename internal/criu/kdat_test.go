package criu

import "testing"

func TestKdatCacheIn(t *testing.T) {
	for _, tc := range []struct{ dir, version, want string }{
		{"/cr", "4.2.1", "/cr/.crwrap/criu-4.2.1.kdat"},
		{"/var/cache/crwrap/", "4.1", "/var/cache/crwrap/.crwrap/criu-4.1.kdat"},
	} {
		if got := KdatCacheIn(tc.dir, tc.version).Path; got != tc.want {
			t.Errorf("KdatCacheIn(%q, %q) = %q, want %q", tc.dir, tc.version, got, tc.want)
		}
	}
}
