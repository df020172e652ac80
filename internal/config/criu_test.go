package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestCRIUKeys(t *testing.T) {
	tests := []struct {
		text    string
		want    Settings // only the three fields are compared
		wantErr string   // the whole message, with FILE standing for the file's path
		irmap   []string // cr.criu.irmap-scan-paths, when the text sets it
	}{
		{text: "", want: Settings{CheckpointTimeout: 5 * time.Minute, CRIUGhostLimit: 1 << 20}},
		{text: "cr.checkpoint.timeout=90s\ncr.criu.options=link-remap, tcp-close,\ncr.criu.ghost-limit=64M\n",
			want: Settings{CheckpointTimeout: 90 * time.Second, CRIUOptions: []string{"link-remap", "tcp-close"}, CRIUGhostLimit: 64 << 20}},
		{text: "cr.criu.ghost-limit=4096\n", want: Settings{CheckpointTimeout: 5 * time.Minute, CRIUGhostLimit: 4096}},
		{text: "cr.criu.ghost-limit=2G\n", want: Settings{CheckpointTimeout: 5 * time.Minute, CRIUGhostLimit: 2 << 30}},
		{text: "cr.checkpoint.timeout=0s\n", wantErr: `FILE:1: cr.checkpoint.timeout: duration "0s" must be greater than 0`},
		{text: "\ncr.criu.options=link-remap,leave-running\n",
			wantErr: `FILE:2: cr.criu.options: unknown CRIU option "leave-running" (want a comma-separated list of file-locks, link-remap, ext-unix-sk, tcp-skip-in-flight, tcp-close, shell-job, force-irmap, evasive-devices, skip-file-rwx-check)`},
		{text: "cr.criu.options=--link-remap\n", wantErr: `unknown CRIU option "--link-remap"`},
		{text: "cr.criu.options=link-remap --ghost-limit 1\n", wantErr: `unknown CRIU option "link-remap --ghost-limit 1"`},
		{text: "cr.criu.options=link-remap,link-remap\n", wantErr: `FILE:1: cr.criu.options: CRIU option "link-remap" is listed twice`},
		{text: "cr.criu.ghost-limit=1MB\n", wantErr: `FILE:1: cr.criu.ghost-limit: invalid size "1MB" (bytes, or a number with K, M, G, T or Ki, Mi, Gi, Ti, e.g. 512Mi)`},
		{text: "cr.criu.ghost-limit=0\n", wantErr: `FILE:1: cr.criu.ghost-limit: size "0" must be between 1 byte and 8 EiB`},
		{text: "cr.criu.ghost-limit=99999999999G\n", wantErr: `size "99999999999G" must be between 1 byte and 8 EiB`},
		{text: "cr.criu.ghost-limit=-1\n", wantErr: `invalid size "-1"`},
		{text: "cr.criu.irmap-scan-paths=/etc/app, /var/lib/app\n", irmap: []string{"/etc/app", "/var/lib/app"},
			want: Settings{CheckpointTimeout: 5 * time.Minute, CRIUGhostLimit: 1 << 20}},
		{text: "cr.criu.irmap-scan-paths=etc\n", wantErr: `FILE:1: cr.criu.irmap-scan-paths: irmap scan path "etc" must be an absolute path`},
		{text: "cr.criu.irmap-scan-paths=/a/../b\n", wantErr: `irmap scan path "/a/../b" is not a clean path (want "/b")`},
		{text: "cr.criu.irmap-scan-paths=/a b\n", wantErr: `irmap scan path "/a b" contains white space`},
		{text: "cr.criu.irmap-scan-paths=/a,/a\n", wantErr: `irmap scan path "/a" is listed twice`},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			p := writeProps(t, tt.text)
			s, err := Load(LoadOptions{Path: p, Args: []string{"app"}})
			if tt.wantErr != "" {
				want := strings.ReplaceAll(tt.wantErr, "FILE", p)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("error %v, want %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := Settings{CheckpointTimeout: s.CheckpointTimeout, CRIUOptions: s.CRIUOptions, CRIUGhostLimit: s.CRIUGhostLimit}
			if !reflect.DeepEqual(s.CRIUIrmapScanPaths, tt.irmap) {
				t.Errorf("irmap scan paths %q, want %q", s.CRIUIrmapScanPaths, tt.irmap)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
