package inspect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/checkpoint-restore/go-criu/v7/crit"
	criucore "github.com/checkpoint-restore/go-criu/v7/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pstree"
	"github.com/checkpoint-restore/go-criu/v7/magic"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Pagemap entry flags (CRIU's criu/include/pagemap.h).
const (
	pageInParent = 1 << 0 // PE_PARENT: the pages are in the parent snapshot
	pagePresent  = 1 << 2 // PE_PRESENT: the pages are in pages-<id>.img
)

// CRIU's task states (compel's enum __compel_task_state).
var taskStates = map[uint32]string{1: "alive", 2: "dead", 3: "stopped", 6: "zombie"}

var magics = magic.LoadMagic()

// checkFraming verifies that the CRIU image file p is whole: its magic, then entries each made
// of a 32-bit little-endian size and that many bytes, up to the end of the file. go-criu's
// decoder does not notice a file cut in the middle of an entry.
func checkFraming(p string) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if len(b) < 4 {
		return errors.New("truncated: no magic")
	}
	m := uint64(binary.LittleEndian.Uint32(b))
	off := 4
	if m == magics.ByName["IMG_COMMON"] || m == magics.ByName["IMG_SERVICE"] {
		if len(b) < 8 {
			return errors.New("truncated: no magic")
		}
		m = uint64(binary.LittleEndian.Uint32(b[4:]))
		off = 8
	}
	if _, ok := magics.ByValue[m]; !ok {
		return fmt.Errorf("unknown magic 0x%x", m)
	}
	for off < len(b) {
		if len(b)-off < 4 {
			return fmt.Errorf("truncated at byte %d", len(b))
		}
		n := int(binary.LittleEndian.Uint32(b[off:]))
		off += 4
		if n > len(b)-off {
			return fmt.Errorf("truncated at byte %d: an entry of %d bytes at %d", len(b), n, off)
		}
		off += n
	}
	return nil
}

// readImage decodes the CRIU image file p with go-criu's crit into entries of entryType's type,
// after checking its framing; crit's panics on malformed input become errors.
func readImage(p string, entryType proto.Message) (img *crit.CriuImage, err error) {
	if err := checkFraming(p); err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	defer func() {
		if r := recover(); r != nil {
			img, err = nil, fmt.Errorf("malformed image: %v", r)
		}
	}()
	return crit.New(f, nil, "", false, false).Decode(entryType)
}

// readImages fills r.Processes and r.Memory from the CRIU images in imgDir, adding a reason for
// every image that is missing or unreadable.
func (r *Report) readImages(imgDir string, pageSize uint64) {
	base := func(name string) string { return filepath.Join(checkpointImagesDir, name) }
	img, err := readImage(filepath.Join(imgDir, "pstree.img"), &pstree.PstreeEntry{})
	if err != nil {
		r.damage("%s: %v", base("pstree.img"), err)
		return
	}
	if len(img.Entries) == 0 {
		r.damage("%s: no processes", base("pstree.img"))
		return
	}
	exes := readExes(imgDir)

	procs := map[uint32]*Process{}
	var order []*Process
	for _, e := range img.Entries {
		pe, ok := e.Message.(*pstree.PstreeEntry)
		if !ok {
			r.damage("%s: unexpected entry", base("pstree.img"))
			return
		}
		p := &Process{PID: pe.GetPid(), PPID: pe.GetPpid(), PGID: pe.GetPgid(), SID: pe.GetSid(), Threads: len(pe.GetThreads())}
		if _, dup := procs[p.PID]; dup {
			r.damage("%s: pid %d twice", base("pstree.img"), p.PID)
			continue
		}
		procs[p.PID] = p
		order = append(order, p)
		r.readProcess(imgDir, p, exes, pageSize)
	}
	for _, p := range order {
		parent, ok := procs[p.PPID]
		if p.PPID == 0 || !ok {
			if p.PPID != 0 {
				r.damage("%s: pid %d has parent %d, which is not in the tree", base("pstree.img"), p.PID, p.PPID)
			}
			r.Processes = append(r.Processes, p)
			continue
		}
		parent.Children = append(parent.Children, p)
	}
	for _, p := range order {
		sort.Slice(p.Children, func(i, j int) bool { return p.Children[i].PID < p.Children[j].PID })
	}
	r.ProcessCount = len(order)
}

