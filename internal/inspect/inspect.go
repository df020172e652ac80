package inspect

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/crwrap/crwrap/internal/checkpoint"
)

const checkpointImagesDir = checkpoint.ImagesDir

// Report describes a checkpoint directory. Its JSON form is what `crwrap inspect --json` prints.
type Report struct {
	// Dir is the directory as given; Resolved is where it leads when it is a symlink (the
	// published version).
	Dir      string `json:"dir"`
	Resolved string `json:"resolved,omitempty"`

	// Damaged is set when a file is missing, cut short or unreadable; Reasons says which and how.
	Damaged bool     `json:"damaged"`
	Reasons []string `json:"reasons,omitempty"`

	// From crwrap.json.
	FormatVersion int              `json:"formatVersion,omitempty"`
	Name          string           `json:"name,omitempty"`
	Created       time.Time        `json:"created,omitzero"`
	Command       []string         `json:"command,omitempty"`
	Mounts        []string         `json:"mounts,omitempty"`
	Host          checkpoint.Host  `json:"host,omitzero"`
	CrwrapVersion string           `json:"crwrapVersion,omitempty"`
	CRIUVersion   string           `json:"criuVersion,omitempty"`
	DurationsMS   map[string]int64 `json:"durationsMs,omitempty"`

	// Container is config.dump, the metadata checkpointctl and Podman read.
	Container *checkpoint.ContainerConfig `json:"container,omitempty"`

	Sizes Sizes `json:"sizes"`

	// Processes are the roots of the process tree (normally one, the container's init).
	Processes    []*Process `json:"processes,omitempty"`
	ProcessCount int        `json:"processCount"`
	// Memory sums the processes' memory.
	Memory Memory `json:"memory"`

	// Stats are CRIU's dump statistics (stats-dump), when present.
	Stats *DumpStats `json:"criuDumpStatistics,omitempty"`
}

// Sizes are the bytes of the checkpoint's files.
type Sizes struct {
	// Entries has one element per top-level file or directory, in name order.
	Entries []Size `json:"entries"`
	// TotalBytes is the sum of all regular files.
	TotalBytes int64 `json:"totalBytes"`
	// PagesBytes is the memory in checkpoint/pages-*.img.
	PagesBytes int64 `json:"pagesBytes"`
}

// Size is the size of one top-level entry; for a directory the sum of the files below it.
type Size struct {
	Name  string `json:"name"`
	Bytes int64  `json:"bytes"`
	Files int    `json:"files"`
}

// Process is one process of the checkpoint's process tree (pstree.img and core-<pid>.img).
type Process struct {
	PID      uint32     `json:"pid"`
	PPID     uint32     `json:"ppid"`
	PGID     uint32     `json:"pgid"`
	SID      uint32     `json:"sid"`
	Comm     string     `json:"comm"`
	State    string     `json:"state,omitempty"`
	Threads  int        `json:"threads"`
	Exe      string     `json:"exe,omitempty"`
	Memory   Memory     `json:"memory"`
	Children []*Process `json:"children,omitempty"`
}

// Memory is what mm-<pid>.img and pagemap-<pid>.img say about a process's memory.
type Memory struct {
	// VMAs is the number of mappings; MappedBytes their total size.
	VMAs        int    `json:"vmas"`
	MappedBytes uint64 `json:"mappedBytes"`
	// Pages were dumped into the pages images; PageBytes is their size.
	Pages     uint64 `json:"pages"`
	PageBytes uint64 `json:"pageBytes"`
}

// DumpStats are CRIU's dump statistics; times in microseconds.
type DumpStats struct {
	FreezingTimeUS     uint32 `json:"freezingTimeUs"`
	FrozenTimeUS       uint32 `json:"frozenTimeUs"`
	MemdumpTimeUS      uint32 `json:"memdumpTimeUs"`
	MemwriteTimeUS     uint32 `json:"memwriteTimeUs"`
	PagesScanned       uint64 `json:"pagesScanned"`
	PagesSkippedParent uint64 `json:"pagesSkippedParent"`
	PagesWritten       uint64 `json:"pagesWritten"`
	PagesLazy          uint64 `json:"pagesLazy"`
	ShpagesScanned     uint64 `json:"shpagesScanned,omitempty"`
	ShpagesWritten     uint64 `json:"shpagesWritten,omitempty"`
}

