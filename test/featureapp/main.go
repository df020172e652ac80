// Command featureapp is a checkpoint target that holds one kernel object each (an inotify
// watch, a file lock, a stopped child, ...), for the root tests of what a checkpoint keeps.
//
//	featureapp serve ADDR -feature NAME [-path P]
//
// It sets the object up, then serves HTTP: /ready, /value (a random value drawn at start),
// /counter (increments in memory), /check (200 "ok ..." when the object still works, 500 with
// what is wrong otherwise) and /identity (st_dev and st_ino of -path as seen at start, now
// through the path, and now through the open descriptor). Features: see the features table.
//
//go:debug multipathtcp=0
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// feature is one kernel object: set up once at start, checked on each /check.
type feature struct {
	setup func(path string) error
	check func() (string, error)
}

var features = map[string]feature{
	"none":          {func(string) error { return nil }, func() (string, error) { return "ok", nil }},
	"inotify":       {setupInotify, checkInotify},
	"fanotify":      {setupFanotify, checkFanotify},
	"flock":         {setupFlock, checkFlock},
	"ofd-lock":      {setupOFDLock, checkOFDLock},
	"stopped-child": {setupStoppedChild, checkStoppedChild},
	"fifo":          {setupFIFO, checkFIFO},
	"unix-socket":   {setupUnixSocket, checkUnixSocket},
	"posix-timer":   {setupPosixTimer, checkPosixTimer},
	"sysv-shm":      {setupSysvShm, checkSysvShm},
	"posix-shm":     {setupPosixShm, checkPosixShm},
	"eventfd":       {setupEventfd, checkEventfd},
	"signalfd":      {setupSignalfd, checkSignalfd},
	"timerfd":       {setupTimerfd, checkTimerfd},
	"memfd":         {setupMemfd, checkMemfd},
	"bigfile":       {setupBigFile, func() (string, error) { return "ok", nil }},
	"ghost-file":    {setupGhostFile, checkGhostFile},
	"open-file":     {setupOpenFile, func() (string, error) { return "ok", nil }},
}

func main() {
	if len(os.Args) < 3 || os.Args[1] != "serve" {
		fmt.Fprintln(os.Stderr, "usage: featureapp serve ADDR -feature NAME [-path P]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	name := fs.String("feature", "none", "kernel object to hold: "+strings.Join(featureNames(), ", "))
	path := fs.String("path", "", "file the object is on (in the app's root filesystem)")
	addr := os.Args[2]
	fs.Parse(os.Args[3:])
	f, ok := features[*name]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown feature %q (want %s)\n", *name, strings.Join(featureNames(), ", "))
		os.Exit(2)
	}
	if err := f.setup(*path); err != nil {
		fmt.Fprintf(os.Stderr, "set up %s: %v\n", *name, err)
		os.Exit(1)
	}
	if *path != "" {
		identity.Start, _ = statID(*path) // zero when the feature removed the file
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	v := make([]byte, 16)
	rand.Read(v)
	value := hex.EncodeToString(v)
	var counter atomic.Int64
	var mu sync.Mutex // one check at a time: checks read and write the object
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(rw http.ResponseWriter, r *http.Request) { fmt.Fprintln(rw, "ready") })
	mux.HandleFunc("/value", func(rw http.ResponseWriter, r *http.Request) { fmt.Fprint(rw, value) })
	mux.HandleFunc("/counter", func(rw http.ResponseWriter, r *http.Request) { fmt.Fprint(rw, counter.Add(1)) })
	mux.HandleFunc("/check", func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		msg, err := f.check()
		if err != nil {
			http.Error(rw, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(rw, msg)
	})
	mux.HandleFunc("/identity", func(rw http.ResponseWriter, r *http.Request) {
		id := identity
		id.Path, _ = statID(*path)
		if identity.fd != nil {
			id.FD, _ = fstatID(identity.fd)
		}
		json.NewEncoder(rw).Encode(id)
	})
	go http.Serve(ln, mux)
	fmt.Println("featureapp ready on", addr, "with", *name)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	os.Exit(0)
}

func featureNames() []string {
	var n []string
	for k := range features {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// fileID is a file's identity as stat reports it.
type fileID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// identity is what /identity reports; fd is the descriptor a feature keeps open on -path.
var identity struct {
	Start fileID `json:"start"`
	Path  fileID `json:"path"`
	FD    fileID `json:"fd"`
	fd    *os.File
}

func statID(p string) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return fileID{}, fmt.Errorf("stat %s: %w", p, err)
	}
	return fileID{uint64(st.Dev), st.Ino}, nil
}

func fstatID(f *os.File) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fileID{}, err
	}
	return fileID{uint64(st.Dev), st.Ino}, nil
}

