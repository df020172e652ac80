package criu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// Version is a dotted release number: a CRIU version ("4.2.1") or a kernel release ("6.18.44").
type Version struct {
	Major, Minor, Patch int
	// GitID is CRIU's "GitID:" line when it printed one.
	GitID string
}

// String formats v as CRIU does: "4.2" when Patch is 0, else "4.2.1".
func (v Version) String() string {
	if v.Patch == 0 {
		return fmt.Sprintf("%d.%d", v.Major, v.Minor)
	}
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
}

// IsZero reports whether v is the zero value (no version known).
func (v Version) IsZero() bool { return v.Major == 0 && v.Minor == 0 && v.Patch == 0 }

// Compare returns -1, 0 or 1 as v is older than, equal to or newer than o (GitID is ignored).
func (v Version) Compare(o Version) int {
	for _, d := range [...]int{v.Major - o.Major, v.Minor - o.Minor, v.Patch - o.Patch} {
		switch {
		case d < 0:
			return -1
		case d > 0:
			return 1
		}
	}
	return 0
}

// AtLeast reports whether v >= major.minor.
func (v Version) AtLeast(major, minor int) bool {
	return v.Compare(Version{Major: major, Minor: minor}) >= 0
}

// ErrVersionFormat is returned when a version string cannot be parsed.
var ErrVersionFormat = errors.New("unrecognised version")

// ParseRelease parses a leading "X.Y[.Z]" and ignores what follows the numbers, so it reads both
// "4.2.1" and a kernel release such as "6.18.44-fc-v595" or "6.1.0-18-amd64".
func ParseRelease(s string) (Version, error) {
	s = strings.TrimSpace(s)
	var nums []int
	rest := s
	for len(nums) < 3 {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			break
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil {
			return Version{}, fmt.Errorf("parse %q: %w", s, ErrVersionFormat)
		}
		nums = append(nums, n)
		rest = rest[i:]
		if !strings.HasPrefix(rest, ".") {
			break
		}
		rest = rest[1:]
	}
	if len(nums) < 2 {
		return Version{}, fmt.Errorf("parse %q: %w", s, ErrVersionFormat)
	}
	v := Version{Major: nums[0], Minor: nums[1]}
	if len(nums) == 3 {
		v.Patch = nums[2]
	}
	return v, nil
}

// ParseVersion parses the output of "criu --version":
//
//	Version: 4.2.1
//	GitID: v4.2-12-gdeadbeef
//
// The GitID line is optional (release builds omit it).
func ParseVersion(out string) (Version, error) {
	var v Version
	found := false
	for _, line := range strings.Split(out, "\n") {
		key, val, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch strings.TrimSpace(key) {
		case "Version":
			pv, err := ParseRelease(val)
			if err != nil {
				return Version{}, fmt.Errorf("criu --version: %w", err)
			}
			v.Major, v.Minor, v.Patch = pv.Major, pv.Minor, pv.Patch
			found = true
		case "GitID":
			v.GitID = val
		}
	}
	if !found {
		return Version{}, fmt.Errorf("criu --version: no \"Version:\" line in %q: %w", strings.TrimSpace(out), ErrVersionFormat)
	}
	return v, nil
}

// QueryVersion runs "criuArgv... --version" (criuArgv as from Bundle.Argv("criu") or
// []string{"/usr/sbin/criu"}) and parses what it prints.
func QueryVersion(ctx context.Context, criuArgv []string) (Version, error) {
	if len(criuArgv) == 0 {
		return Version{}, errors.New("query criu version: empty command")
	}
	args := append(append([]string{}, criuArgv[1:]...), "--version")
	cmd := exec.CommandContext(ctx, criuArgv[0], args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return Version{}, fmt.Errorf("run %s --version: %w: %s", criuArgv[0], err, strings.TrimSpace(out.String()))
	}
	return ParseVersion(out.String())
}

// SocketKernel is the first kernel release on which CRIU older than SocketCRIU cannot dump any
// TCP or UDP socket ("sockets: Can't get 1:16 opt: Operation not supported"; fixed in CRIU 4.2).
var (
	SocketKernel = Version{Major: 6, Minor: 16}
	SocketCRIU   = Version{Major: 4, Minor: 2}
)

// BaseCRIU is the oldest CRIU crwrap accepts on any kernel (runc's own floor is 3.0; older than
// 3.17 misses too many fixes for current kernels).
var BaseCRIU = Version{Major: 3, Minor: 17}

// Requirement is the minimum CRIU for a kernel and why.
type Requirement struct {
	Min    Version
	Reason string
}

// RequiredFor returns the oldest CRIU that can checkpoint and restore on the given kernel release.
func RequiredFor(kernel Version) Requirement {
	if kernel.Compare(SocketKernel) >= 0 {
		return Requirement{
			Min: SocketCRIU,
			Reason: fmt.Sprintf("on kernel >= %s CRIU older than %s cannot dump TCP/UDP sockets",
				SocketKernel, SocketCRIU),
		}
	}
	return Requirement{Min: BaseCRIU, Reason: fmt.Sprintf("crwrap needs CRIU >= %s", BaseCRIU)}
}