// Options tunes InspectWith.
type Options struct {
	// Digests checks every file's sha256 against crwrap.json (reads the whole checkpoint).
	Digests bool
	// PageSize of the machine that dumped the images; 0 means this machine's.
	PageSize int
}

// Inspect describes the checkpoint directory dir without reading its memory pages; see
// InspectWith.
func Inspect(dir string) (*Report, error) { return InspectWith(dir, Options{}) }

// InspectWith describes the checkpoint directory dir. It fails only when dir cannot be read at
// all; a checkpoint with missing, short or unreadable files is returned with Damaged set and one
// reason per problem, along with everything that could be read.
func InspectWith(dir string, opts Options) (*Report, error) {
	r := &Report{Dir: dir}
	held, err := checkpoint.Hold(dir)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", dir, err)
	}
	defer held.Close()
	root := held.Dir
	if fi, err := os.Stat(root); err != nil {
		return nil, fmt.Errorf("inspect %s: %w", dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("inspect %s: not a directory", dir)
	}
	if abs, _ := filepath.Abs(dir); abs != root {
		r.Resolved = root
	}
	pageSize := uint64(opts.PageSize)
	if pageSize == 0 {
		pageSize = uint64(os.Getpagesize())
	}

	if err := r.readSizes(root); err != nil {
		return nil, fmt.Errorf("inspect %s: %w", dir, err)
	}
	r.readManifest(held, opts.Digests)
	if c, err := held.ConfigDump(); err == nil {
		r.Container = c
	} else if !errors.Is(err, fs.ErrNotExist) {
		r.damage("%v", err)
	}

	if fi, err := os.Stat(held.ImagesDirPath()); err != nil || !fi.IsDir() {
		r.damage("no %s/ directory of CRIU images", checkpointImagesDir)
	} else {
		r.readImages(held.ImagesDirPath(), pageSize)
	}
	for _, p := range r.Processes {
		p.addMemory(&r.Memory)
	}

	statsFile := held.StatsDumpPath()
	if _, err := os.Stat(statsFile); err == nil {
		st, err := readStats(statsFile)
		if err != nil {
			rel, _ := filepath.Rel(root, statsFile)
			r.damage("%s: %v", rel, err)
		}
		r.Stats = st
	}
	r.Damaged = len(r.Reasons) > 0
	return r, nil
}

func (p *Process) addMemory(m *Memory) {
	m.VMAs += p.Memory.VMAs
	m.MappedBytes += p.Memory.MappedBytes
	m.Pages += p.Memory.Pages
	m.PageBytes += p.Memory.PageBytes
	for _, c := range p.Children {
		c.addMemory(m)
	}
}

func (r *Report) damage(format string, a ...any) {
	r.Reasons = append(r.Reasons, fmt.Sprintf(format, a...))
}

// readSizes fills r.Sizes.
func (r *Report) readSizes(root string) error {
	top := map[string]*Size{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		first, _, _ := strings.Cut(rel, "/")
		s := top[first]
		if s == nil {
			s = &Size{Name: first}
			if d.IsDir() {
				s.Name += "/"
			}
			top[first] = s
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		s.Bytes += fi.Size()
		s.Files++
		r.Sizes.TotalBytes += fi.Size()
		if checkpoint.IsPagesImage(rel) {
			r.Sizes.PagesBytes += fi.Size()
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, s := range top {
		r.Sizes.Entries = append(r.Sizes.Entries, *s)
	}
	sort.Slice(r.Sizes.Entries, func(i, j int) bool { return r.Sizes.Entries[i].Name < r.Sizes.Entries[j].Name })
	return nil
}

// readManifest reads crwrap.json into r and checks the checkpoint as a restore verifies it
// (checkpoint.Reader.Check: crwrap.json sealed by crwrap.json.sha256, only listed files, each
// with its size and, with digests, its sha256), one reason per problem.
func (r *Report) readManifest(held *checkpoint.Reader, digests bool) {
	m, problems := held.Check(digests)
	for _, p := range problems {
		r.damage("%v", p)
	}
	if m == nil {
		return
	}
	r.FormatVersion, r.Name, r.Created = m.FormatVersion, m.Name, m.Created
	r.Command, r.Mounts, r.Host = m.App.Args, m.App.Mounts, m.Host
	r.CrwrapVersion, r.CRIUVersion, r.DurationsMS = m.CrwrapVersion, m.CRIUVersion, m.DurationsMS
}
