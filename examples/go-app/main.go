// Command go-app is the demo service of the KubeCon NA 2021 talk "Container Checkpoint/Restore
// at Scale for Fast Pod Startup Time": an HTTP server on :4000 whose warm-up is deliberately
// slow, so that a restore from a checkpoint is visibly faster than a cold start.
//
// At warm-up it sleeps WARMUP_SECONDS (default 5), fills HEAP_MB MiB (default 64) of heap with
// random data and draws a random value. Endpoints:
//
//	/        hello, with the process ID and uptime
//	/ready   200 once warm, 503 before
//	/value   the value drawn at warm-up (the same after every restore of one checkpoint)
//	/heap    a checksum of the heap filled at warm-up (proves memory survived a restore)
//
// Every request is logged to stdout; SIGTERM ends it with exit status 0 after a log line.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

func envInt(name string, def int) int {
	v, err := strconv.Atoi(os.Getenv(name))
	if err != nil || v < 0 {
		return def
	}
	return v
}

type app struct {
	started time.Time
	ready   atomic.Bool
	value   atomic.Uint64
	heap    [][]byte
	digest  string
}

func (a *app) warmUp(seconds, heapMB int) {
	log.Printf("warm-up: sleeping %ds, filling %d MiB", seconds, heapMB)
	time.Sleep(time.Duration(seconds) * time.Second)
	h := sha256.New()
	for i := 0; i < heapMB; i++ {
		b := make([]byte, 1<<20)
		if _, err := rand.Read(b); err != nil {
			log.Fatalf("fill heap: %v", err)
		}
		h.Write(b)
		a.heap = append(a.heap, b)
	}
	a.digest = hex.EncodeToString(h.Sum(nil))
	var v [8]byte
	if _, err := rand.Read(v[:]); err != nil {
		log.Fatalf("draw value: %v", err)
	}
	a.value.Store(binary.BigEndian.Uint64(v[:]))
	a.ready.Store(true)
	log.Printf("warm-up done after %s: value=%d", time.Since(a.started).Round(time.Millisecond), a.value.Load())
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "hello from go-app (pid %d, up %s)\n", os.Getpid(), time.Since(a.started).Round(time.Millisecond))
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/value", func(w http.ResponseWriter, r *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, a.value.Load())
	})
	mux.HandleFunc("/heap", func(w http.ResponseWriter, r *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return
		}
		h := sha256.New()
		for _, b := range a.heap {
			h.Write(b)
		}
		fmt.Fprintf(w, "%d MiB sha256=%s intact=%t\n", len(a.heap), hex.EncodeToString(h.Sum(nil)),
			hex.EncodeToString(h.Sum(nil)) == a.digest)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Printf("request %s %s from %s", r.Method, r.URL.Path, r.RemoteAddr)
		mux.ServeHTTP(w, r)
	})
}

func main() {
	log.SetOutput(os.Stdout)
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	a := &app{started: time.Now()}
	addr := os.Getenv("LISTEN_ADDRESS")
	if addr == "" {
		addr = ":4000"
	}
	srv := &http.Server{Addr: addr, Handler: a.routes(), ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go a.warmUp(envInt("WARMUP_SECONDS", 5), envInt("HEAP_MB", 64))
	go func() {
		<-ctx.Done()
		log.Printf("received SIGTERM, shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	// Plain TCP, not MPTCP: Go (>= 1.24) listens with MPTCP where the kernel has it, and CRIU
	// cannot dump MPTCP sockets ("inet: Unsupported proto 262"). GODEBUG=multipathtcp=0 does
	// the same for a Go app whose code you cannot change.
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	log.Printf("go-app listening on %s", addr)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("listen: %v", err)
	}
	log.Printf("bye")
}
