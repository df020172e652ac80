// Command testapp is the purpose-built checkpoint target of crwrap's root tests.
//
//	testapp serve ADDR [flags]   HTTP server: /ready (after -warmup), /value (a random value drawn
//	                             at warm-up), /heap (is the heap what warm-up wrote: "intact=true"),
//	                             /file?path=P (reads P now), /echo?msg=M (prints M
//	                             to stdout and stderr), /counter (increments in memory),
//	                             /touch?pages=N (reads N random heap pages)
//	testapp signals              prints "ready", then "got <SIGNAME>" for each signal; exits
//	                             with 10+signo after SIGTERM
//	testapp orphan               starts a grandchild that outlives its parent, then waits
//	testapp lines N              prints N numbered lines to stdout and N to stderr, exits 0
//
// Flags of serve: -warmup DURATION, -heap MiB, -write PATH=CONTENT (written after warm-up,
// repeatable), -connect HOST:PORT (keep an outbound TCP connection open), -fifo PATH (make a
// FIFO at PATH and keep it open; /fifo?msg=M writes M into it and answers what it reads back),
// -unix PATH (listen on a unix socket bound to PATH; /unix?msg=M sends M to it and answers
// the echo), -remove PATH (removed after warm-up, repeatable).
//
//go:debug multipathtcp=0
package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type writes []string

func (w *writes) String() string     { return strings.Join(*w, ",") }
func (w *writes) Set(v string) error { *w = append(*w, v); return nil }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testapp serve|signals|orphan|lines ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		serve(os.Args[2:])
	case "signals":
		signals()
	case "orphan":
		orphan()
	case "lines":
		var n int
		fmt.Sscan(os.Args[2], &n)
		for i := 0; i < n; i++ {
			fmt.Fprintf(os.Stdout, "out %d %s\n", i, strings.Repeat("x", i%100))
			fmt.Fprintf(os.Stderr, "err %d\n", i)
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(2)
	}
}

var (
	heap   [][]byte
	digest string // of heap, at the end of the warm-up
)

func heapDigest() string {
	h := sha256.New()
	for _, b := range heap {
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	warmup := fs.Duration("warmup", 0, "warm-up time")
	heapMB := fs.Int("heap", 0, "MiB of random heap to fill during warm-up")
	connect := fs.String("connect", "", "keep an outbound TCP connection to HOST:PORT")
	fifo := fs.String("fifo", "", "make a FIFO at PATH and keep it open")
	unixPath := fs.String("unix", "", "listen on a unix socket bound to PATH")
	var w writes
	fs.Var(&w, "write", "PATH=CONTENT written after warm-up")
	var rm writes
	fs.Var(&rm, "remove", "PATH removed after warm-up")
	addr := args[0]
	fs.Parse(args[1:])

	var ready atomic.Bool
	var counter atomic.Int64
	value := ""
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(rw http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			http.Error(rw, "warming up", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(rw, "ready")
	})
	mux.HandleFunc("/value", func(rw http.ResponseWriter, r *http.Request) { fmt.Fprint(rw, value) })
	mux.HandleFunc("/heap", func(rw http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			http.Error(rw, "warming up", http.StatusServiceUnavailable)
			return
		}
		d := heapDigest()
		fmt.Fprintf(rw, "%d MiB intact=%t", len(heap), d == digest)
	})
	mux.HandleFunc("/touch", touchHandler(&ready))
	mux.HandleFunc("/counter", func(rw http.ResponseWriter, r *http.Request) { fmt.Fprint(rw, counter.Add(1)) })
	mux.HandleFunc("/file", func(rw http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(r.URL.Query().Get("path"))
		if err != nil {
			http.Error(rw, err.Error(), http.StatusNotFound)
			return
		}
		rw.Write(b)
	})
	mux.HandleFunc("/echo", func(rw http.ResponseWriter, r *http.Request) {
		msg := r.URL.Query().Get("msg")
		fmt.Fprintln(os.Stdout, "stdout:", msg)
		fmt.Fprintln(os.Stderr, "stderr:", msg)
		fmt.Fprint(rw, msg)
	})
	if *fifo != "" {
		serveFIFO(mux, *fifo)
	}
	if *unixPath != "" {
		serveUnix(mux, *unixPath)
	}
	go http.Serve(ln, mux)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	time.Sleep(*warmup)
	for i := 0; i < *heapMB; i++ {
		b := make([]byte, 1<<20)
		rand.Read(b)
		heap = append(heap, b)
	}
	digest = heapDigest()
	v := make([]byte, 16)
	rand.Read(v)
	value = hex.EncodeToString(v)
	for _, kv := range w {
		p, c, _ := strings.Cut(kv, "=")
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "write:", err)
			os.Exit(1)
		}
	}
	for _, p := range rm {
		if err := os.Remove(p); err != nil {
			fmt.Fprintln(os.Stderr, "remove:", err)
			os.Exit(1)
		}
	}
	var conn net.Conn
	if *connect != "" {
		if conn, err = net.Dial("tcp", *connect); err != nil {
			fmt.Fprintln(os.Stderr, "connect:", err)
			os.Exit(1)
		}
	}
	ready.Store(true)
	fmt.Println("testapp ready on", addr)
	sig := <-sigs
	fmt.Println("testapp got", sig)
	_ = conn
	os.Exit(0)
}

