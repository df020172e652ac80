package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crwrap/crwrap/test/harness"
)

// Samples are the values of named metrics, one per repetition.
type Samples map[string][]float64

func (s Samples) add(k string, v float64) { s[k] = append(s[k], v) }

// Medians of every metric.
func (s Samples) Medians() map[string]float64 {
	m := map[string]float64{}
	for k, v := range s {
		m[k] = median(v)
	}
	return m
}

// SizeResult is everything measured for one heap size.
type SizeResult struct {
	MiB     int
	Samples Samples
	Med     map[string]float64
}

// ConcResult is N concurrent restores.
type ConcResult struct {
	N       int
	MiB     int
	Samples Samples
	Med     map[string]float64
}

// Machine describes where the numbers were taken.
type Machine struct {
	CPU, Kernel, Memory, THP, Crwrap, CRIU, Go string
	Cores                                      int
	LoadBefore, LoadAfter                      string
}

// Results of one run.
type Results struct {
	Machine  Machine
	Warmup   time.Duration
	Reps     int
	Poll     time.Duration
	Command  string
	Started  time.Time
	Duration time.Duration
	Sizes    []SizeResult
	Conc     []ConcResult
	Failures []string          // failed attempts that were retried
	Peers    map[string]string // peer runtime -> its version, or why it did not run
	Burst    *BurstResult
}

func writeJSON(path string, r *Results) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

type bench struct {
	cfg      Config
	app      string
	port     int
	root     string
	props    map[int]string // per heap size
	failures []string
	reg      *benchRegistry // started by the first fromRegistry
}

