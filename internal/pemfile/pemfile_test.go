package pemfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	params := "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
	key := "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
	for _, tc := range []struct{ name, text, wantType, wantErr string }{
		{"key", key, "PUBLIC KEY", ""},
		{"parameters first", params + key, "PUBLIC KEY", ""},
		{"only parameters", params, "", "no PEM block"},
		{"garbage", "not a key\n", "", "no PEM block"},
		{"too large", strings.Repeat("x", MaxSize+1), "", "larger than 64 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := ReadKey(write(strings.ReplaceAll(tc.name, " ", "-"), tc.text))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || b.Type != tc.wantType {
				t.Fatalf("got %v, %v; want a %s block", b, err, tc.wantType)
			}
		})
	}
	if _, err := ReadKey(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing file gave no error")
	}
}
