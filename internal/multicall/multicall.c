//go:build linux && cgo

#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The table and the bundle's layout: generated from internal/criu/tools.go (go generate). */
#include "tools.h"

/* pick sets prog to root/<first present candidate>; 0 when none is. */
static int pick(char *prog, size_t size, const char *root, const char *const *paths)
{
	for (; *paths; paths++) {
		int n = snprintf(prog, size, "%s/%s", root, *paths);
		if (n > 0 && n < (int)size && !access(prog, X_OK))
			return 1;
	}
	return 0;
}

void crwrap_multicall(int argc, char **argv)
{
	char exe[PATH_MAX], root[PATH_MAX / 2], prog[PATH_MAX], loader[PATH_MAX], libs[PATH_MAX + 128];
	static const char *const legacy[] = {CRWRAP_XTABLES_LEGACY, NULL};
	const struct crwrap_tool *tool = NULL;
	const char *base, *bundle, *const *paths;
	char **nargv;
	size_t off;
	int i, n;

	if (argc < 1 || !argv[0])
		return;
	base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	for (i = 0; crwrap_tools[i].name; i++)
		if (!strcmp(base, crwrap_tools[i].name))
			tool = &crwrap_tools[i];
	if (!tool)
		return;
	paths = tool->paths;
	if (tool->xtables && getenv("CRWRAP_XTABLES") && !strcmp(getenv("CRWRAP_XTABLES"), "legacy"))
		paths = legacy;

	bundle = getenv("CRWRAP_CRIU_BUNDLE");
	if (bundle && *bundle) {
		n = snprintf(root, sizeof(root), "%s/root", bundle);
	} else {
		ssize_t l = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		char *s;
		if (l <= 0)
			return;
		exe[l] = 0;
		/* <dir>/bin/crwrap -> <dir>/criu/root */
		if (!(s = strrchr(exe, '/')))
			return;
		*s = 0;
		if (!(s = strrchr(exe, '/')))
			return;
		*s = 0;
		n = snprintf(root, sizeof(root), "%s/criu/root", exe);
	}
	if (n <= 0 || n >= (int)sizeof(root))
		return;
	snprintf(loader, sizeof(loader), "%s/%s", root, CRWRAP_LOADER);
	if (!pick(prog, sizeof(prog), root, paths) || access(loader, X_OK))
		return; /* let the Go side say what is missing */
	for (i = 0, off = 0; crwrap_libdirs[i]; i++) {
		n = snprintf(libs + off, sizeof(libs) - off, "%s%s/%s", i ? ":" : "", root, crwrap_libdirs[i]);
		if (n <= 0 || (size_t)n >= sizeof(libs) - off)
			return;
		off += n;
	}
	if (tool->xtables) {
		char xtl[PATH_MAX];
		snprintf(xtl, sizeof(xtl), "%s/%s", root, CRWRAP_XTABLES_LIBDIR);
		setenv("XTABLES_LIBDIR", xtl, 1);
	}
	nargv = calloc(argc + 7, sizeof(char *));
	if (!nargv)
		return;
	nargv[0] = loader;
	nargv[1] = "--library-path";
	nargv[2] = libs;
	nargv[3] = "--argv0";
	nargv[4] = (char *)base;
	nargv[5] = prog;
	for (i = 1; i < argc; i++)
		nargv[5 + i] = argv[i];
	execv(loader, nargv);
	free(nargv);
}
