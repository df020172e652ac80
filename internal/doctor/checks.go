package doctor

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/crwrap/crwrap/internal/criu"
)

type check struct {
	name string
	fn   func(context.Context, *env) Result
}

// checks run in this order; later ones use what earlier ones found (kernel, config, mounts, CRIU).
var checks = []check{
	{"privileges", checkPrivileges},
	{"kernel", checkKernel},
	{"namespaces", checkNamespaces},
	{"kernel config", checkKernelConfig},
	{"cgroups", checkCgroups},
	{"freezer", checkFreezer},
	{"criu", checkCRIU},
	{"criu version", checkCRIUVersion},
	{"criu check", checkCRIUCheck},
	{"lazy restore", checkLazy},
	{"tools", checkTools},
	{"kdat cache", checkKdat},
	{"seccomp", checkSeccomp},
	{"lsm", checkLSM},
}

// Capability numbers from linux/capability.h.
var neededCaps = []struct {
	bit  uint
	name string
}{
	{1, "CAP_DAC_OVERRIDE"}, {3, "CAP_FOWNER"}, {5, "CAP_KILL"}, {6, "CAP_SETGID"}, {7, "CAP_SETUID"},
	{12, "CAP_NET_ADMIN"}, {18, "CAP_SYS_CHROOT"}, {19, "CAP_SYS_PTRACE"}, {21, "CAP_SYS_ADMIN"},
}

// capSysResource is wanted, not needed: without it CRIU logs "Can't setup RLIMIT_NOFILE" and
// goes on (measured here), but cannot restore rlimits above the hard limit.
const capSysResource = 24

const capCheckpointRestore = 40

func checkPrivileges(_ context.Context, e *env) Result {
	const hint = "run crwrap as root with all capabilities (Kubernetes: securityContext.privileged: true)"
	uid := "?"
	if v, ok := e.statusField("Uid"); ok {
		if f := strings.Fields(v); len(f) >= 2 {
			uid = f[1] // effective
		}
	}
	capHex, ok := e.statusField("CapEff")
	if !ok {
		return Result{Status: Fail, Detail: "cannot read CapEff from /proc/self/status", Hint: hint}
	}
	caps, err := strconv.ParseUint(capHex, 16, 64)
	if err != nil {
		return Result{Status: Fail, Detail: fmt.Sprintf("bad CapEff %q", capHex), Hint: hint}
	}
	var missing []string
	for _, c := range neededCaps {
		if caps&(1<<c.bit) == 0 {
			missing = append(missing, c.name)
		}
	}
	if len(missing) > 0 {
		return Result{Status: Fail, Detail: fmt.Sprintf("uid %s, missing %s", uid, strings.Join(missing, ", ")), Hint: hint}
	}
	detail := fmt.Sprintf("uid %s, CAP_SYS_ADMIN, CAP_SYS_PTRACE and the other capabilities CRIU needs", uid)
	if caps&(1<<capCheckpointRestore) != 0 {
		detail = fmt.Sprintf("uid %s, CAP_SYS_ADMIN, CAP_CHECKPOINT_RESTORE, CAP_SYS_PTRACE and the rest CRIU needs", uid)
	}
	if caps&(1<<capSysResource) == 0 {
		return Result{Status: Warn, Detail: detail + "; no CAP_SYS_RESOURCE: CRIU cannot raise its RLIMIT_NOFILE or restore rlimits above the hard limit",
			Hint: "grant CAP_SYS_RESOURCE (privileged: true) if the app needs many file descriptors"}
	}
	return Result{Status: OK, Detail: detail}
}

// minKernel is the oldest kernel CRIU supports at all.
var minKernel = criu.Version{Major: 3, Minor: 11}

