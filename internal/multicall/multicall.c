//go:build linux && cgo

#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Keep in step with toolPaths in internal/criu/dispatch.go and bundle.go. */
#define XT_NFT "usr/sbin/xtables-nft-multi"
#define XT_LEGACY "usr/sbin/xtables-legacy-multi"
static const struct {
	const char *name, *path;
} tools[] = {
	{"criu", "usr/sbin/criu"}, {"tar", "usr/bin/tar"}, {"gzip", "usr/bin/gzip"}, {"nft", "usr/sbin/nft"},
	{"iptables", XT_NFT}, {"iptables-restore", XT_NFT}, {"iptables-save", XT_NFT},
	{"ip6tables", XT_NFT}, {"ip6tables-restore", XT_NFT}, {"ip6tables-save", XT_NFT},
	{NULL, NULL},
};

void crwrap_multicall(int argc, char **argv)
{
	char exe[PATH_MAX], root[PATH_MAX / 2], prog[PATH_MAX], loader[PATH_MAX], libs[PATH_MAX + 128];
	const char *base, *path = NULL, *bundle;
	char **nargv;
	int i, n, xt;

	if (argc < 1 || !argv[0])
		return;
	base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	for (i = 0; tools[i].name; i++)
		if (!strcmp(base, tools[i].name))
			path = tools[i].path;
	if (!path)
		return;
	xt = !strncmp(base, "iptables", 8) || !strncmp(base, "ip6tables", 9);
	if (xt && getenv("CRWRAP_XTABLES") && !strcmp(getenv("CRWRAP_XTABLES"), "legacy"))
		path = XT_LEGACY;

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
	snprintf(prog, sizeof(prog), "%s/%s", root, path);
	snprintf(loader, sizeof(loader), "%s/lib64/ld-linux-x86-64.so.2", root);
	snprintf(libs, sizeof(libs), "%s/lib/x86_64-linux-gnu:%s/usr/lib/x86_64-linux-gnu", root, root);
	if (access(prog, X_OK) || access(loader, X_OK))
		return; /* let the Go side say what is missing */
	if (xt) {
		char xtl[PATH_MAX];
		snprintf(xtl, sizeof(xtl), "%s/usr/lib/x86_64-linux-gnu/xtables", root);
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