func (b *bench) logf(format string, args ...any) {
	if b.cfg.Log != nil {
		fmt.Fprintf(b.cfg.Log, "%s bench: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	}
}

func (b *bench) addr() string { return "127.0.0.1:" + strconv.Itoa(b.port) }

func (b *bench) appArgs(mib int) []string {
	return []string{b.app, "serve", b.addr(), "-warmup", b.cfg.Warmup.String(), "-heap", strconv.Itoa(mib)}
}

func (b *bench) name(mib int) string { return fmt.Sprintf("m%d", mib) }

func (b *bench) propsFor(mib int) (string, error) {
	if p, ok := b.props[mib]; ok {
		return p, nil
	}
	p := filepath.Join(b.root, fmt.Sprintf("m%d.properties", mib))
	lines := []string{
		"cr.checkpoint.name=" + b.name(mib),
		"cr.checkpoint.directory=bench",
		"cr.checkpoint.root=" + filepath.Join(b.root, "cr"),
		"cr.container.readiness=http://" + b.addr() + "/ready",
		"cr.checkpoint.exit=true",
		"cr.checkpoint.refresh=always", // every repetition dumps
		"cr.restore.fallback=fail",     // a cold start must never pass for a restore
	}
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return "", err
	}
	b.props[mib] = p
	return p, nil
}

func (b *bench) crwrapArgs(mode string, mib int) ([]string, error) {
	props, err := b.propsFor(mib)
	if err != nil {
		return nil, err
	}
	return append([]string{mode, "--config", props, "--"}, b.appArgs(mib)...), nil
}

// timeout of one app start: warm-up, heap filling (~0.2 s per 256 MiB here) and slack.
func (b *bench) timeout(mib int) time.Duration {
	return b.cfg.Warmup + time.Duration(mib)*10*time.Millisecond + 60*time.Second
}

// Run runs the whole benchmark. Partial results come back with an error.
func Run(cfg Config) (*Results, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the benchmark needs root")
	}
	if _, err := os.Stat(harness.Crwrap()); err != nil {
		return nil, fmt.Errorf("no crwrap build (make build): %v", err)
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 5 * time.Millisecond
	}
	res := &Results{Warmup: cfg.Warmup, Reps: cfg.Reps, Poll: cfg.Poll, Started: time.Now(), Machine: describe()}
	b := &bench{cfg: cfg, props: map[int]string{}}
	defer func() { b.reg.stop() }()
	defer func() {
		res.Duration = time.Since(res.Started)
		res.Machine.LoadAfter = loadavg()
		res.Failures = b.failures
	}()

	var err error
	if cfg.Root == "" {
		if b.root, err = os.MkdirTemp("/var/tmp", "crwrap-bench-"); err != nil {
			return nil, err
		}
	} else {
		b.root = cfg.Root
		if err := os.MkdirAll(b.root, 0o700); err != nil {
			return nil, err
		}
	}
	if !cfg.Keep {
		defer os.RemoveAll(b.root)
	}
	if err := snapshotBuild(filepath.Join(b.root, "build")); err != nil {
		return nil, err
	}
	res.Machine.Crwrap = crwrapVersion()
	if b.app, err = buildTestApp(b.root); err != nil {
		return nil, err
	}
	if b.port, err = freePort(); err != nil {
		return nil, err
	}
	ps, err := b.setupPeers(cfg.Peers)
	if err != nil {
		return nil, err
	}
	defer ps.close()
	res.Peers = ps.info
	res.Command = "crwrap run|checkpoint|restore --config <props> -- " + strings.Join(b.appArgs(0)[1:], " ")
	res.Command = strings.Replace(res.Command, "-heap 0", "-heap M", 1)

	sizes := map[int]*SizeResult{}
	for _, m := range cfg.Sizes {
		sizes[m] = &SizeResult{MiB: m, Samples: Samples{}}
		res.Sizes = append(res.Sizes, *sizes[m])
	}
	finish := func() {
		res.Sizes = res.Sizes[:0]
		for _, m := range cfg.Sizes {
			s := sizes[m]
			s.Med = s.Samples.Medians()
			res.Sizes = append(res.Sizes, *s)
		}
	}
	for rep := 1; rep <= cfg.Reps; rep++ {
		for _, m := range cfg.Sizes {
			s := sizes[m].Samples
			b.logf("rep %d/%d, %d MiB: cold start", rep, cfg.Reps, m)
			if err := b.cold(m, s); err != nil {
				finish()
				return res, fmt.Errorf("cold start, %d MiB: %w", m, err)
			}
			b.logf("rep %d/%d, %d MiB: checkpoint", rep, cfg.Reps, m)
			if err := b.checkpoint(m, s); err != nil {
				finish()
				return res, fmt.Errorf("checkpoint, %d MiB: %w", m, err)
			}
			b.logf("rep %d/%d, %d MiB: restore", rep, cfg.Reps, m)
			if err := b.restore(m, s); err != nil {
				finish()
				return res, fmt.Errorf("restore, %d MiB: %w", m, err)
			}
			b.logf("rep %d/%d, %d MiB: eager restore (cr.restore.lazy=false)", rep, cfg.Reps, m)
			if err := b.eagerRestore(m, s); err != nil {
				finish()
				return res, fmt.Errorf("eager restore, %d MiB: %w", m, err)
			}
			b.logf("rep %d/%d, %d MiB: fresh node from a loopback registry (push, pull + restore, cached, crane pull)", rep, cfg.Reps, m)
			if err := b.fromRegistry(m, s); err != nil {
				finish()
				return res, fmt.Errorf("registry, %d MiB: %w", m, err)
			}
			b.logf("rep %d/%d, %d MiB: restore after %v idle", rep, cfg.Reps, m, idlePause)
			if err := b.idleRestore(m, s); err != nil {
				finish()
				return res, fmt.Errorf("idle restore, %d MiB: %w", m, err)
			}
			if err := ps.measure(m, s); err != nil {
				finish()
				return res, fmt.Errorf("%d MiB: %w", m, err)
			}
		}
	}
	finish()

	// Concurrent restores of one checkpoint, each crwrap in its own network namespace.
	if _, ok := b.props[cfg.ConcSize]; !ok {
		b.logf("checkpoint of %d MiB for the concurrency runs", cfg.ConcSize)
		if err := b.checkpoint(cfg.ConcSize, Samples{}); err != nil {
			return res, fmt.Errorf("checkpoint, %d MiB: %w", cfg.ConcSize, err)
		}
	}
	conc := append([]int(nil), cfg.Conc...)
	if conc[0] != 1 {
		conc = append([]int{1}, conc...) // the baseline
	}
	maxN := 0
	for _, n := range conc {
		maxN = max(maxN, n)
	}
	var nss []string
	defer func() {
		for _, ns := range nss {
			_ = netnsDel(ns)
		}
	}()
	for i := 0; i < max(maxN, cfg.Burst); i++ {
		ns := fmt.Sprintf("crwrap-bench-%d-%d", os.Getpid(), i)
		if err := netnsAdd(ns); err != nil {
			return res, err
		}
		nss = append(nss, ns)
	}
	cr := map[int]*ConcResult{}
	for _, n := range conc {
		cr[n] = &ConcResult{N: n, MiB: cfg.ConcSize, Samples: Samples{}}
	}
	finishConc := func() {
		res.Conc = nil
		for _, n := range conc {
			c := cr[n]
			c.Med = c.Samples.Medians()
			res.Conc = append(res.Conc, *c)
		}
	}
	for rep := 1; rep <= cfg.Reps; rep++ {
		for _, n := range conc {
			b.logf("rep %d/%d: %d concurrent restores of %d MiB", rep, cfg.Reps, n, cfg.ConcSize)
			if err := b.concurrent(cfg.ConcSize, nss[:n], cr[n].Samples); err != nil {
				finishConc()
				return res, fmt.Errorf("%d concurrent restores: %w", n, err)
			}
			if n == maxN && n > admitSlots() {
				b.logf("rep %d/%d: %d restores of %d MiB, %d at a time", rep, cfg.Reps, n, cfg.ConcSize, admitSlots())
				if err := b.concurrentAdmitted(cfg.ConcSize, nss[:n], admitSlots(), cr[n].Samples); err != nil {
					finishConc()
					return res, fmt.Errorf("%d admitted restores: %w", n, err)
				}
			}
		}
	}
	finishConc()
	if cfg.Burst > 0 {
		bu := &BurstResult{N: cfg.Burst, MiB: cfg.ConcSize, Within: time.Second, Samples: Samples{}}
		for rep := 1; rep <= cfg.Reps; rep++ {
			b.logf("rep %d/%d: %d restores of %d MiB started within %v", rep, cfg.Reps, bu.N, bu.MiB, bu.Within)
			if err := b.burst(cfg.ConcSize, nss[:bu.N], bu.Within, bu.Samples); err != nil {
				return res, fmt.Errorf("burst of %d restores: %w", bu.N, err)
			}
		}
		bu.Med = bu.Samples.Medians()
		res.Burst = bu
	}
	return res, nil
}

