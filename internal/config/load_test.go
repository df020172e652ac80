package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeProps(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cr.properties")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDefaults(t *testing.T) {
	s, err := Load(LoadOptions{Path: filepath.Join(t.TempDir(), "absent"), Args: []string{"app"}})
	if err != nil {
		t.Fatal(err)
	}
	want := &Settings{
		Mode: ModeRun, CheckpointRoot: "/cr", ReadinessInterval: 20 * time.Millisecond,
		ReadinessTimeout: 10 * time.Minute, CheckpointRefresh: "auto", RestoreFallback: "cold",
		RestoreVerify: "size", RestoreLazy: true, Command: []string{"app"}, LogFormat: "text", LogLevel: "info",
		CheckpointTimeout: 5 * time.Minute, CRIUGhostLimit: 1 << 20,
		CheckpointCache: "/cr-cache", PullTimeout: 2 * time.Minute, RootfsSize: 1 << 30, RestoreFetch: "full", FetchTimeout: 10 * time.Second,
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got  %+v\nwant %+v", s, want)
	}
}

func TestLoadGood(t *testing.T) {
	full := `# a full file
cr.mode = checkpoint
cr.checkpoint.name=app-1.2_x
cr.checkpoint.directory : team/./app/
cr.checkpoint.root=/mnt/cr/
cr.container.readiness=test -f $HOME/x && echo ${X}
cr.readiness.interval=5ms
cr.readiness.timeout=30s
cr.checkpoint.warmup=http://127.0.0.1:8080/warm
cr.checkpoint.exit=true
cr.checkpoint.refresh=always
cr.restore.fallback=fail
cr.restore.wait=0s
cr.restore.verify=digest
cr.container.command=sh -c 'echo "hi there"; exit 7' a\\ b
cr.container.template=/etc/crwrap/config.json.tmpl
cr.container.mounts=/data, /var/cache/app ,
cr.criu.path=/opt/criu/criu
cr.criu.tcp-established=yes
cr.log.format=json
cr.log.level=debug
cr.metrics.address=:9090
cr.container.user=app:staff
cr.container.rootfs-size=256Mi
other.key=ignored ${nope
`
	tests := []struct {
		name  string
		text  string
		opts  LoadOptions
		check func(t *testing.T, s *Settings)
	}{
		{"full", full, LoadOptions{}, func(t *testing.T, s *Settings) {
			want := Settings{
				Mode: ModeCheckpoint, CheckpointName: "app-1.2_x", CheckpointDirectory: "team/app",
				CheckpointRoot: "/mnt/cr", CheckpointWarmup: "http://127.0.0.1:8080/warm",
				CheckpointExit: true, CheckpointRefresh: "always",
				Readiness:         "test -f $HOME/x && echo ${X}",
				ReadinessInterval: 5 * time.Millisecond, ReadinessTimeout: 30 * time.Second,
				RestoreFallback: "fail", RestoreVerify: "digest", RestoreLazy: true,
				Command:  []string{"sh", "-c", `echo "hi there"; exit 7`, "a b"},
				Template: "/etc/crwrap/config.json.tmpl", Mounts: []string{"/data", "/var/cache/app"},
				CRIUPath: "/opt/criu/criu", TCPEstablished: true, LogFormat: "json", LogLevel: "debug",
				MetricsAddress: ":9090", User: "app:staff", RootfsSize: 256 << 20, File: s.File,
				CheckpointTimeout: 5 * time.Minute, CRIUGhostLimit: 1 << 20,
				CheckpointCache: "/cr-cache", PullTimeout: 2 * time.Minute, RestoreFetch: "full", FetchTimeout: 10 * time.Second,
			}
			if !reflect.DeepEqual(*s, want) {
				t.Errorf("got  %+v\nwant %+v", *s, want)
			}
		}},
		{"args win over command", "cr.container.command=a b\n", LoadOptions{Args: []string{"x", "y z"}},
			func(t *testing.T, s *Settings) {
				if !reflect.DeepEqual(s.Command, []string{"x", "y z"}) {
					t.Errorf("command %q", s.Command)
				}
			}},
		{"env over file", "cr.mode=run\ncr.log.level=warn\n",
			LoadOptions{Args: []string{"a"}, Env: []string{"CR_MODE=restore", "CR_CHECKPOINT_NAME=n", "CR_CHECKPOINT_DIRECTORY=d", "CR_LOG_LEVEL="}},
			func(t *testing.T, s *Settings) {
				if s.Mode != ModeRestore || s.CheckpointName != "n" || s.LogLevel != "warn" {
					t.Errorf("%+v", s)
				}
			}},
		{"flag over env", "cr.log.format=json\n",
			LoadOptions{Args: []string{"a"}, Env: []string{"CR_LOG_FORMAT=json", "CR_CRIU_TCP_ESTABLISHED=true"}, Flags: map[string]string{"cr.log.format": "text"}},
			func(t *testing.T, s *Settings) {
				if s.LogFormat != "text" || !s.TCPEstablished {
					t.Errorf("%+v", s)
				}
			}},
		{"lookup func", "", LoadOptions{Args: []string{"a"}, LookupEnv: func(k string) (string, bool) {
			if k == "CR_RESTORE_WAIT" {
				return "2s", true
			}
			return "", false
		}}, func(t *testing.T, s *Settings) {
			if s.RestoreWait != 2*time.Second {
				t.Errorf("wait %v", s.RestoreWait)
			}
		}},
		{"continuations and escapes", "cr.container.command = sh -c \\\n    'echo $A'\ncr.checkpoint.warmup=a\\tb \\u0041\n", LoadOptions{},
			func(t *testing.T, s *Settings) {
				if !reflect.DeepEqual(s.Command, []string{"sh", "-c", "echo $A"}) || s.CheckpointWarmup != "a\tb A" {
					t.Errorf("%q %q", s.Command, s.CheckpointWarmup)
				}
			}},
		{"values pass unchanged", "cr.container.readiness=curl -fsS \"http://x/\" || test -n '${A:-b}' # not a comment\ncr.container.command=x\n", LoadOptions{},
			func(t *testing.T, s *Settings) {
				if s.Readiness != `curl -fsS "http://x/" || test -n '${A:-b}' # not a comment` {
					t.Errorf("%q", s.Readiness)
				}
			}},
		{"command optional", "cr.log.level=debug\n", LoadOptions{CommandOptional: true}, func(t *testing.T, s *Settings) {
			if len(s.Command) != 0 || s.LogLevel != "debug" {
				t.Errorf("%+v", s)
			}
		}},
		{"CR_PROPERTIES names the file", "", LoadOptions{Args: []string{"a"}}, func(t *testing.T, s *Settings) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Path = writeProps(t, tt.text)
			tt.opts.Explicit = true
			s, err := Load(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
		})
	}
}

