// Command bench measures crwrap's cold start, checkpoint and restore (issue 3, items 9-10).
//
//	make bench                      # = CRWRAP_BUILD=build/crwrap go run ./test/bench
//	go run ./test/bench -quick      # smoke run, about a minute
//
// For every heap size M (-sizes, MiB) and repetition (-reps) it runs test/testapp
// (`serve ADDR -warmup W -heap M`: sleeps W, fills M MiB with random bytes, then answers /ready)
// three ways: cold under `crwrap run`, checkpointed by `crwrap checkpoint` (cr.checkpoint.exit),
// and restored by `crwrap restore`. Time-to-ready is measured from the outside (from just before
// starting crwrap until /ready answers, polled every -poll) and read from crwrap's own log
// (time_to_ready_ms, which starts when crwrap's supervisor began, after its own start-up).
// CRIU's own restore time comes from CRIU's stats-restore and restore.log, read while crwrap
// serves through /proc/PID/root (crwrap's work directory is a tmpfs in its own mount
// namespace). Then, for -conc-size, N restores of one checkpoint run at once, each crwrap in its
// own network namespace, polled from inside it. Medians over the repetitions are printed.
//
// It needs root, the static crwrap and its CRIU bundle (make build), and `ip`.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Config of one benchmark run.
type Config struct {
	Sizes    []int         // MiB of heap
	Warmup   time.Duration // the app's warm-up
	Reps     int
	Conc     []int // concurrent restores
	ConcSize int   // MiB of heap of the concurrency runs
	Poll     time.Duration
	Root     string   // checkpoint root; a temporary directory when empty
	Keep     bool     // keep the checkpoints
	Peers    []string // peer runtimes measured side by side (PeerNames)
	Burst    int      // restores started within one second (0: none)
	Log      io.Writer
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad number %q", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty list %q", s)
	}
	return out, nil
}

func main() {
	sizes := flag.String("sizes", "16,256,1024", "heap sizes in MiB, comma-separated")
	warmup := flag.Duration("warmup", 5*time.Second, "the app's warm-up before it is ready")
	reps := flag.Int("reps", 3, "repetitions (medians are reported)")
	conc := flag.String("conc", "1,4,8", "numbers of concurrent restores")
	concSize := flag.Int("conc-size", 256, "heap MiB of the concurrency runs")
	poll := flag.Duration("poll", 5*time.Millisecond, "interval of the outside /ready poll")
	root := flag.String("root", "", "checkpoint root (default: a temporary directory, removed)")
	keep := flag.Bool("keep", false, "keep the checkpoints")
	quick := flag.Bool("quick", false, "smoke run: -sizes 16 -warmup 1s -reps 1 -conc 1,2")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	burst := flag.Int("burst", 16, "restores of -conc-size started within one second (0 for none)")
	peerList := flag.String("peers", "runc,podman", "peer runtimes run side by side on the same app and CRIU (\"\" for none)")
	flag.Parse()
	if *quick {
		*sizes, *warmup, *reps, *conc, *concSize, *burst = "16", time.Second, 1, "1,2", 16, 3
	}
	cfg := Config{Burst: *burst, Warmup: *warmup, Reps: *reps, ConcSize: *concSize, Poll: *poll, Root: *root, Keep: *keep, Log: os.Stderr}
	var err error
	if cfg.Sizes, err = parseInts(*sizes); err == nil {
		cfg.Conc, err = parseInts(*conc)
	}
	if err == nil {
		cfg.Peers, err = parsePeers(*peerList)
	}
	if err != nil || cfg.Reps < 1 {
		fmt.Fprintln(os.Stderr, "bench:", err, "(reps must be >= 1)")
		os.Exit(2)
	}
	res, err := Run(cfg)
	if res != nil {
		Report(os.Stdout, res)
		if *jsonOut != "" {
			if werr := writeJSON(*jsonOut, res); werr != nil {
				fmt.Fprintln(os.Stderr, "bench:", werr)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// median of xs (NaN-free); -1 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return -1
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func maxOf(xs []float64) float64 {
	m := -1.0
	for _, x := range xs {
		if x > m {
			m = x
		}
	}
	return m
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
