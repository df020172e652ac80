package supervisor

import (
	"bufio"
	"os"
	"strings"
	"syscall"
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
