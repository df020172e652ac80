package supervisor

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// criuLogTail returns the last lines of a CRIU log that say what went wrong, prefixed with
// "; criu log <path>:" — or "" when there is no log.
func criuLogTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var all, errs []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		all = append(all, line)
		if len(all) > 200 {
			all = all[1:]
		}
		if strings.Contains(line, "RLIMIT_NOFILE") {
			continue // reported without CAP_SYS_RESOURCE; CRIU goes on regardless
		}
		if strings.Contains(line, "Error") || strings.Contains(line, "rror (") || strings.Contains(line, "Can't") {
			errs = append(errs, strings.TrimSpace(line))
			if len(errs) > 8 {
				errs = errs[1:]
			}
		}
	}
	tail := errs
	if len(tail) == 0 {
		if len(all) > 8 {
			all = all[len(all)-8:]
		}
		tail = all
	}
	return "; criu log " + path + ": " + strings.Join(tail, " | ")
}

func isTerminating(sig os.Signal) bool {
	return sig == syscall.SIGTERM || sig == syscall.SIGINT || sig == syscall.SIGQUIT
}

// KeepLogsEnv names a directory where crwrap copies CRIU's logs (dump.log, restore.log,
// prefixed with the time) before it removes its work directory; for debugging.
const KeepLogsEnv = "CRWRAP_CRIU_LOG_DIR"

func keepCRIULog(work, name string) {
	dir := os.Getenv(KeepLogsEnv)
	if dir == "" {
		return
	}
	b, err := os.ReadFile(filepath.Join(work, name))
	if err != nil {
		return
	}
	_ = os.MkdirAll(dir, 0o700)
	_ = os.WriteFile(filepath.Join(dir, time.Now().UTC().Format("20060102T150405.000000")+"-"+name), b, 0o600)
}