// startReady starts crwrap with args, polls /ready from outside and waits for crwrap's log
// line of phase; it returns the process (the caller stops it) and the outside time-to-ready.
func (b *bench) startReady(mib int, phase string, args []string) (*proc, event, float64, error) {
	p, err := startCrwrap("", args...)
	if err != nil {
		return nil, event{}, 0, err
	}
	at, err := pollReady(p, "", b.addr(), b.cfg.Poll, b.timeout(mib))
	if err != nil {
		p.stop(30 * time.Second)
		return nil, event{}, 0, err
	}
	e, err := p.waitPhase(phase, 30*time.Second)
	if err != nil {
		p.stop(30 * time.Second)
		return nil, event{}, 0, err
	}
	return p, e, ms(at.Sub(p.started)), nil
}

// cold: crwrap run, time until /ready answers.
func (b *bench) cold(mib int, s Samples) error {
	args, err := b.crwrapArgs("run", mib)
	if err != nil {
		return err
	}
	p, e, outside, err := b.startReady(mib, "ready", args)
	if err != nil {
		return err
	}
	defer p.stop(30 * time.Second)
	logged, _ := e.num("time_to_ready_ms")
	s.add("cold_ms", outside)
	s.add("cold_logged_ms", logged)
	s.add("cold_start_phase_ms", p.phaseMS("start"))
	if err := b.afterReady("warm", s); err != nil {
		return err
	}
	if code := p.stop(30 * time.Second); code != 0 {
		return fmt.Errorf("crwrap run exited %d after SIGTERM\n%s", code, p.tail())
	}
	return nil
}

// checkpoint publishes a checkpoint, trying up to 3 times; failures are counted and logged
// (ckpt_failures), not hidden.
func (b *bench) checkpoint(mib int, s Samples) error {
	var err error
	for try := 1; try <= 3; try++ {
		if err = b.checkpointOnce(mib, s); err == nil {
			return nil
		}
		b.failures = append(b.failures, fmt.Sprintf("checkpoint of %d MiB, try %d: %s", mib, try, firstLines(err.Error(), 1, 600)))
		b.logf("checkpoint failed (try %d): %v", try, err)
	}
	return err
}

// lastPlain is crwrap's last stderr line that is not a JSON log line (its fatal error).
func lastPlain(stderr string) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" && !strings.HasPrefix(l, "{") {
			return l
		}
	}
	return ""
}

func firstLines(s string, n, max int) string {
	l := strings.SplitN(s, "\n", n+1)
	if len(l) > n {
		l = l[:n]
	}
	out := strings.Join(l, " ")
	if len(out) > max {
		out = out[:max] + "..."
	}
	return out
}

