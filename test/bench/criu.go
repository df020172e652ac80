package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/checkpoint-restore/go-criu/v7/stats"
)

// criuRestore is what CRIU says about one restore: its statistics and its log's timeline.
type criuRestore struct {
	RestoreMS float64 // stats-restore restore_time
	ForkingMS float64 // stats-restore forking_time
	Pages     uint64  // stats-restore pages_restored
	// From restore.log (times since CRIU started, ms); -1 when not found.
	LogTotalMS   float64 // "Restore finished successfully"
	LogForkMS    float64 // first "Forking task"
	LogMountNSMS float64 // "mnt: Restoring mount namespace" .. "post-setup-namespaces"
}

// workDir is where crwrap keeps per-container scratch space (CRWRAP_WORK_DIR, default
// /run/crwrap); crwrap mounts a tmpfs there in its own mount namespace.
func workDir() string {
	if d := os.Getenv("CRWRAP_WORK_DIR"); d != "" {
		return filepath.Clean(d)
	}
	return "/run/crwrap"
}

// readCRIURestore reads CRIU's stats-restore and restore.log of container id from the private
// work directory of the running crwrap pid, through /proc/PID/root (its mount namespace).
func readCRIURestore(pid int, id string) (criuRestore, error) {
	dir := filepath.Join(fmt.Sprintf("/proc/%d/root", pid), workDir(), id, "criu-restore")
	r := criuRestore{LogTotalMS: -1, LogForkMS: -1, LogMountNSMS: -1}
	f, err := os.Open(dir)
	if err != nil {
		return r, fmt.Errorf("%w: %v", errNoStats, err)
	}
	defer f.Close()
	st, err := stats.CriuGetRestoreStats(f)
	if err != nil {
		return r, fmt.Errorf("%w: %v", errNoStats, err)
	}
	r.RestoreMS = float64(st.GetRestoreTime()) / 1000
	r.ForkingMS = float64(st.GetForkingTime()) / 1000
	r.Pages = st.GetPagesRestored()
	if lf, err := os.Open(filepath.Join(dir, "restore.log")); err == nil {
		r.LogTotalMS, r.LogForkMS, r.LogMountNSMS = parseRestoreLog(lf)
		lf.Close()
	}
	return r, nil
}

var logStamp = regexp.MustCompile(`^\((\d+)\.(\d+)\)`)

// parseRestoreLog returns CRIU's time to "Restore finished", to the first fork, and spent
// restoring the mount namespace (ms since CRIU started; -1 when not found).
func parseRestoreLog(f *os.File) (total, fork, mntns float64) {
	total, fork, mntns = -1, -1, -1
	mntStart := -1.0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		m := logStamp.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		t, _ := strconv.ParseFloat(m[1]+"."+m[2], 64)
		t *= 1000
		switch {
		case fork < 0 && strings.Contains(line, "Forking task"):
			fork = t
		case mntStart < 0 && strings.Contains(line, "mnt: Restoring mount namespace"):
			mntStart = t
		case mntStart >= 0 && mntns < 0 && strings.Contains(line, "Running post-setup-namespaces scripts"):
			mntns = t - mntStart
		case strings.Contains(line, "Restore finished successfully"):
			total = t
		}
	}
	return total, fork, mntns
}

// dumpStats reads stats-dump of a published checkpoint.
func dumpStats(dir string) (*stats.DumpStatsEntry, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return stats.CriuGetDumpStats(f)
}

// duBytes is the disk usage of dir (following the published symlink), in bytes.
func duBytes(dir string) (int64, error) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return 0, err
	}
	var n int64
	err = filepath.Walk(real, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		} else {
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// restoreStats reads stats-restore of a CRIU work directory.
func restoreStats(dir string) (*stats.RestoreStatsEntry, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return stats.CriuGetRestoreStats(f)
}
