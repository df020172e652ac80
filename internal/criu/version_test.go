package criu

import (
	"errors"
	"testing"
)

func TestParseVersion(t *testing.T) {
	tests := []struct {
		name, out string
		want      Version
		wantErr   bool
	}{
		{name: "release", out: "Version: 4.2.1\n", want: Version{Major: 4, Minor: 2, Patch: 1}},
		{name: "two numbers", out: "Version: 4.2\n", want: Version{Major: 4, Minor: 2}},
		{name: "git build", out: "Version: 4.1\nGitID: v4.1-123-gabcdef\n", want: Version{Major: 4, Minor: 1, GitID: "v4.1-123-gabcdef"}},
		{name: "leading noise", out: "Warn: something\nVersion: 3.17.1\n", want: Version{Major: 3, Minor: 17, Patch: 1}},
		{name: "suffix", out: "Version: 4.2-rc1\n", want: Version{Major: 4, Minor: 2}},
		{name: "empty", out: "", wantErr: true},
		{name: "no version line", out: "criu: command not found\n", wantErr: true},
		{name: "garbage version", out: "Version: four\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVersion(tt.out)
			if tt.wantErr {
				if !errors.Is(err, ErrVersionFormat) {
					t.Fatalf("ParseVersion(%q) error = %v, want ErrVersionFormat", tt.out, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseVersion(%q) = %+v, %v; want %+v", tt.out, got, err, tt.want)
			}
		})
	}
}

func TestParseRelease(t *testing.T) {
	tests := []struct {
		in      string
		want    Version
		wantErr bool
	}{
		{in: "6.18.44-fc-v595", want: Version{Major: 6, Minor: 18, Patch: 44}},
		{in: "6.1.0-18-amd64", want: Version{Major: 6, Minor: 1}},
		{in: "5.15.0\n", want: Version{Major: 5, Minor: 15}},
		{in: "6.16", want: Version{Major: 6, Minor: 16}},
		{in: "6", wantErr: true},
		{in: "", wantErr: true},
		{in: "v6.1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRelease(tt.in)
			if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
				t.Fatalf("ParseRelease(%q) = %+v, %v; want %+v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestCompareAndAtLeast(t *testing.T) {
	v := func(a, b, c int) Version { return Version{Major: a, Minor: b, Patch: c} }
	tests := []struct {
		a, b Version
		want int
	}{
		{v(4, 2, 0), v(4, 2, 0), 0},
		{v(4, 2, 1), v(4, 2, 0), 1},
		{v(4, 1, 9), v(4, 2, 0), -1},
		{v(3, 17, 1), v(4, 0, 0), -1},
		{v(10, 0, 0), v(9, 99, 99), 1},
	}
	for _, tt := range tests {
		if got := tt.a.Compare(tt.b); got != tt.want {
			t.Errorf("%v.Compare(%v) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
	if !v(4, 2, 1).AtLeast(4, 2) || !v(4, 2, 0).AtLeast(4, 2) || v(4, 1, 1).AtLeast(4, 2) {
		t.Error("AtLeast(4, 2) wrong")
	}
	if got := v(4, 2, 0).String(); got != "4.2" {
		t.Errorf("String() = %q", got)
	}
	if got := v(4, 2, 1).String(); got != "4.2.1" {
		t.Errorf("String() = %q", got)
	}
}

func TestRequiredFor(t *testing.T) {
	tests := []struct {
		kernel string
		want   Version
	}{
		{"6.18.44-fc-v595", Version{Major: 4, Minor: 2}},
		{"6.16.0", Version{Major: 4, Minor: 2}},
		{"6.15.9", BaseCRIU},
		{"6.1.0-18-amd64", BaseCRIU},
	}
	for _, tt := range tests {
		k, err := ParseRelease(tt.kernel)
		if err != nil {
			t.Fatal(err)
		}
		r := RequiredFor(k)
		if r.Min != tt.want || r.Reason == "" {
			t.Errorf("RequiredFor(%s) = %+v, want min %v", tt.kernel, r, tt.want)
		}
	}
}