func checkKernel(_ context.Context, e *env) Result {
	rel, err := e.read("/proc/sys/kernel/osrelease")
	if err != nil {
		return Result{Status: Fail, Detail: "cannot read the kernel release: " + err.Error(), Hint: "mount /proc"}
	}
	rel = strings.TrimSpace(rel)
	v, err := criu.ParseRelease(rel)
	if err != nil {
		return Result{Status: Warn, Detail: fmt.Sprintf("unrecognised release %q", rel), Hint: "version-dependent checks are skipped"}
	}
	e.kernel, e.kernelOK = v, true
	if v.Compare(minKernel) < 0 {
		return Result{Status: Fail, Detail: rel + " is older than " + minKernel.String(), Hint: "CRIU needs Linux >= " + minKernel.String()}
	}
	return Result{Status: OK, Detail: rel}
}

func checkNamespaces(_ context.Context, e *env) Result {
	var missing []string
	names := []string{"mnt", "pid", "ipc", "uts", "net"}
	for _, ns := range names {
		if _, err := os.Lstat(e.path("/proc/self/ns/" + ns)); err != nil {
			missing = append(missing, ns)
		}
	}
	if len(missing) > 0 {
		return Result{Status: Fail, Detail: "missing " + strings.Join(missing, ", ") + " namespace",
			Hint: "use a kernel built with CONFIG_NAMESPACES and the " + strings.Join(missing, "/") + " namespaces"}
	}
	return Result{Status: OK, Detail: strings.Join(names, ", ")}
}

// Kernel options: required ones fail the check when off, wanted ones warn.
var (
	requiredConfig = []string{
		"CHECKPOINT_RESTORE", "NAMESPACES", "PID_NS", "IPC_NS", "UTS_NS", "NET_NS", "FHANDLE",
		"EVENTFD", "EPOLL", "INOTIFY_USER", "UNIX_DIAG", "INET_DIAG",
	}
	wantedConfig = map[string]string{
		"INET_UDP_DIAG":  "UDP sockets cannot be dumped",
		"PACKET_DIAG":    "packet sockets cannot be dumped",
		"NETLINK_DIAG":   "netlink sockets cannot be dumped",
		"MEM_SOFT_DIRTY": "no pre-dump/incremental dumps",
		"USERFAULTFD":    "no lazy restore",
	}
)

func (e *env) readConfig() (map[string]string, string, error) {
	var candidates []string
	candidates = append(candidates, "/proc/config.gz")
	if rel, err := e.read("/proc/sys/kernel/osrelease"); err == nil {
		candidates = append(candidates, "/boot/config-"+strings.TrimSpace(rel))
	}
	var lastErr error = os.ErrNotExist
	for _, c := range candidates {
		f, err := os.Open(e.path(c))
		if err != nil {
			lastErr = err
			continue
		}
		defer f.Close()
		var r io.Reader = f
		if strings.HasSuffix(c, ".gz") {
			gz, err := gzip.NewReader(f)
			if err != nil {
				return nil, c, fmt.Errorf("read %s: %w", c, err)
			}
			r = gz
		}
		cfg := map[string]string{}
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.HasPrefix(k, "CONFIG_") {
				cfg[strings.TrimPrefix(k, "CONFIG_")] = v
			}
		}
		if err := sc.Err(); err != nil {
			return nil, c, fmt.Errorf("read %s: %w", c, err)
		}
		return cfg, c, nil
	}
	return nil, "", lastErr
}

func checkKernelConfig(_ context.Context, e *env) Result {
	cfg, file, err := e.readConfig()
	if err != nil {
		return Result{Status: Warn, Detail: "no readable kernel config (/proc/config.gz, /boot/config-*): " + err.Error(),
			Hint: "not fatal: \"criu check\" below probes the kernel itself"}
	}
	e.config = cfg
	var off []string
	for _, k := range requiredConfig {
		if v := cfg[k]; v != "y" && v != "m" {
			off = append(off, "CONFIG_"+k)
		}
	}
	if len(off) > 0 {
		return Result{Status: Fail, Detail: fmt.Sprintf("%s: %s not set", file, strings.Join(off, ", ")),
			Hint: "use a kernel built with these options (CRIU's requirements)"}
	}
	var weak []string
	keys := make([]string, 0, len(wantedConfig))
	for k := range wantedConfig {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if v := cfg[k]; v != "y" && v != "m" {
			weak = append(weak, fmt.Sprintf("CONFIG_%s (%s)", k, wantedConfig[k]))
		}
	}
	if len(weak) > 0 {
		return Result{Status: Warn, Detail: fmt.Sprintf("%s: required options set; off: %s", file, strings.Join(weak, ", ")),
			Hint: "not fatal: only the features named are lost"}
	}
	return Result{Status: OK, Detail: fmt.Sprintf("%s: CHECKPOINT_RESTORE, NAMESPACES and the socket diag options set", file)}
}