func TestLoadBad(t *testing.T) {
	tests := []struct {
		name string
		text string
		opts LoadOptions
		want string // the whole message, with FILE standing for the file's path
	}{
		{"unknown key", "# c\ncr.mode=run\ncr.checkpoint.nmae=x\n", LoadOptions{},
			"FILE:3: cr.checkpoint.nmae: unknown key (did you mean cr.checkpoint.name?)"},
		{"unknown key after continuation", "cr.container.command=a \\\n  b \\\n  c\n! comment\n  cr.readines.timeout 5s\n", LoadOptions{},
			"FILE:5: cr.readines.timeout: unknown key (did you mean cr.readiness.timeout?)"},
		{"bad duration", "cr.readiness.timeout=10 minutes\n", LoadOptions{},
			`FILE:1: cr.readiness.timeout: invalid duration "10 minutes" (Go syntax, e.g. 20ms, 5s, 10m)`},
		{"zero interval", "\n\ncr.readiness.interval=0s\n", LoadOptions{},
			`FILE:3: cr.readiness.interval: duration "0s" must be greater than 0`},
		{"negative wait", "cr.restore.wait=-1s\n", LoadOptions{},
			`FILE:1: cr.restore.wait: duration "-1s" must not be negative`},
		{"bad bool", "cr.checkpoint.exit=maybe\n", LoadOptions{},
			`FILE:1: cr.checkpoint.exit: invalid boolean "maybe" (want true or false)`},
		{"bad mode", "cr.mode=dump\n", LoadOptions{},
			`FILE:1: cr.mode: unknown mode "dump" (want run, checkpoint, restore)`},
		{"bad mode env", "", LoadOptions{Env: []string{"CR_MODE=dump"}},
			`env CR_MODE: cr.mode: unknown mode "dump" (want run, checkpoint, restore)`},
		{"bad mode flag", "cr.mode=run", LoadOptions{Flags: map[string]string{"cr.mode": "dump"}},
			`flag --mode: cr.mode: unknown mode "dump" (want run, checkpoint, restore)`},
		{"bad refresh", "cr.checkpoint.refresh=never\n", LoadOptions{},
			`FILE:1: cr.checkpoint.refresh: unknown refresh policy "never" (want auto, always)`},
		{"bad fallback", "cr.restore.fallback=warm\n", LoadOptions{},
			`FILE:1: cr.restore.fallback: unknown fallback "warm" (want cold, fail)`},
		{"bad verify", "cr.restore.verify=md5\n", LoadOptions{},
			`FILE:1: cr.restore.verify: unknown verification "md5" (want size, digest)`},
		{"bad log format", "cr.log.format=xml\n", LoadOptions{},
			`FILE:1: cr.log.format: unknown log format "xml" (want text, json)`},
		{"bad log level", "cr.log.level=loud\n", LoadOptions{},
			`FILE:1: cr.log.level: unknown log level "loud" (want panic, fatal, error, warn, warning, info, debug, trace)`},
		{"name with slash", "cr.checkpoint.name=a/b\n", LoadOptions{},
			`FILE:1: cr.checkpoint.name: invalid checkpoint name "a/b": use letters, digits, '.', '_' and '-', starting with a letter or digit (no path separators)`},
		{"name dotdot", "cr.checkpoint.name=..x\n", LoadOptions{},
			`FILE:1: cr.checkpoint.name: invalid checkpoint name "..x": use letters, digits, '.', '_' and '-', starting with a letter or digit (no path separators)`},
		{"absolute directory", "cr.checkpoint.directory=/abs\n", LoadOptions{},
			`FILE:1: cr.checkpoint.directory: checkpoint directory "/abs" must be relative to cr.checkpoint.root`},
		{"dotdot directory", "cr.checkpoint.directory=a/../../b\n", LoadOptions{},
			`FILE:1: cr.checkpoint.directory: checkpoint directory "a/../../b" must not contain ".."`},
		{"empty directory", "cr.checkpoint.directory=./.\n", LoadOptions{},
			`FILE:1: cr.checkpoint.directory: checkpoint directory "./." is empty once cleaned`},
		{"image with tag", "cr.checkpoint.image=127.0.0.1:5000/team/app:v1\n", LoadOptions{},
			`FILE:1: cr.checkpoint.image: checkpoint image "127.0.0.1:5000/team/app:v1" must be a repository without tag or digest (crwrap derives the tag)`},
		{"image not a repository", "cr.checkpoint.image=Registry/App\n", LoadOptions{},
			`FILE:1: cr.checkpoint.image: checkpoint image "Registry/App" is not an OCI repository: repository can only contain the characters ` + "`abcdefghijklmnopqrstuvwxyz0123456789_-./`" + `: Registry/App`},
		{"zero pull timeout", "cr.checkpoint.pull-timeout=0s\n", LoadOptions{},
			`FILE:1: cr.checkpoint.pull-timeout: duration "0s" must be greater than 0`},
		{"relative root", "cr.checkpoint.root=cr\n", LoadOptions{},
			`FILE:1: cr.checkpoint.root: path "cr" must be absolute`},
		{"name required", "cr.mode=checkpoint\ncr.checkpoint.directory=d\n", LoadOptions{},
			`FILE: cr.checkpoint.name: required in checkpoint mode (set it in the properties file or CR_CHECKPOINT_NAME)`},
		{"directory required", "cr.checkpoint.name=n\n", LoadOptions{Flags: map[string]string{"cr.mode": "restore"}},
			`FILE: cr.checkpoint.directory: required in restore mode (set it in the properties file or CR_CHECKPOINT_DIRECTORY)`},
		{"no command", "cr.mode=run\n", LoadOptions{Args: []string{}},
			`FILE: cr.container.command: no app command: give one after -- or set cr.container.command`},
		{"blank command", "cr.container.command=''\n", LoadOptions{},
			`FILE:1: cr.container.command: the app command starts with an empty word`},
		{"unbalanced quote", "cr.container.command=sh -c 'echo\n", LoadOptions{},
			`FILE:1: cr.container.command: unbalanced single quote in command "sh -c 'echo"`},
		{"unbalanced double quote", "cr.container.command=sh -c \"echo\n", LoadOptions{},
			`FILE:1: cr.container.command: unbalanced double quote in command "sh -c \"echo"`},
		{"relative mount", "cr.container.mounts=/a,b\n", LoadOptions{},
			`FILE:1: cr.container.mounts: mount "b" must be an absolute path`},
		{"unclean mount", "cr.container.mounts=/a/../b\n", LoadOptions{},
			`FILE:1: cr.container.mounts: mount "/a/../b" is not a clean path (want "/b")`},
		{"root mount", "cr.container.mounts=/\n", LoadOptions{},
			`FILE:1: cr.container.mounts: mount "/": the pod's root cannot be bind-mounted into the app`},
		{"metrics no port", "cr.metrics.address=localhost\n", LoadOptions{},
			`FILE:1: cr.metrics.address: metrics address "localhost" is not host:port: address localhost: missing port in address`},
		{"metrics bad port", "cr.metrics.address=:http-alt\n", LoadOptions{},
			`FILE:1: cr.metrics.address: metrics address ":http-alt": port "http-alt" is not a number 0-65535`},
		{"bad tcp probe", "cr.container.readiness=tcp://localhost\n", LoadOptions{},
			`FILE:1: cr.container.readiness: "tcp://localhost" is not tcp://host:port: address localhost: missing port in address`},
		{"bad unicode escape", "cr.mode=run\ncr.log.level=\\u12\n", LoadOptions{},
			`FILE:2: cannot parse properties: invalid unicode literal`},
		{"unknown flag key", "", LoadOptions{Flags: map[string]string{"cr.moed": "run"}},
			`flag --moed: cr.moed: unknown key (did you mean cr.mode?)`},
		{"newline in env value stays on one line", "", LoadOptions{Env: []string{"CR_MODE=a\nb"}},
			`env CR_MODE: cr.mode: unknown mode "a\nb" (want run, checkpoint, restore)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeProps(t, tt.text)
			tt.opts.Path, tt.opts.Explicit = p, true
			if tt.opts.Args == nil {
				tt.opts.Args = []string{"app"}
			}
			if tt.name == "blank command" || tt.name == "unbalanced quote" || tt.name == "unbalanced double quote" {
				tt.opts.Args = nil
			}
			_, err := Load(tt.opts)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%v does not match ErrInvalid", err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("error is not one line: %q", err)
			}
			if want := strings.ReplaceAll(tt.want, "FILE", p); err.Error() != want {
				t.Errorf("got  %s\nwant %s", err, want)
			}
		})
	}
}

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	absent := filepath.Join(dir, "absent")
	t.Run("explicit missing", func(t *testing.T) {
		_, err := Load(LoadOptions{Path: absent, Explicit: true, Args: []string{"a"}})
		if want := absent + ": cannot read properties file: no such file or directory"; err == nil || err.Error() != want || !errors.Is(err, ErrInvalid) {
			t.Errorf("got %v, want %s", err, want)
		}
	})
	t.Run("CR_PROPERTIES missing", func(t *testing.T) {
		_, err := Load(LoadOptions{Env: []string{"CR_PROPERTIES=" + absent}, Args: []string{"a"}})
		if err == nil || !errors.Is(err, ErrInvalid) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("explicit directory", func(t *testing.T) {
		_, err := Load(LoadOptions{Path: dir, Explicit: true, Args: []string{"a"}})
		if err == nil || !strings.HasPrefix(err.Error(), dir+": cannot read properties file: ") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("default missing in checkpoint mode", func(t *testing.T) {
		_, err := Load(LoadOptions{Path: absent, Args: []string{"a"}, Flags: map[string]string{"cr.mode": "checkpoint"}})
		want := "cr.checkpoint.name: required in checkpoint mode (set it in the properties file or CR_CHECKPOINT_NAME; no properties file at " + absent + ")"
		if err == nil || err.Error() != want {
			t.Errorf("got %v, want %s", err, want)
		}
	})
	t.Run("default missing, env enough", func(t *testing.T) {
		s, err := Load(LoadOptions{Path: absent, Args: []string{"a"}, Env: []string{"CR_MODE=restore", "CR_CHECKPOINT_NAME=n", "CR_CHECKPOINT_DIRECTORY=d/e"}})
		if err != nil {
			t.Fatal(err)
		}
		if s.File != "" || s.CheckpointPath() != "/cr/d/e/n" {
			t.Errorf("%+v", s)
		}
	})
}

func TestKeyLines(t *testing.T) {
	text := "\uFEFFa=1\n# b=2\n  c : 3 \\\n d=4\n\\u0065\\ f=5\r\ng\n! h\nc=6\n"
	got := keyLines(text)
	want := map[string]int{"a": 1, "c": 8, "e f": 5, "g": 6}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestEnvName(t *testing.T) {
	for k, want := range map[string]string{
		"cr.checkpoint.name": "CR_CHECKPOINT_NAME", "cr.criu.tcp-established": "CR_CRIU_TCP_ESTABLISHED", "cr.mode": "CR_MODE",
	} {
		if got := EnvName(k); got != want {
			t.Errorf("EnvName(%s) = %s, want %s", k, got, want)
		}
	}
	if got := FlagName("cr.log.format"); got != "--log-format" {
		t.Errorf("FlagName = %s", got)
	}
}
