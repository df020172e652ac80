//go:build linux && cgo

#define _GNU_SOURCE
#include <sched.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/mount.h>

static int entered;

int crwrap_mountns_entered(void) { return entered; }

/* The commands that prepare mounts for an app; all others (init, multi-call CRIU tools,
 * render, doctor, inspect ...) stay in the namespace they were started in. */
static const char *const commands[] = {"run", "checkpoint", "restore", "verify", NULL};

void crwrap_mountns(int argc, char **argv)
{
	const char *base;
	int i, j, want = 0;

	if (argc < 2 || geteuid() != 0 || getenv("CRWRAP_NO_PRIVATE_MOUNTS"))
		return;
	base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	if (strcmp(base, "crwrap") != 0 && strncmp(base, "crwrap", 6) != 0)
		return;
	/* The subcommand is the first argument that is not a global flag. */
	for (i = 1; i < argc && !want; i++) {
		if (argv[i][0] == '-') {
			if (!strchr(argv[i], '=') && (!strcmp(argv[i], "--config") || !strcmp(argv[i], "--log-format") || !strcmp(argv[i], "--log-level")))
				i++;
			continue;
		}
		for (j = 0; commands[j]; j++)
			if (!strcmp(argv[i], commands[j]))
				want = 1;
		break;
	}
	if (!want)
		return;
	if (unshare(CLONE_NEWNS) != 0)
		return; /* crwrap reports missing privileges later, with context */
	/* Receive the host's mounts, never send ours back. */
	if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0)
		return;
	entered = 1;
}
