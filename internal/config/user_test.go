package config

import (
	"strings"
	"testing"
)

func TestLoadUserAndRootfsSize(t *testing.T) {
	tests := []struct {
		text     string
		user     string
		size     int64
		errorHas string
	}{
		{text: "", size: 1 << 30},
		{text: "cr.container.user=app\n", user: "app", size: 1 << 30},
		{text: "cr.container.user=1000:1000\ncr.container.rootfs-size=1048576\n", user: "1000:1000", size: 1 << 20},
		{text: "cr.container.user=www-data:adm\ncr.container.rootfs-size=2Ti\n", user: "www-data:adm", size: 2 << 40},
		{text: "cr.container.rootfs-size=64Ki\n", errorHas: `:1: cr.container.rootfs-size: size "64Ki" is less than 1Mi`},
		{text: "cr.container.rootfs-size=1GB\n", errorHas: `invalid size "1GB"`},
		{text: "cr.container.rootfs-size=-5Mi\n", errorHas: `invalid size "-5Mi"`},
		{text: "cr.container.rootfs-size=9999999999Ti\n", errorHas: `size "9999999999Ti" must be between 1 byte and 8 EiB`},
		{text: "cr.container.user=:staff\n", errorHas: `:1: cr.container.user: user ":staff": want USER or USER:GROUP`},
		{text: "cr.container.user=app:\n", errorHas: `user "app:": want USER or USER:GROUP`},
		{text: "cr.container.user=a b\n", errorHas: `user "a b": "a b" is not a user or group name or number`},
		{text: "cr.container.user=a:b:c\n", errorHas: `"b:c" is not a user or group name or number`},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			s, err := Load(LoadOptions{Path: writeProps(t, tt.text), Explicit: true, Args: []string{"app"}})
			if tt.errorHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errorHas) {
					t.Fatalf("got %v, want an error with %q", err, tt.errorHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.User != tt.user || s.RootfsSize != tt.size {
				t.Errorf("user %q size %d, want %q %d", s.User, s.RootfsSize, tt.user, tt.size)
			}
		})
	}
}