// mount is one line of /proc/self/mountinfo.
type mount struct {
	point, fstype, superOpts string
}

func (e *env) readMounts() ([]mount, error) {
	if e.mounts != nil {
		return e.mounts, nil
	}
	s, err := e.read("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var ms []mount
	for _, line := range strings.Split(s, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		ms = append(ms, mount{point: unescapeMount(f[4]), fstype: g[0], superOpts: g[2]})
	}
	e.mounts = ms
	return ms, nil
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	if u, err := strconv.Unquote(`"` + strings.ReplaceAll(s, `"`, `\"`) + `"`); err == nil {
		return u
	}
	return s
}

// cgroupMode is "v2", "hybrid", "v1" or "" (none mounted).
func cgroupMode(ms []mount) string {
	v1, unified := false, false
	for _, m := range ms {
		switch {
		case m.fstype == "cgroup2" && m.point == "/sys/fs/cgroup":
			return "v2"
		case m.fstype == "cgroup2" && m.point == "/sys/fs/cgroup/unified":
			unified = true
		case m.fstype == "cgroup":
			v1 = true
		}
	}
	switch {
	case v1 && unified:
		return "hybrid"
	case v1:
		return "v1"
	}
	return ""
}

func checkCgroups(_ context.Context, e *env) Result {
	ms, err := e.readMounts()
	if err != nil {
		return Result{Status: Fail, Detail: "cannot read /proc/self/mountinfo: " + err.Error(), Hint: "mount /proc"}
	}
	switch cgroupMode(ms) {
	case "v2":
		return Result{Status: OK, Detail: "v2 (unified) at /sys/fs/cgroup"}
	case "hybrid":
		return Result{Status: OK, Detail: "hybrid: v1 controllers, v2 at /sys/fs/cgroup/unified (runc uses v1)"}
	case "v1":
		return Result{Status: OK, Detail: "v1 (deprecated upstream, works)"}
	}
	return Result{Status: Fail, Detail: "no cgroup file system mounted",
		Hint: "mount cgroup2 on /sys/fs/cgroup (Docker/Kubernetes do this for privileged containers)"}
}

func checkFreezer(_ context.Context, e *env) Result {
	ms, err := e.readMounts()
	if err != nil {
		return Result{Status: Fail, Detail: "cannot read /proc/self/mountinfo: " + err.Error(), Hint: "mount /proc"}
	}
	mode := cgroupMode(ms)
	if mode == "v1" || mode == "hybrid" {
		for _, m := range ms {
			if m.fstype == "cgroup" && hasOpt(m.superOpts, "freezer") {
				return Result{Status: OK, Detail: "v1 freezer at " + m.point + " (CRIU polls it in 100 ms steps)"}
			}
		}
		return Result{Status: Fail, Detail: "cgroup v1 without the freezer controller",
			Hint: "mount the freezer controller (mount -t cgroup -o freezer cgroup /sys/fs/cgroup/freezer)"}
	}
	if mode == "v2" {
		own := "/"
		if s, err := e.read("/proc/self/cgroup"); err == nil {
			for _, line := range strings.Split(s, "\n") {
				if p, ok := strings.CutPrefix(line, "0::"); ok {
					own = p
				}
			}
		}
		for _, dir := range []string{filepath.Join("/sys/fs/cgroup", own), "/sys/fs/cgroup"} {
			if _, err := os.Stat(e.path(filepath.Join(dir, "cgroup.freeze"))); err == nil {
				return Result{Status: OK, Detail: "v2 cgroup.freeze (" + dir + ")"}
			}
		}
		if e.kernelOK && e.kernel.AtLeast(5, 2) {
			return Result{Status: OK, Detail: "v2 freezer (kernel >= 5.2; cgroup.freeze exists in non-root cgroups)"}
		}
		return Result{Status: Fail, Detail: "cgroup v2 without cgroup.freeze",
			Hint: "use a kernel >= 5.2 (cgroup v2 freezer)"}
	}
	return Result{Status: Fail, Detail: "no cgroups, no freezer", Hint: "see the cgroups check"}
}

func hasOpt(opts, name string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == name {
			return true
		}
	}
	return false
}

