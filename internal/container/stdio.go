package container

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// stdio holds the pipes between the app and crwrap. The app gets pipe ends, never crwrap's
// own stdout/stderr: CRIU cannot dump a process whose stdio is a file of another mount
// namespace, and pipes are handed back to a restored process as inherited descriptors.
type stdio struct {
	stdinR, stdoutW, stderrW *os.File
	readers                  []*os.File
	wg                       sync.WaitGroup
}

func newStdio(stdout, stderr io.Writer) (*stdio, error) {
	s := &stdio{}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create stdin pipe: %w", err)
	}
	inW.Close() // the app reads EOF, as from /dev/null
	s.stdinR = inR
	for _, t := range []struct {
		dst io.Writer
		w   **os.File
	}{{stdout, &s.stdoutW}, {stderr, &s.stderrW}} {
		r, w, err := os.Pipe()
		if err != nil {
			s.close()
			return nil, fmt.Errorf("create output pipe: %w", err)
		}
		*t.w = w
		s.readers = append(s.readers, r)
		s.wg.Add(1)
		go func(dst io.Writer, r *os.File) {
			defer s.wg.Done()
			copyLines(dst, r)
		}(t.dst, r)
	}
	return s, nil
}

// copyLines copies r to w a whole line per Write where lines fit the buffer, so that lines of
// the app's stdout and stderr written to one log never interleave mid-line.
func copyLines(w io.Writer, r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if _, werr := w.Write(line); werr != nil {
				_, _ = io.Copy(io.Discard, br) // keep the app from blocking on a full pipe
				return
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// closeChildEnds closes crwrap's copies of the ends the app (or CRIU) now holds.
func (s *stdio) closeChildEnds() {
	for _, f := range []*os.File{s.stdinR, s.stdoutW, s.stderrW} {
		if f != nil {
			f.Close()
		}
	}
}

// drain waits until the app and every process that inherited its output closed it.
func (s *stdio) drain() { s.wg.Wait() }

func (s *stdio) close() {
	s.closeChildEnds()
	for _, r := range s.readers {
		r.Close()
	}
}