// touch makes sure p exists (the test may have created it in the lower layer already).
func touch(p string) error {
	if p == "" {
		return errors.New("-path is required")
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// appendTo writes a line to p (a modification a watch reports).
func appendTo(p string) error {
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, time.Now().UnixNano())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// waitReadable waits up to 3 s for fd to have something to read.
func waitReadable(fd int) error {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(pfd, 3000)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		if n == 0 {
			return errors.New("no event within 3 s")
		}
		return nil
	}
}

var (
	watchFD   int
	watchPath string
)

func setupInotify(p string) error {
	if err := touch(p); err != nil {
		return err
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("inotify_init1: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, p, unix.IN_MODIFY); err != nil {
		return fmt.Errorf("inotify_add_watch %s: %w", p, err)
	}
	watchFD, watchPath = fd, p
	return nil
}

// checkInotify modifies the watched file and expects the watch to report it.
func checkInotify() (string, error) {
	if err := appendTo(watchPath); err != nil {
		return "", err
	}
	if err := waitReadable(watchFD); err != nil {
		return "", fmt.Errorf("inotify watch on %s: %w", watchPath, err)
	}
	buf := make([]byte, 4096)
	n, err := unix.Read(watchFD, buf)
	if err != nil || n < unix.SizeofInotifyEvent {
		return "", fmt.Errorf("read inotify event: %d bytes: %v", n, err)
	}
	ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[0]))
	if ev.Mask&unix.IN_MODIFY == 0 {
		return "", fmt.Errorf("inotify event mask %#x, want IN_MODIFY", ev.Mask)
	}
	return "ok inotify IN_MODIFY", nil
}

func setupFanotify(p string) error {
	if err := touch(p); err != nil {
		return err
	}
	// FAN_REPORT_FID: the unprivileged form (the app has no CAP_SYS_ADMIN).
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_REPORT_FID|unix.FAN_NONBLOCK|unix.FAN_CLOEXEC, unix.O_RDONLY)
	if err != nil {
		return fmt.Errorf("fanotify_init: %w", err)
	}
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, unix.FAN_MODIFY, unix.AT_FDCWD, p); err != nil {
		return fmt.Errorf("fanotify_mark %s: %w", p, err)
	}
	watchFD, watchPath = fd, p
	return nil
}

func checkFanotify() (string, error) {
	if err := appendTo(watchPath); err != nil {
		return "", err
	}
	if err := waitReadable(watchFD); err != nil {
		return "", fmt.Errorf("fanotify mark on %s: %w", watchPath, err)
	}
	buf := make([]byte, 4096)
	n, err := unix.Read(watchFD, buf)
	if err != nil || n < int(unsafe.Sizeof(unix.FanotifyEventMetadata{})) {
		return "", fmt.Errorf("read fanotify event: %d bytes: %v", n, err)
	}
	ev := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&buf[0]))
	if ev.Mask&unix.FAN_MODIFY == 0 {
		return "", fmt.Errorf("fanotify event mask %#x, want FAN_MODIFY", ev.Mask)
	}
	return "ok fanotify FAN_MODIFY", nil
}

func setupFlock(p string) error {
	if err := touch(p); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fmt.Errorf("flock %s: %w", p, err)
	}
	identity.fd, watchPath = f, p
	return nil
}

// checkFlock expects a second open of the file not to get the lock, and the file to be the
// one that was locked (what a pid-file lock checks).
func checkFlock() (string, error) {
	f, err := os.OpenFile(watchPath, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
		return "", fmt.Errorf("a second flock of %s: %v, want EWOULDBLOCK (the lock is gone)", watchPath, err)
	}
	return "ok flock held", nil
}

func setupOFDLock(p string) error {
	if err := touch(p); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		return fmt.Errorf("F_OFD_SETLK %s: %w", p, err)
	}
	identity.fd, watchPath = f, p
	return nil
}

func checkOFDLock() (string, error) {
	f, err := os.OpenFile(watchPath, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return "", fmt.Errorf("F_OFD_GETLK: %w", err)
	}
	if lk.Type != unix.F_WRLCK {
		return "", fmt.Errorf("no write lock on %s any more (F_OFD_GETLK type %d)", watchPath, lk.Type)
	}
	return "ok OFD lock held", nil
}

var child *os.Process