func checkCRIU(_ context.Context, e *env) Result {
	b, bErr := e.findBundle()
	if bErr == nil && b.CheckLinks() == nil {
		// The bundle's tar, gzip and iptables serve CRIU even when cr.criu.path picks another CRIU.
		e.toolBundle = b
	}
	if e.criuPath != "" {
		p := e.criuPath
		if !strings.ContainsRune(p, '/') {
			found, err := e.lookPath(p)
			if err != nil {
				return Result{Status: Fail, Detail: fmt.Sprintf("cr.criu.path %q: %v", p, err), Hint: "fix cr.criu.path or unset it to use the bundled CRIU"}
			}
			p = found
		}
		if st, err := os.Stat(p); err != nil || st.Mode().Perm()&0o111 == 0 {
			return Result{Status: Fail, Detail: fmt.Sprintf("cr.criu.path %q is not an executable file", p), Hint: "fix cr.criu.path or unset it to use the bundled CRIU"}
		}
		e.criuArgv, e.criuSource = []string{p}, "cr.criu.path"
		return Result{Status: OK, Detail: p + " (cr.criu.path)"}
	}
	if bErr == nil {
		if err := b.CheckLinks(); err != nil {
			return Result{Status: Fail, Detail: "bundle at " + b.Dir + ": " + err.Error(),
				Hint: "keep /crwrap laid out as built: bin/crwrap next to criu/ (bin/criu links to ../../bin/crwrap)"}
		}
		argv, err := b.Argv("criu")
		if err != nil {
			return Result{Status: Fail, Detail: err.Error(), Hint: "rebuild the bundle (make build)"}
		}
		e.bundle, e.criuArgv, e.criuSource = b, argv, "bundled"
		return Result{Status: OK, Detail: fmt.Sprintf("bundled CRIU %s at %s", b.Version, b.Dir)}
	}
	if p, err := e.lookPath("criu"); err == nil {
		e.criuArgv, e.criuSource = []string{p}, "PATH"
		return Result{Status: OK, Detail: p + " (PATH; no bundle: " + bErr.Error() + ")"}
	}
	return Result{Status: Fail, Detail: "no CRIU bundle (" + bErr.Error() + ") and no criu on PATH",
		Hint: "run the crwrap built by make build (build/crwrap/bin/crwrap, bundle in build/crwrap/criu) or set cr.criu.path to a CRIU >= 4.2"}
}

func (e *env) criuEnv() []string {
	envv := os.Environ()
	if e.bundle != nil {
		return e.bundle.Env("criu", envv)
	}
	return envv
}

func (e *env) runCRIU(ctx context.Context, args ...string) ([]byte, error) {
	argv := append(append([]string{}, e.criuArgv...), args...)
	return e.run(ctx, argv, e.criuEnv())
}

