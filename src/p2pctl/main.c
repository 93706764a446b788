/* SPDX-License-Identifier: MIT */
/* main.c — p2pctl: the global options, finding the peer's control socket
 * (-s, -p or the only one here), then the command (commands.c). One call
 * per command; every failure maps to one documented exit status. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "p2pctl.h"

static void usage(FILE *f)
{
	fprintf(f, "Usage: p2pctl [OPTIONS] COMMAND [ARGS]\n\n"
		"Drive a p2p-peerd through its control socket.\n\nCommands:\n");
	for (size_t i = 0; i < ncommands; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nOptions:\n"
		"  -s, --socket PATH  the peer's control socket\n"
		"  -p, --peer NAME    the peer NAME: %s/NAME.sock (default: the only peer here)\n"
		"      --json         print JSON for scripts\n"
		"  -q, --quiet        print only what was asked for, or nothing\n"
		"  -t, --timeout SEC  wait at most SEC seconds for peerd (default %d)\n"
		"  -h, --help         show this help; 'p2pctl COMMAND --help' for a command\n"
		"  -V, --version      show the version\n\n"
		"Exit status: 0 ok, 1 failure, 2 usage, 3 not logged in, 4 not found,\n"
		"5 peerd unreachable, 6 verification failed. See p2pctl(1).\n",
		RUNDIR, DEFAULT_TIMEOUT_S);
}

/* The NAME in /run/p2p/NAME.sock, for messages. */
static void peer_from_path(struct ctl *c, const char *path)
{
	const char *b = strrchr(path, '/');
	size_t n;

	b = b ? b + 1 : path;
	n = strlen(b);
	if (n > 5 && !strcmp(b + n - 5, ".sock") && n - 5 <= USERNAME_MAX) {
		memcpy(c->peer, b, n - 5);
		c->peer[n - 5] = '\0';
		if (!valid_username(c->peer))
			c->peer[0] = '\0';
	}
}

/* -s wins, then -p, then the only socket in the run directory. */
static int resolve_socket(struct ctl *c, const char *sock, const char *peer)
{
	const char *rundir = getenv("P2P_RUNDIR");
	char found[2][PATH_MAX];
	size_t nfound = 0;
	struct dirent *de;
	DIR *d;

	if (!rundir || !*rundir)
		rundir = RUNDIR;
	if (sock) {
		c->socket = sock;
		peer_from_path(c, sock);
		return EXIT_OK;
	}
	if (peer) {
		if (!valid_username(peer)) {
			errmsg("invalid peer name for -p: use 1 to 64 of A-Z a-z 0-9 . _ -");
			return EXIT_USAGE;
		}
		if (asprintf(&c->socket_owned, "%s/%s.sock", rundir, peer) < 0)
			abort();
		c->socket = c->socket_owned;
		snprintf(c->peer, sizeof(c->peer), "%s", peer);
		return EXIT_OK;
	}
	d = opendir(rundir);
	if (d) {
		while ((de = readdir(d))) {
			size_t n = strlen(de->d_name);
			struct stat sb;
			char path[PATH_MAX];

			if (n <= 5 || strcmp(de->d_name + n - 5, ".sock"))
				continue;
			snprintf(path, sizeof(path), "%s/%s", rundir, de->d_name);
			if (stat(path, &sb) < 0 || !S_ISSOCK(sb.st_mode))
				continue;
			if (nfound < 2)
				memcpy(found[nfound], path, sizeof(path));
			nfound++;
		}
		closedir(d);
	}
	if (nfound == 0) {
		errmsg("no peer control socket in %s: start a peer (systemctl start p2p-peerd@NAME), or name its socket with -s PATH",
		       rundir);
		return EXIT_UNREACHABLE;
	}
	if (nfound > 1) {
		errmsg("%zu peers run here (%s, %s%s): pick one with -p NAME", nfound, found[0], found[1],
		       nfound > 2 ? ", ..." : "");
		return EXIT_USAGE;
	}
	c->socket_owned = strdup(found[0]);
	if (!c->socket_owned)
		abort();
	c->socket = c->socket_owned;
	peer_from_path(c, c->socket);
	return EXIT_OK;
}

static bool want_color(void)
{
	const char *nc = getenv("NO_COLOR"), *term = getenv("TERM");

	if (nc && *nc)
		return false;
	if (term && !strcmp(term, "dumb"))
		return false;
	return isatty(1) == 1;
}

static int run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "peer", required_argument, NULL, 'p' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "quiet", no_argument, NULL, 'q' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct ctl c = { .timeout_ms = DEFAULT_TIMEOUT_S * 1000 };
	const char *sock = NULL, *peer = NULL;
	const struct cmd *cmd;
	long long t;
	int o, s;

	opterr = 0;
	while ((o = getopt_long(argc, argv, "+s:p:qt:hV", opts, NULL)) != -1) {
		switch (o) {
		case 's': sock = optarg; break;
		case 'p': peer = optarg; break;
		case OPT_JSON: c.json = true; break;
		case 'q': c.quiet = true; break;
		case 't':
			if (!parse_number("timeout", optarg, 1, 86400, &t))
				return EXIT_USAGE;
			c.timeout_ms = (int)t * 1000;
			c.timeout_set = true;
			break;
		case 'h': usage(stdout); return EXIT_OK;
		case 'V': printf("p2pctl %s\n", PACKAGE_VERSION); return EXIT_OK;
		default:
			if (optopt && optopt < 256)
				errmsg("unknown option -%c or missing value; see 'p2pctl --help'", optopt);
			else
				errmsg("unknown option or missing value in '%s'; see 'p2pctl --help'", argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (sock && peer) {
		errmsg("give only one of -s SOCKET and -p PEER");
		return EXIT_USAGE;
	}
	cmd = find_cmd(argv[optind]);
	if (!cmd) {
		char *n = safe_text(argv[optind]);

		errmsg("unknown command '%s'; see 'p2pctl --help'", n);
		free(n);
		return EXIT_USAGE;
	}
	/* help needs no peer */
	for (int i = optind + 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			cmd_usage(stdout, cmd);
			return EXIT_OK;
		}
	c.color = want_color();
	c.tty_out = isatty(1) == 1;
	s = resolve_socket(&c, sock, peer);
	if (s == EXIT_OK) {
		s = run_command(&c, cmd, argc - optind, argv + optind);
		varlink_close(c.conn);
	}
	free(c.socket_owned);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		errmsg("cannot write the output: %s", strerror(errno));
		return EXIT_FAIL;
	}
	return s;
}

int main(int argc, char **argv)
{
	bool json = false;
	int s;

	/* --json anywhere (before "--") asks for JSON on every outcome, also
	 * for a failure before any reply (bad usage, no socket). */
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--json"))
			json = true;
	s = run(argc, argv);
	if (json && s != EXIT_OK) {
		output_json_failure(s);
		fflush(stdout);
	}
	return s;
}
