package container

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/crwrap/crwrap/internal/config"
)

// Every CRIU option cr.criu.options accepts reaches CRIU, and nothing else is accepted.
func TestCRIUFeaturesMapped(t *testing.T) {
	for _, f := range config.CRIUFeatures {
		if !HasCRIUFeature(f.Name) {
			t.Errorf("cr.criu.options accepts %q, but crwrap does not pass it to CRIU", f.Name)
		}
	}
	if len(criuFeatures) != len(config.CRIUFeatures) {
		t.Errorf("%d CRIU options are mapped, %d accepted", len(criuFeatures), len(config.CRIUFeatures))
	}
}

func TestCRIUOptions(t *testing.T) {
	o := CRIUOptions{Features: []string{"link-remap", "ext-unix-sk", "force-irmap", "tcp-close"}, GhostLimit: 4 << 20, LeaveRunning: true}
	lo, err := o.lib()
	if err != nil {
		t.Fatal(err)
	}
	if !lo.LinkRemap || !lo.ExternalUnixConnections || !lo.FileLocks || !lo.LeaveRunning || lo.TcpSkipInFlight {
		t.Errorf("libcontainer options %+v", lo)
	}
	want := "# written by crwrap for this container (cr.criu.* keys)\nforce-irmap\ntcp-close\nghost-limit 4194304\n"
	if got := o.configFile(); got != want {
		t.Errorf("config file\n%s\nwant\n%s", got, want)
	}
	if _, err := (CRIUOptions{Features: []string{"leave-running"}}).lib(); err == nil {
		t.Error("an unknown option was accepted")
	}
}

// killCRIUChildren ends "criu swrk" children of this process, and only them.
func TestKillCRIUChildren(t *testing.T) {
	if got, want := parentOf(os.Getpid()), os.Getppid(); got != want {
		t.Fatalf("parentOf(self) = %d, want %d", got, want)
	}
	criu := exec.Command("/bin/sh", "-c", "sleep 100", "swrk", "3") // argv ends like CRIU's
	other := exec.Command("/bin/sh", "-c", "sleep 100", "other")
	for _, c := range []*exec.Cmd{criu, other} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	done := make(chan error, 1)
	go func() { done <- criu.Wait() }()
	killed := killCRIUChildren()
	if len(killed) != 1 || killed[0] != criu.Process.Pid {
		t.Errorf("killed %v, want [%d]", killed, criu.Process.Pid)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the CRIU-like child still runs")
	}
	if parentOf(other.Process.Pid) != os.Getpid() {
		t.Error("another child was killed")
	}
}