func checkCRIUVersion(ctx context.Context, e *env) Result {
	if e.criuArgv == nil {
		return Result{Status: Fail, Detail: "no CRIU to ask", Hint: "see the criu check above"}
	}
	out, err := e.runCRIU(ctx, "--version")
	if err != nil {
		return Result{Status: Fail, Detail: fmt.Sprintf("criu --version: %v: %s", err, tail(out, 3)),
			Hint: "the CRIU binary does not start here; rebuild the bundle or fix cr.criu.path"}
	}
	v, err := criu.ParseVersion(string(out))
	if err != nil {
		return Result{Status: Fail, Detail: err.Error(), Hint: "use a real CRIU binary"}
	}
	e.criuVer, e.criuVerOK = v, true
	if !e.kernelOK {
		return Result{Status: Warn, Detail: v.String() + " (" + e.criuSource + "); kernel release unknown, cannot tell if it is new enough",
			Hint: "CRIU >= 4.2 is needed on kernels >= 6.16"}
	}
	req := criu.RequiredFor(e.kernel)
	if v.Compare(req.Min) < 0 {
		return Result{Status: Fail, Detail: fmt.Sprintf("%s (%s) is older than %s: %s (kernel %s)", v, e.criuSource, req.Min, req.Reason, e.kernel),
			Hint: fmt.Sprintf("use the bundled CRIU (make build) or a CRIU >= %s via cr.criu.path", req.Min)}
	}
	return Result{Status: OK, Detail: fmt.Sprintf("%s (%s) >= %s: %s (kernel %s)", v, e.criuSource, req.Min, req.Reason, e.kernel)}
}

func checkCRIUCheck(ctx context.Context, e *env) Result {
	if e.criuArgv == nil {
		return Result{Status: Fail, Detail: "not run: no CRIU", Hint: "see the criu check above"}
	}
	out, err := e.runCRIU(ctx, "check")
	text := string(out)
	if err != nil || !strings.Contains(text, "Looks good") {
		detail := "failed"
		if err != nil {
			detail = err.Error()
		}
		return Result{Status: Fail, Detail: detail + ": " + tail(out, 4),
			Hint: "CRIU's own probe of this kernel failed; see its words (privileges, kernel options, seccomp)"}
	}
	var warns []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "Warn") {
			if _, msg, ok := strings.Cut(l, "): "); ok {
				l = msg
			}
			warns = append(warns, strings.TrimSpace(l))
		}
	}
	detail := "Looks good"
	if len(warns) > 0 {
		detail += " (" + strings.Join(warns, "; ") + ")"
	}
	return Result{Status: OK, Detail: detail}
}

// checkLazy: restores are lazy by default (cr.restore.lazy); they need userfaultfd with
// non-cooperative events. Without it crwrap restores eagerly, so this only warns.
func checkLazy(ctx context.Context, e *env) Result {
	if e.criuArgv == nil {
		return Result{Status: Warn, Detail: "not run: no CRIU"}
	}
	out, err := e.runCRIU(ctx, "check", "--feature", "uffd-noncoop")
	if err != nil || !strings.Contains(string(out), "is supported") {
		return Result{Status: Warn, Detail: "userfaultfd (uffd-noncoop) unavailable: " + tail(out, 2),
			Hint: "restores load all memory before the app resumes (slower for large heaps); allow userfaultfd (seccomp) or set cr.restore.lazy=false to say so"}
	}
	return Result{Status: OK, Detail: "userfaultfd available: memory is restored on demand (cr.restore.lazy)"}
}

// locate finds a program CRIU executes: in the bundle when there is one, else on PATH.
func (e *env) locate(tool string) (string, bool) {
	if b := e.toolBundle; b != nil {
		if p, err := b.ToolPath(tool); err == nil {
			rel, _ := filepath.Rel(b.Root(), p)
			return "bundled " + rel, true
		}
	}
	p, err := e.lookPath(tool)
	return p, err == nil
}

func checkTools(_ context.Context, e *env) Result {
	var found, missing []string
	for _, t := range []string{"tar", "gzip"} {
		if p, ok := e.locate(t); ok {
			found = append(found, t+" ("+p+")")
		} else {
			missing = append(missing, t)
		}
	}
	ipt, iptOK := e.locate("iptables-restore")
	nft, nftOK := e.locate("nft")
	var lock string
	switch {
	case iptOK:
		lock = "network lock: iptables-restore (" + ipt + ")"
		if e.config != nil && e.toolBundle != nil && os.Getenv(criu.XtablesEnv) != "legacy" {
			if v := e.config["NF_TABLES"]; v != "y" && v != "m" {
				lock += "; kernel lacks CONFIG_NF_TABLES: set CRWRAP_XTABLES=legacy"
			}
		}
	case nftOK:
		lock = "network lock: no iptables-restore, nft (" + nft + ") needs --network-lock nftables"
	default:
		lock = "network lock: neither iptables-restore nor nft"
	}
	detail := strings.Join(append(found, lock), ", ")
	if len(missing) > 0 {
		return Result{Status: Fail, Detail: "missing " + strings.Join(missing, ", ") + "; " + detail,
			Hint: "CRIU runs tar --gzip to save and restore tmpfs mounts (/dev, /dev/shm): use the bundle or install tar and gzip"}
	}
	if !iptOK {
		return Result{Status: Warn, Detail: detail,
			Hint: "only needed when CRIU dumps a network namespace (crwrap's app shares the pod's, so it does not)"}
	}
	return Result{Status: OK, Detail: detail}
}

