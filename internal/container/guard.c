//go:build linux && cgo

#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The waiting half of crwrap's guard (guard.go), in C so that a guard costs no Go runtime
 * start-up: several restores on one node start their guards while others are still
 * restoring, and each Go start would take CPU from them. It waits for crwrap (argv[4]) to
 * exit, then execs crwrap again to do the clean-up in Go (GuardCleanupArg). */
static void __attribute__((constructor)) crwrap_guard(int argc, char **argv)
{
	struct pollfd p;
	pid_t pid;
	int fd;

	if (argc != 5 || strcmp(argv[1], "__crwrap_guard") != 0)
		return;
	pid = (pid_t)atoi(argv[4]);
	if (pid <= 0 || getppid() != pid)
		_exit(0); /* crwrap is gone already, or did not start us */
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
	fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		_exit(1);
	p.fd = fd;
	p.events = POLLIN;
	while (poll(&p, 1, -1) < 0 && errno == EINTR)
		;
	argv[1] = "__crwrap_guard_cleanup";
	argv[4] = NULL;
	execv("/proc/self/exe", argv);
	_exit(1);
}