// readProcess reads core-, mm- and pagemap-<pid>.img for p and checks its pages file's size.
func (r *Report) readProcess(imgDir string, p *Process, exes map[uint32]string, pageSize uint64) {
	base := func(f string, a ...any) string { return filepath.Join(checkpointImagesDir, fmt.Sprintf(f, a...)) }
	core, err := readImage(filepath.Join(imgDir, fmt.Sprintf("core-%d.img", p.PID)), &criucore.CoreEntry{})
	if err != nil {
		r.damage("%s: %v", base("core-%d.img", p.PID), err)
		return
	}
	if len(core.Entries) == 0 {
		r.damage("%s: empty", base("core-%d.img", p.PID))
		return
	}
	tc := core.Entries[0].Message.(*criucore.CoreEntry).GetTc()
	p.Comm = tc.GetComm()
	p.State = taskStates[tc.GetTaskState()]
	if p.State == "" {
		p.State = fmt.Sprintf("state %d", tc.GetTaskState())
	}
	if p.State == "zombie" || p.State == "dead" {
		return // no memory to describe
	}

	mmImg, err := readImage(filepath.Join(imgDir, fmt.Sprintf("mm-%d.img", p.PID)), &mm.MmEntry{})
	if err != nil {
		r.damage("%s: %v", base("mm-%d.img", p.PID), err)
		return
	}
	if len(mmImg.Entries) == 0 {
		r.damage("%s: empty", base("mm-%d.img", p.PID))
		return
	}
	me := mmImg.Entries[0].Message.(*mm.MmEntry)
	p.Exe = exes[me.GetExeFileId()]
	for _, v := range me.GetVmas() {
		p.Memory.VMAs++
		p.Memory.MappedBytes += v.GetEnd() - v.GetStart()
	}

	pmImg, err := readImage(filepath.Join(imgDir, fmt.Sprintf("pagemap-%d.img", p.PID)), &pagemap.PagemapEntry{})
	if err != nil {
		r.damage("%s: %v", base("pagemap-%d.img", p.PID), err)
		return
	}
	if len(pmImg.Entries) == 0 {
		r.damage("%s: empty", base("pagemap-%d.img", p.PID))
		return
	}
	head, ok := pmImg.Entries[0].Message.(*pagemap.PagemapHead)
	if !ok {
		r.damage("%s: no pagemap head", base("pagemap-%d.img", p.PID))
		return
	}
	for _, e := range pmImg.Entries[1:] {
		pe := e.Message.(*pagemap.PagemapEntry)
		n := nrPages(pe)
		fl := pe.GetFlags()
		inParent := pe.GetInParent() || fl&pageInParent != 0
		// Images without flags (CRIU < 3.0) mean present unless in the parent.
		if inParent || (fl != 0 && fl&pagePresent == 0) {
			continue
		}
		p.Memory.Pages += n
	}
	p.Memory.PageBytes = p.Memory.Pages * pageSize
	pages := fmt.Sprintf("pages-%d.img", head.GetPagesId())
	fi, err := os.Stat(filepath.Join(imgDir, pages))
	switch {
	case err != nil:
		r.damage("%s: %v", base("%s", pages), err)
	case uint64(fi.Size()) != p.Memory.PageBytes:
		r.damage("%s: %d bytes, but pagemap-%d.img lists %d pages (%d bytes)", base("%s", pages), fi.Size(), p.PID, p.Memory.Pages, p.Memory.PageBytes)
	}
}

// nrPages is a pagemap entry's page count. CRIU >= 3.19 writes it as the 64-bit field 5
// (nr_pages), leaving the 32-bit field 2 at 0; go-criu v7 knows only field 2, so field 5 is
// read from the message's unknown fields.
func nrPages(pe *pagemap.PagemapEntry) uint64 {
	b := pe.ProtoReflect().GetUnknown()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			break
		}
		b = b[n:]
		if num == 5 && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				break
			}
			return v
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			break
		}
		b = b[n:]
	}
	return uint64(pe.GetNrPages())
}

// readExes maps the file IDs of files.img to the paths of regular files (executables are
// looked up by mm's exe_file_id). A missing or unreadable files.img gives no names; the
// process tree does not depend on it.
func readExes(imgDir string) map[uint32]string {
	out := map[uint32]string{}
	img, err := readImage(filepath.Join(imgDir, "files.img"), &fdinfo.FileEntry{})
	if err != nil {
		return out
	}
	for _, e := range img.Entries {
		fe, ok := e.Message.(*fdinfo.FileEntry)
		if ok && fe.GetReg() != nil {
			out[fe.GetId()] = fe.GetReg().GetName()
		}
	}
	return out
}

// readStats reads CRIU's dump statistics from p (a stats-dump file).
func readStats(p string) (st *DumpStats, err error) {
	if err := checkFraming(p); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			st, err = nil, fmt.Errorf("malformed statistics: %v", r)
		}
	}()
	d, err := crit.GetDumpStats(filepath.Dir(p))
	if err != nil {
		return nil, err
	}
	if d == nil {
		return nil, errors.New("no dump statistics in it")
	}
	return &DumpStats{
		FreezingTimeUS:     d.GetFreezingTime(),
		FrozenTimeUS:       d.GetFrozenTime(),
		MemdumpTimeUS:      d.GetMemdumpTime(),
		MemwriteTimeUS:     d.GetMemwriteTime(),
		PagesScanned:       d.GetPagesScanned(),
		PagesSkippedParent: d.GetPagesSkippedParent(),
		PagesWritten:       d.GetPagesWritten(),
		PagesLazy:          d.GetPagesLazy(),
		ShpagesScanned:     d.GetShpagesScanned(),
		ShpagesWritten:     d.GetShpagesWritten(),
	}, nil
}