// checkpointOnce: crwrap checkpoint with cr.checkpoint.exit=true; phases, size, CRIU's dump stats.
func (b *bench) checkpointOnce(mib int, s Samples) error {
	args, err := b.crwrapArgs("checkpoint", mib)
	if err != nil {
		return err
	}
	p, err := startCrwrap("", args...)
	if err != nil {
		return err
	}
	code, err := p.wait(b.timeout(mib) + time.Duration(mib)*20*time.Millisecond)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("crwrap checkpoint exited %d: %s\n%s", code, lastPlain(p.raw.String()), p.tail())
	}
	ready, ok := p.phase("ready")
	if !ok {
		return fmt.Errorf("no ready line\n%s", p.tail())
	}
	if _, ok := p.phase("summary"); !ok {
		return fmt.Errorf("no summary line (kept an old checkpoint?)\n%s", p.tail())
	}
	var sum float64
	for _, ph := range []string{"identify", "dump", "write", "publish"} {
		v := p.phaseMS(ph)
		s.add("ckpt_"+ph+"_ms", v)
		sum += max(v, 0)
	}
	s.add("ckpt_ms", sum)
	s.add("ckpt_exit_ms", ms(p.exited.Sub(ready.At)))
	s.add("ckpt_total_ms", p.summaryMS("total_ms"))
	s.add("ckpt_wall_ms", ms(p.exited.Sub(p.started)))
	dir := filepath.Join(b.root, "cr", "bench", b.name(mib))
	n, err := duBytes(dir)
	if err != nil {
		return err
	}
	s.add("size_mb", float64(n)/1e6)
	real, _ := filepath.EvalSymlinks(dir)
	if st, err := dumpStats(real); err == nil {
		s.add("criu_freezing_ms", float64(st.GetFreezingTime())/1000)
		s.add("criu_frozen_ms", float64(st.GetFrozenTime())/1000)
		s.add("criu_memdump_ms", float64(st.GetMemdumpTime())/1000)
		s.add("criu_memwrite_ms", float64(st.GetMemwriteTime())/1000)
		s.add("criu_pages_written", float64(st.GetPagesWritten()))
	} else {
		b.logf("stats-dump: %v", err)
	}
	return nil
}

// restore: crwrap restore; outside and logged time-to-ready, phases, CRIU's statistics.
func (b *bench) restore(mib int, s Samples) error {
	args, err := b.crwrapArgs("restore", mib)
	if err != nil {
		return err
	}
	p, _, outside, err := b.startReady(mib, "summary", args)
	if err != nil {
		return err
	}
	defer p.stop(30 * time.Second)
	if err := b.afterReady("lazy", s); err != nil {
		return err
	}
	ready, _ := p.phase("ready")
	logged, _ := ready.num("time_to_ready_ms")
	s.add("restore_ms", outside)
	s.add("restore_logged_ms", logged)
	s.add("restore_before_ms", outside-logged) // crwrap start-up, before its restore clock starts
	if v, ok := ready.num("attempts"); ok {
		s.add("r_attempts", v)
	}
	var phases float64
	for _, ph := range []string{"find", "verify", "render", "restore"} {
		v := p.phaseMS(ph)
		s.add("r_"+ph+"_ms", v)
		phases += max(v, 0)
	}
	s.add("r_readiness_ms", logged-phases)
	rst, _ := p.phase("restore")
	if v, ok := rst.num("criu_restore_ms"); ok {
		s.add("criu_restore_logged_ms", v)
	}
	c, err := readCRIURestore(p.cmd.Process.Pid, rst.str("container"))
	if err != nil {
		b.logf("%v", err)
		if v, ok := rst.num("criu_restore_ms"); ok {
			s.add("criu_restore_ms", v)
			s.add("overhead_ms", outside-v)
			s.add("r_restore_beyond_criu_ms", p.phaseMS("restore")-v)
		}
	} else {
		s.add("criu_restore_ms", c.RestoreMS)
		s.add("criu_forking_ms", c.ForkingMS)
		s.add("criu_log_total_ms", c.LogTotalMS)
		s.add("criu_log_fork_ms", c.LogForkMS)
		s.add("criu_log_mntns_ms", c.LogMountNSMS)
		s.add("r_beyond_criu_log_ms", p.phaseMS("restore")-c.LogTotalMS)
		s.add("overhead_ms", outside-c.RestoreMS)
		s.add("r_restore_beyond_criu_ms", p.phaseMS("restore")-c.RestoreMS)
	}
	b.lazyLoaded(p, p.started.Add(time.Duration(outside*float64(time.Millisecond))), s)
	if code := p.stop(30 * time.Second); code != 0 {
		return fmt.Errorf("crwrap restore exited %d after SIGTERM\n%s", code, p.tail())
	}
	return nil
}