func checkKdat(_ context.Context, e *env) Result {
	ms, err := e.readMounts()
	if err != nil {
		return Result{Status: Warn, Detail: "cannot read mounts: " + err.Error()}
	}
	fstype := ""
	for _, m := range ms {
		if m.point == "/run" {
			fstype = m.fstype // the last mount on /run wins
		}
	}
	if fstype == "tmpfs" {
		return Result{Status: OK, Detail: "/run is tmpfs: CRIU keeps its kernel probe cache in /run/criu.kdat"}
	}
	what := "/run is not a mount"
	if fstype != "" {
		what = "/run is " + fstype
	}
	// crwrap's checkpoint and restore give CRIU a private tmpfs /run and keep the cache under
	// the checkpoint root, so this only concerns other users of this CRIU.
	return Result{Status: OK, Detail: what + ": crwrap gives CRIU a private tmpfs on /run and keeps its kernel probe cache in <cr.checkpoint.root>/.crwrap/ (CRIU run by hand here re-probes the kernel at every start, ~30 ms)"}
}

func checkSeccomp(_ context.Context, e *env) Result {
	v, ok := e.statusField("Seccomp")
	if !ok {
		return Result{Status: OK, Detail: "not reported by the kernel"}
	}
	switch v {
	case "0":
		return Result{Status: OK, Detail: "off"}
	case "1":
		return Result{Status: Fail, Detail: "strict mode", Hint: "run crwrap without seccomp"}
	}
	n, _ := e.statusField("Seccomp_filters")
	detail := "a filter is on"
	if n != "" {
		detail += " (" + n + " filters)"
	}
	return Result{Status: Warn, Detail: detail + ": CRIU may be blocked (ptrace, process_vm_readv, kcmp, open_by_handle_at …)",
		Hint: "run the pod unconfined (securityContext.seccompProfile.type: Unconfined, or privileged: true)"}
}

func checkLSM(_ context.Context, e *env) Result {
	for _, p := range []string{"/proc/self/attr/apparmor/current", "/proc/self/attr/current"} {
		s, err := e.read(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			// EINVAL: no LSM that uses this file is enabled.
			continue
		}
		label := strings.TrimSpace(strings.TrimRight(s, "\x00\n"))
		switch {
		case label == "" || label == "unconfined":
			return Result{Status: OK, Detail: "AppArmor: unconfined"}
		case strings.HasSuffix(label, ")"): // AppArmor: "profile (enforce)"
			return Result{Status: Warn, Detail: "AppArmor profile " + label + ": CRIU may be denied ptrace, mounts or /proc access",
				Hint: "run the pod unconfined (securityContext.appArmorProfile.type: Unconfined, or privileged: true)"}
		case strings.Contains(label, ":"): // SELinux context
			if strings.Contains(label, "unconfined") || strings.Contains(label, "spc_t") {
				return Result{Status: OK, Detail: "SELinux: " + label}
			}
			return Result{Status: Warn, Detail: "SELinux context " + label + ": CRIU may be denied",
				Hint: "run privileged (spc_t) or with a policy that allows checkpoint/restore"}
		default:
			return Result{Status: Warn, Detail: "security label " + label, Hint: "make sure it allows ptrace and mounts"}
		}
	}
	return Result{Status: OK, Detail: "no AppArmor or SELinux confinement"}
}