func signals() {
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	fmt.Println("ready")
	for s := range ch {
		fmt.Println("got", strings.ToUpper(unixName(s.(syscall.Signal))))
		if s == syscall.SIGTERM {
			os.Exit(10 + int(s.(syscall.Signal)))
		}
	}
}

func unixName(s syscall.Signal) string {
	names := map[syscall.Signal]string{syscall.SIGTERM: "sigterm", syscall.SIGINT: "sigint", syscall.SIGHUP: "sighup",
		syscall.SIGQUIT: "sigquit", syscall.SIGUSR1: "sigusr1", syscall.SIGUSR2: "sigusr2"}
	return names[s]
}

// orphan: a child starts a grandchild (sleep) and exits at once; the grandchild is
// re-parented to this process (PID 1 of the container) — which keeps running.
func orphan() {
	cmd := exec.Command("/bin/sh", "-c", "sleep 300 & echo grandchild $!")
	cmd.Stdout = os.Stdout
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("orphan started")
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
}

// serveFIFO makes a FIFO at p, holds it open read-write (a restore must reopen it by path)
// and answers /fifo?msg=M with what reading the FIFO gives after writing M to it.
func serveFIFO(mux *http.ServeMux, p string) {
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "mkfifo:", err)
		os.Exit(1)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open fifo:", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	mux.HandleFunc("/fifo", func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		msg := r.URL.Query().Get("msg")
		if _, err := f.Write([]byte(msg)); err != nil {
			http.Error(rw, err.Error(), http.StatusInternalServerError)
			return
		}
		b := make([]byte, len(msg))
		if _, err := io.ReadFull(f, b); err != nil {
			http.Error(rw, err.Error(), http.StatusInternalServerError)
			return
		}
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
			http.Error(rw, fmt.Sprintf("%s is no FIFO: %v %v", p, fi, err), http.StatusInternalServerError)
			return
		}
		rw.Write(b)
	})
}

// serveUnix listens on a unix socket bound to p, echoing what a client sends, and answers
// /unix?msg=M with the echo of M through a new connection to p.
func serveUnix(mux *http.ServeMux, p string) {
	l, err := net.Listen("unix", p)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen unix:", err)
		os.Exit(1)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	mux.HandleFunc("/unix", func(rw http.ResponseWriter, r *http.Request) {
		msg := r.URL.Query().Get("msg")
		c, err := net.DialTimeout("unix", p, 5*time.Second)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusInternalServerError)
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, len(msg))
		if _, err = c.Write([]byte(msg)); err == nil {
			_, err = io.ReadFull(c, b)
		}
		if err != nil {
			http.Error(rw, err.Error(), http.StatusInternalServerError)
			return
		}
		rw.Write(b)
	})
}