// eagerRestore: crwrap restore with all memory loaded before the app resumes
// (cr.restore.lazy=false), side by side with the default lazy restore.
func (b *bench) eagerRestore(mib int, s Samples) error {
	args, err := b.crwrapArgs("restore", mib)
	if err != nil {
		return err
	}
	args = append([]string{args[0], "--set", "cr.restore.lazy=false"}, args[1:]...)
	p, _, outside, err := b.startReady(mib, "summary", args)
	if err != nil {
		return err
	}
	defer p.stop(30 * time.Second)
	s.add("eager_restore_ms", outside)
	if err := b.afterReady("eager", s); err != nil {
		return err
	}
	s.add("eager_restore_phase_ms", p.phaseMS("restore"))
	if rst, ok := p.phase("restore"); ok {
		if v, ok := rst.num("criu_restore_ms"); ok {
			s.add("eager_criu_restore_ms", v)
		}
		if c, err := readCRIURestore(p.cmd.Process.Pid, rst.str("container")); err == nil {
			s.add("eager_criu_log_total_ms", c.LogTotalMS)
			s.add("eager_beyond_criu_log_ms", p.phaseMS("restore")-c.LogTotalMS)
		}
	}
	return nil
}

// concurrent: len(nss) restores at once, each in its own network namespace.
func (b *bench) concurrent(mib int, nss []string, s Samples) error {
	args, err := b.crwrapArgs("restore", mib)
	if err != nil {
		return err
	}
	n := len(nss)
	procs := make([]*proc, n)
	defer func() {
		var wg sync.WaitGroup
		for _, p := range procs {
			if p != nil {
				wg.Add(1)
				go func(p *proc) { defer wg.Done(); p.stop(30 * time.Second) }(p)
			}
		}
		wg.Wait()
	}()
	first := time.Now()
	for i, ns := range nss {
		if procs[i], err = startCrwrap(ns, args...); err != nil {
			return err
		}
	}
	type out struct {
		at  time.Time
		err error
	}
	outs := make([]out, n)
	var wg sync.WaitGroup
	for i := range procs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			outs[i].at, outs[i].err = pollReady(procs[i], nss[i], b.addr(), b.cfg.Poll, b.timeout(mib))
		}(i)
	}
	wg.Wait()
	var outside, logged, phase, criu, attempts []float64
	last := first
	for i, p := range procs {
		if outs[i].err != nil {
			return outs[i].err
		}
		if _, err := p.waitPhase("summary", 30*time.Second); err != nil {
			return err
		}
		if outs[i].at.After(last) {
			last = outs[i].at
		}
		outside = append(outside, ms(outs[i].at.Sub(p.started)))
		e, _ := p.phase("ready")
		v, _ := e.num("time_to_ready_ms")
		logged = append(logged, v)
		if a, ok := e.num("attempts"); ok {
			attempts = append(attempts, a)
		}
		phase = append(phase, p.phaseMS("restore"))
		rst, _ := p.phase("restore")
		if c, err := readCRIURestore(p.cmd.Process.Pid, rst.str("container")); err == nil {
			criu = append(criu, c.RestoreMS)
		} else if v, ok := rst.num("criu_restore_ms"); ok {
			criu = append(criu, v)
		} else {
			b.logf("%v", err)
		}
	}
	s.add("slowest_ms", maxOf(outside))
	s.add("median_ms", median(outside))
	s.add("slowest_logged_ms", maxOf(logged))
	s.add("slowest_restore_phase_ms", maxOf(phase))
	s.add("slowest_criu_ms", maxOf(criu))
	s.add("all_ready_ms", ms(last.Sub(first)))
	s.add("max_attempts", maxOf(attempts))
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// describe the machine.
func describe() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), LoadBefore: loadavg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				f := strings.Fields(l)
				if len(f) >= 2 {
					kb, _ := strconv.ParseFloat(f[1], 64)
					m.Memory = fmt.Sprintf("%.1f GiB", kb/1024/1024)
				}
			}
		}
	}
	if b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled"); err == nil {
		m.THP = strings.TrimSpace(string(b))
	}
	m.Crwrap = crwrapVersion()
	if b, err := os.ReadFile(filepath.Join(harness.BuildDir(), "criu", "VERSION")); err == nil {
		m.CRIU = strings.TrimSpace(string(b))
	}
	return m
}

func crwrapVersion() string {
	out, err := exec.Command(crwrapBin, "version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