// setupStoppedChild starts a child and stops it with SIGSTOP (a job stopped in a shell).
func setupStoppedChild(string) error {
	cmd := exec.Command("/bin/sleep", "100000")
	if err := cmd.Start(); err != nil {
		return err
	}
	child = cmd.Process
	if err := child.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	// Wait until the kernel reports it stopped.
	for i := 0; i < 500; i++ {
		if state(child.Pid) == "T" {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("child %d did not stop", child.Pid)
}

func state(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

func checkStoppedChild() (string, error) {
	if st := state(child.Pid); st != "T" {
		return "", fmt.Errorf("child %d is in state %q, want T (stopped)", child.Pid, st)
	}
	return "ok child stopped", nil
}

var fifo *os.File

func setupFIFO(p string) error {
	if p == "" {
		return errors.New("-path is required")
	}
	if err := unix.Mkfifo(p, 0o600); err != nil {
		return fmt.Errorf("mkfifo %s: %w", p, err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	fifo = f
	_, err = f.WriteString("in the pipe\n")
	return err
}

// checkFIFO reads what is in the FIFO and puts it back.
func checkFIFO() (string, error) {
	buf := make([]byte, 64)
	if err := waitReadable(int(fifo.Fd())); err != nil {
		return "", fmt.Errorf("fifo: %w", err)
	}
	n, err := unix.Read(int(fifo.Fd()), buf)
	if err != nil {
		return "", err
	}
	if string(buf[:n]) != "in the pipe\n" {
		return "", fmt.Errorf("fifo holds %q", buf[:n])
	}
	if _, err := fifo.Write(buf[:n]); err != nil {
		return "", err
	}
	return "ok fifo data kept", nil
}

var unixLn *net.UnixListener

func setupUnixSocket(p string) error {
	if p == "" {
		return errors.New("-path is required")
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		return err
	}
	ln.SetUnlinkOnClose(false)
	unixLn = ln
	return nil
}

// checkUnixSocket connects to the bound path and is accepted.
func checkUnixSocket() (string, error) {
	c, err := net.DialTimeout("unix", unixLn.Addr().String(), 3*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	unixLn.SetDeadline(time.Now().Add(3 * time.Second))
	s, err := unixLn.Accept()
	if err != nil {
		return "", err
	}
	s.Close()
	return "ok unix socket accepts", nil
}

var timerID uintptr

func setupPosixTimer(string) error {
	// struct sigevent with SIGEV_NONE: the timer runs, nothing is delivered.
	var sev [64]byte
	*(*int32)(unsafe.Pointer(&sev[12])) = 1 // sigev_notify = SIGEV_NONE
	var id int32
	if _, _, e := unix.Syscall(unix.SYS_TIMER_CREATE, uintptr(unix.CLOCK_MONOTONIC), uintptr(unsafe.Pointer(&sev)), uintptr(unsafe.Pointer(&id))); e != 0 {
		return fmt.Errorf("timer_create: %w", e)
	}
	timerID = uintptr(id)
	its := unix.ItimerSpec{Interval: unix.Timespec{Sec: 3600}, Value: unix.Timespec{Sec: 3600}}
	if _, _, e := unix.Syscall6(unix.SYS_TIMER_SETTIME, timerID, 0, uintptr(unsafe.Pointer(&its)), 0, 0, 0); e != 0 {
		return fmt.Errorf("timer_settime: %w", e)
	}
	return nil
}

func checkPosixTimer() (string, error) {
	var its unix.ItimerSpec
	if _, _, e := unix.Syscall(unix.SYS_TIMER_GETTIME, timerID, uintptr(unsafe.Pointer(&its)), 0); e != 0 {
		return "", fmt.Errorf("timer_gettime: %w", e)
	}
	if its.Interval.Sec != 3600 || (its.Value.Sec == 0 && its.Value.Nsec == 0) {
		return "", fmt.Errorf("timer is interval %v value %v, want an armed 1 h timer", its.Interval, its.Value)
	}
	return "ok posix timer armed", nil
}

var (
	sysvSeg []byte
	pattern = []byte("shared memory pattern")
)

func setupSysvShm(string) error {
	id, err := unix.SysvShmGet(unix.IPC_PRIVATE, 4096, unix.IPC_CREAT|0o600)
	if err != nil {
		return fmt.Errorf("shmget: %w", err)
	}
	b, err := unix.SysvShmAttach(id, 0, 0)
	if err != nil {
		return fmt.Errorf("shmat: %w", err)
	}
	copy(b, pattern)
	sysvSeg = b
	return nil
}

func checkSysvShm() (string, error) {
	if string(sysvSeg[:len(pattern)]) != string(pattern) {
		return "", fmt.Errorf("SysV segment holds %q", sysvSeg[:len(pattern)])
	}
	return "ok sysv shm kept", nil
}

var posixSeg []byte

func setupPosixShm(string) error {
	p := filepath.Join("/dev/shm", fmt.Sprintf("featureapp-%d", os.Getpid()))
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(4096); err != nil {
		return err
	}
	b, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	copy(b, pattern)
	posixSeg = b
	return nil
}

func checkPosixShm() (string, error) {
	if string(posixSeg[:len(pattern)]) != string(pattern) {
		return "", fmt.Errorf("POSIX shm mapping holds %q", posixSeg[:len(pattern)])
	}
	return "ok posix shm kept", nil
}

var objFD int

func setupEventfd(string) error {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return err
	}
	objFD = fd
	return writeCount(42)
}

func writeCount(n uint64) error {
	_, err := unix.Write(objFD, (*[8]byte)(unsafe.Pointer(&n))[:])
	return err
}

func checkEventfd() (string, error) {
	var b [8]byte
	if _, err := unix.Read(objFD, b[:]); err != nil {
		return "", fmt.Errorf("read eventfd: %w", err)
	}
	n := *(*uint64)(unsafe.Pointer(&b[0]))
	if err := writeCount(n); err != nil {
		return "", err
	}
	if n != 42 {
		return "", fmt.Errorf("eventfd counter %d, want 42", n)
	}
	return "ok eventfd counter kept", nil
}

func setupSignalfd(string) error {
	var set unix.Sigset_t
	set.Val[0] = 1 << (uint(unix.SIGUSR2) - 1)
	fd, _, e := unix.Syscall6(unix.SYS_SIGNALFD4, ^uintptr(0), uintptr(unsafe.Pointer(&set)), 8, unix.SFD_CLOEXEC|unix.SFD_NONBLOCK, 0, 0)
	if e != 0 {
		return fmt.Errorf("signalfd: %w", e)
	}
	objFD = int(fd)
	return nil
}

// checkSignalfd reads the descriptor's mask back from /proc (a Go program cannot block a
// signal in all its threads, so no signal is read from it).
func checkSignalfd() (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", objFD))
	if err != nil {
		return "", err
	}
	want := fmt.Sprintf("%016x", uint64(1)<<(uint(unix.SIGUSR2)-1))
	if !strings.Contains(string(b), "sigmask:\t"+want) {
		return "", fmt.Errorf("fd %d is not a signalfd for SIGUSR2: %s", objFD, b)
	}
	return "ok signalfd mask kept", nil
}

func setupTimerfd(string) error {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC|unix.TFD_NONBLOCK)
	if err != nil {
		return err
	}
	objFD = fd
	its := unix.ItimerSpec{Interval: unix.Timespec{Nsec: 50e6}, Value: unix.Timespec{Nsec: 50e6}}
	return unix.TimerfdSettime(fd, 0, &its, nil)
}

func checkTimerfd() (string, error) {
	if err := waitReadable(objFD); err != nil {
		return "", fmt.Errorf("timerfd: %w", err)
	}
	var b [8]byte
	if _, err := unix.Read(objFD, b[:]); err != nil {
		return "", fmt.Errorf("read timerfd: %w", err)
	}
	return "ok timerfd ticks", nil
}

func setupMemfd(string) error {
	fd, err := unix.MemfdCreate("featureapp", unix.MFD_CLOEXEC)
	if err != nil {
		return err
	}
	objFD = fd
	_, err = unix.Pwrite(fd, pattern, 0)
	return err
}

func checkMemfd() (string, error) {
	b := make([]byte, len(pattern))
	if _, err := unix.Pread(objFD, b, 0); err != nil {
		return "", err
	}
	if string(b) != string(pattern) {
		return "", fmt.Errorf("memfd holds %q", b)
	}
	return "ok memfd content kept", nil
}

// setupBigFile writes 48 MiB of random data to p: a root filesystem change too large for a
// small checkpoint directory.
func setupBigFile(p string) error {
	if p == "" {
		return errors.New("-path is required")
	}
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	b := make([]byte, 1<<20) // the app's memory stays small
	for i := 0; i < 48; i++ {
		rand.Read(b)
		if _, err := f.Write(b); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

var (
	ghost     *os.File
	ghostData []byte
)

// setupGhostFile writes 2 MiB to p, keeps it open and deletes it: CRIU must save the
// content in the images (a "ghost file", larger than CRIU's default limit of 1 MiB).
func setupGhostFile(p string) error {
	if p == "" {
		return errors.New("-path is required")
	}
	ghostData = make([]byte, 2<<20)
	rand.Read(ghostData)
	if err := os.WriteFile(p, ghostData, 0o644); err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	ghost = f
	return os.Remove(p)
}

func checkGhostFile() (string, error) {
	b := make([]byte, len(ghostData)+1)
	n, err := ghost.ReadAt(b, 0)
	if n != len(ghostData) || !bytes.Equal(b[:n], ghostData) {
		return "", fmt.Errorf("the deleted file holds %d bytes (want %d, the same): %v", n, len(ghostData), err)
	}
	return "ok deleted file kept", nil
}

// setupOpenFile keeps p open read-only (a file of the image the app only reads).
func setupOpenFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	identity.fd = f
	return nil
}
