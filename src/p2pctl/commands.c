/* SPDX-License-Identifier: MIT */
/* commands.c — p2pctl's commands as one table: each command's options and
 * arguments, how its call's parameters are built from them, and which
 * function of output.c prints its reply; run_command() does the rest the
 * same way for all (parse, call, check the reply, print). Download, which
 * follows a stream of replies, has a function of its own. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "p2pctl.h"

/* ---- options and arguments --------------------------------------------- */

/* Parse a command's options; returns -1 when done, or EXIT_* + 1 on help /
 * bad usage (so the caller can return it - 1). */
static int parse_cmd_opts(struct ctl *c, const struct cmd *cmd, int argc, char **argv,
			  const struct option *extra, size_t nextra,
			  int (*handle)(void *st, int opt, const char *arg), void *st)
{
	struct option opts[16] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
	};
	size_t n = 3;
	int o;

	for (size_t i = 0; i < nextra && n < 15; i++)
		opts[n++] = extra[i];
	opts[n] = (struct option){ 0 };
	optind = 0; /* glibc: restart scanning on a new argv */
	opterr = 0;
	while ((o = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
		switch (o) {
		case OPT_JSON: c->json = true; break;
		case 'q': c->quiet = true; break;
		case 'h': cmd_usage(stdout, cmd); return EXIT_OK + 1;
		case '?':
			if (optopt)
				errmsg("%s: unknown option -%c; see 'p2pctl %s --help'", cmd->name, optopt, cmd->name);
			else
				errmsg("%s: unknown option or missing value in '%s'; see 'p2pctl %s --help'",
				       cmd->name, argv[optind - 1], cmd->name);
			return EXIT_USAGE + 1;
		default:
			if (!handle || handle(st, o, optarg) < 0)
				return EXIT_USAGE + 1;
		}
	}
	return -1;
}

/* Exactly `min..max` positional arguments left, else a usage error. */
static bool want_args(const struct cmd *cmd, int argc, char **argv, int min, int max)
{
	int n = argc - optind;

	if (n < min) {
		errmsg("%s: missing argument; usage: p2pctl %s %s", cmd->name, cmd->name, cmd->args);
		return false;
	}
	if (n > max) {
		errmsg("%s: unexpected argument '%s'; usage: p2pctl %s %s", cmd->name, argv[optind + max], cmd->name, cmd->args);
		return false;
	}
	return true;
}

/* A decimal integer option within [min, max]. */
bool parse_number(const char *opt, const char *arg, long long min, long long max, long long *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(arg, &end, 10);
	if (errno || end == arg || *end || v < min || v > max) {
		errmsg("--%s: '%s' is not a number from %lld to %lld", opt, arg, min, max);
		return false;
	}
	*out = v;
	return true;
}

/* Every command's own options land in its struct cmd_args. */
static int cmd_opt(void *st, int o, const char *arg)
{
	struct cmd_args *a = st;

	switch (o) {
	case OPT_PW_STDIN: a->pw.from_stdin = true; return 0;
	case OPT_PW_FILE: a->pw.file = arg; return 0;
	case OPT_EXACT: a->exact = arg; return 0;
	case OPT_LIMIT: return parse_number("limit", arg, 1, PEER_SEARCH_LIMIT_MAX, &a->limit) ? 0 : -1;
	case OPT_OFFSET: return parse_number("offset", arg, 0, INT32_MAX, &a->offset) ? 0 : -1;
	case OPT_FROM: a->from = arg; return 0;
	case OPT_TO: a->to = arg; return 0;
	case OPT_FORCE: a->force = true; return 0;
	default: return -1;
	}
}

static bool check_filename(const char *what, const char *name)
{
	if (!valid_filename(name, strlen(name))) {
		char *t = safe_text(name);

		errmsg("invalid %s '%s': a file name is 1 to 255 bytes of UTF-8 without '/'", what, t);
		free(t);
		return false;
	}
	return true;
}

/* ---- each call's parameters ------------------------------------------- */

/* register, login: {username, password}. */
static int get_username(const struct cmd *cmd, int argc, char **argv, char *user, size_t size)
{
	if (optind < argc) {
		snprintf(user, size, "%s", argv[optind]);
		if (strlen(argv[optind]) >= size)
			user[0] = '\0';
	} else {
		int r = prompt_tty("User name: ", user, size, true);

		if (r == -ENOTTY) {
			errmsg("%s: no user name: give it as an argument (p2pctl %s USER)", cmd->name, cmd->name);
			return EXIT_USAGE;
		}
		if (r < 0) {
			errmsg("cancelled");
			return EXIT_FAIL;
		}
	}
	if (!valid_username(user)) {
		char *s = safe_text(optind < argc ? argv[optind] : user);

		errmsg("invalid user name '%s': use 1 to 64 of A-Z a-z 0-9 . _ -", s);
		free(s);
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

static int auth_params(const struct cmd *cmd, struct cmd_args *a, struct json_object *params)
{
	char password[PASSWORD_MAX];
	int s;

	if (a->pw.from_stdin && a->pw.file) {
		errmsg("%s: give only one of --password-stdin and --password-file", cmd->name);
		return EXIT_USAGE;
	}
	s = get_username(cmd, a->argc, a->argv, a->user, sizeof(a->user));
	if (s)
		return s;
	s = get_password(&a->pw, a->user, !strcmp(cmd->name, "register"), password, sizeof(password));
	if (s) {
		explicit_bzero(password, sizeof(password));
		return s;
	}
	json_object_object_add(params, "username", json_object_new_string(a->user));
	json_object_object_add(params, "password", json_object_new_string(password));
	explicit_bzero(password, sizeof(password));
	return EXIT_OK;
}

/* search TEXT | --exact NAME: {query | exact, limit, offset?}. */
static int search_params(const struct cmd *cmd, struct cmd_args *a, struct json_object *params)
{
	if (!want_args(cmd, a->argc, a->argv, a->exact ? 0 : 1, a->exact ? 0 : 1))
		return EXIT_USAGE;
	if (a->exact) {
		if (!check_filename("file name", a->exact))
			return EXIT_USAGE;
		json_object_object_add(params, "exact", json_object_new_string(a->exact));
	} else {
		const char *q = a->argv[optind];

		if (!*q || strlen(q) > FILENAME_MAX_BYTES || !valid_utf8(q, strlen(q))) {
			errmsg("search: the text must be 1 to 255 bytes of UTF-8");
			return EXIT_USAGE;
		}
		json_object_object_add(params, "query", json_object_new_string(q));
	}
	json_object_object_add(params, "limit", json_object_new_int64(a->limit));
	if (a->offset)
		json_object_object_add(params, "offset", json_object_new_int64(a->offset));
	return EXIT_OK;
}

/* cancel, pause, resume ID: {id}. */
static int id_params(const struct cmd *cmd, struct cmd_args *a, struct json_object *params)
{
	const char *id = a->argv[optind];

	if (!*id || strlen(id) > 64 || strspn(id, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_") != strlen(id)) {
		errmsg("%s: invalid transfer id; see the IDs with 'p2pctl transfers'", cmd->name);
		return EXIT_USAGE;
	}
	a->id = id;
	json_object_object_add(params, "id", json_object_new_string(id));
	return EXIT_OK;
}

/* A rate: bytes/s as an integer with an optional K, M or G (binary, KiB
 * etc. also accepted), or "unlimited" (0). -1 when not one. */
static long long parse_rate(const char *s)
{
	static const struct { const char *suffix; long long mul; } units[] = {
		{ "", 1 }, { "k", 1LL << 10 }, { "kib", 1LL << 10 }, { "m", 1LL << 20 }, { "mib", 1LL << 20 },
		{ "g", 1LL << 30 }, { "gib", 1LL << 30 },
	};
	unsigned long long v;
	char *end;

	if (!strcmp(s, "unlimited"))
		return 0;
	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcasecmp(end, units[i].suffix))
			return v <= (unsigned long long)(PEER_RATE_MAX / units[i].mul) ? (long long)v * units[i].mul : -1;
	return -1;
}

/* set upload-rate N [download-rate N]: {upload_rate?, download_rate?}. */
static int set_params(const struct cmd *cmd, struct cmd_args *a, struct json_object *params)
{
	int argc = a->argc;
	char **argv = a->argv;

	if ((argc - optind) % 2) {
		errmsg("%s: '%s' needs a value; usage: p2pctl set %s", cmd->name, argv[argc - 1], cmd->args);
		return EXIT_USAGE;
	}
	for (int i = optind; i + 1 < argc; i += 2) {
		const char *key = !strcmp(argv[i], "upload-rate") ? "upload_rate"
				  : !strcmp(argv[i], "download-rate") ? "download_rate" : NULL;
		long long v = parse_rate(argv[i + 1]);

		if (!key || v < 0 || json_object_object_get_ex(params, key, NULL)) {
			char *t = safe_text(argv[key ? i + 1 : i]);

			if (!key)
				errmsg("%s: unknown setting '%s'; use upload-rate or download-rate", cmd->name, t);
			else if (v < 0)
				errmsg("%s: %s: '%s' is not a rate: bytes/s as a number with an optional K, M or G, "
				       "0 or unlimited (at most 1 TiB/s)", cmd->name, argv[i], t);
			else
				errmsg("%s: %s given twice", cmd->name, argv[i]);
			free(t);
			return EXIT_USAGE;
		}
		json_object_object_add(params, key, json_object_new_int64(v));
	}
	return EXIT_OK;
}

/* ---- download: progress replies until the last --------------------------- */

/* ^C during a download: cancel it in peerd (what arrived stays for a
 * resume) and exit like a program killed by SIGINT. */
static int interrupted(struct ctl *c, const char *id)
{
	struct json_object *params;
	struct varlink_conn *conn;
	struct varlink_reply r;
	enum varlink_fault fault;
	bool ok = false;

	if (id[0] && varlink_connect(c->socket, 2000, &conn) == 0) {
		params = json_object_new_object();
		json_object_object_add(params, "id", json_object_new_string(id));
		if (varlink_send_call(conn, PEER_M_CANCEL, params, 0, 2000) == 0 &&
		    varlink_receive(conn, 5000, &r, &fault) == 0) {
			ok = !r.error || !strcmp(r.error, peer_error_name(PEER_E_NOT_FOUND));
			varlink_reply_free(&r);
		}
		json_object_put(params);
		varlink_close(conn);
	}
	if (ok)
		errmsg("interrupted: cancelled transfer %s; run the same command again to resume", id);
	else if (id[0])
		errmsg("interrupted: the transfer may go on in peerd; stop it with 'p2pctl cancel %s'", id);
	else
		errmsg("interrupted before the transfer started; see 'p2pctl transfers'");
	return 128 + SIGINT;
}

static int cmd_download(struct ctl *c, const struct cmd *cmd, struct cmd_args *a)
{
	struct progress pr = { .tty = isatty(2) == 1 };
	struct json_object *params;
	struct varlink_reply r;
	char to[PATH_MAX], id[65] = "";
	sigset_t sigs;
	int s, e, sigfd;

	if (!check_filename("file name", a->argv[optind]))
		return EXIT_USAGE;
	if (a->from && !valid_username(a->from)) {
		errmsg("download: invalid peer name for --from: use 1 to 64 of A-Z a-z 0-9 . _ -");
		return EXIT_USAGE;
	}
	if (a->to) {
		struct stat sb;

		/* peerd wants an absolute directory: resolve it here, where the
		 * user's working directory is known. */
		if (!realpath(a->to, to) || stat(to, &sb) < 0) {
			errmsg("download: cannot use --to %s: %s", a->to, strerror(errno));
			return EXIT_USAGE;
		}
		if (!S_ISDIR(sb.st_mode)) {
			errmsg("download: --to %s is not a directory", a->to);
			return EXIT_USAGE;
		}
	}
	params = json_object_new_object();
	json_object_object_add(params, "name", json_object_new_string(a->argv[optind]));
	if (a->from)
		json_object_object_add(params, "from", json_object_new_string(a->from));
	if (a->to)
		json_object_object_add(params, "to", json_object_new_string(to));
	if (a->force)
		json_object_object_add(params, "force", json_object_new_boolean(true));
	s = ctl_connect(c);
	if (s) {
		json_object_put(params);
		return s;
	}
	e = varlink_send_call(c->conn, PEER_M_DOWNLOAD, params, VARLINK_CALL_MORE, c->timeout_ms);
	json_object_put(params);
	if (e < 0)
		return unreachable(c, e);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	/* ^C is read from a signalfd next to the socket, so the transfer can be
	 * cancelled in peerd before p2pctl exits. */
	if (sigprocmask(SIG_BLOCK, &sigs, NULL) < 0 || (sigfd = signalfd(-1, &sigs, SFD_CLOEXEC)) < 0) {
		errmsg("cannot watch for ^C: %s", strerror(errno));
		return EXIT_FAIL;
	}
	for (;;) {
		enum varlink_fault fault;

		e = varlink_receive(c->conn, 0, &r, &fault);
		if (e == -ETIMEDOUT) {
			/* A download takes as long as it takes: only an explicit
			 * --timeout bounds the wait for each progress reply. */
			struct pollfd pfd[2] = { { .fd = varlink_fd(c->conn), .events = POLLIN },
						 { .fd = sigfd, .events = POLLIN } };
			int n = poll(pfd, 2, c->timeout_set ? c->timeout_ms : -1);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				progress_end(&pr);
				s = unreachable(c, n < 0 ? -errno : -ETIMEDOUT);
				break;
			}
			if (pfd[1].revents & POLLIN) {
				progress_end(&pr);
				s = interrupted(c, id);
				break;
			}
			continue;
		}
		s = received(c, PEER_M_DOWNLOAD, e, &r, fault);
		if (s) {
			progress_end(&pr);
			break;
		}
		if (!id[0])
			snprintf(id, sizeof(id), "%s", jstr(r.parameters, "id", ""));
		if (c->json) {
			print_json(r.parameters);
			fflush(stdout);
		} else if (r.continues && !c->quiet) {
			progress_show(c, &pr, r.parameters);
		}
		if (!r.continues)
			break;
		varlink_reply_free(&r);
	}
	close(sigfd);
	if (s)
		return s;
	progress_end(&pr);
	if (!c->json)
		cmd->print(c, a, r.parameters);
	varlink_reply_free(&r);
	return EXIT_OK;
}

/* ---- the table -------------------------------------------------------- */

#define NOPTS(o) o, sizeof(o) / sizeof(o[0])

static const struct option auth_opts[] = {
	{ "password-stdin", no_argument, NULL, OPT_PW_STDIN },
	{ "password-file", required_argument, NULL, OPT_PW_FILE },
};
static const struct option search_opts[] = {
	{ "exact", required_argument, NULL, OPT_EXACT },
	{ "limit", required_argument, NULL, OPT_LIMIT },
	{ "offset", required_argument, NULL, OPT_OFFSET },
};
static const struct option download_opts[] = {
	{ "from", required_argument, NULL, OPT_FROM },
	{ "to", required_argument, NULL, OPT_TO },
	{ "force", no_argument, NULL, OPT_FORCE },
};

#define AUTH_HELP \
	"      --password-stdin     read the password from the first line of standard input\n" \
	"      --password-file FILE read it from the first line of FILE\n"

const struct cmd commands[] = {
	{ "register", "[USER] [--password-stdin | --password-file FILE]", "create an account at the directory",
	  AUTH_HELP, NOPTS(auth_opts), 0, 1, PEER_M_REGISTER, auth_params, print_registered, NULL },
	{ "login", "[USER] [--password-stdin | --password-file FILE]", "log in and share this peer's folder",
	  AUTH_HELP, NOPTS(auth_opts), 0, 1, PEER_M_LOGIN, auth_params, print_logged_in, NULL },
	{ "logout", "", "log out; the files leave search results at once", "",
	  NULL, 0, 0, 0, PEER_M_LOGOUT, NULL, print_logged_out, NULL },
	{ "status", "", "who is logged in, the directory, shared files, transfers", "",
	  NULL, 0, 0, 0, PEER_M_STATUS, NULL, print_status, NULL },
	{ "index", "", "re-scan the shared folder and re-index it now", "",
	  NULL, 0, 0, 0, PEER_M_INDEX, NULL, print_indexed, NULL },
	{ "ls", "", "list the files this peer shares", "",
	  NULL, 0, 0, 0, PEER_M_LIST_SHARED, NULL, print_shared, NULL },
	{ "search", "TEXT | --exact NAME [--limit N] [--offset N]", "find files on online peers",
	  "      --exact NAME  match the whole file name instead of a substring\n"
	  "      --limit N     show at most N results (1-1000, default 50)\n"
	  "      --offset N    skip the first N results\n",
	  NOPTS(search_opts), -1, -1, PEER_M_SEARCH, search_params, print_results, NULL },
	{ "download", "NAME [--from PEER] [--to DIR] [--force]", "fetch a file, verify it and share it",
	  "      --from PEER   read only from this peer\n"
	  "      --to DIR      save into DIR instead of the shared folder\n"
	  "      --force       replace a file of that name with other content (kept otherwise)\n",
	  NOPTS(download_opts), 1, 1, PEER_M_DOWNLOAD, NULL, print_downloaded, cmd_download },
	{ "transfers", "", "list running and recent transfers", "",
	  NULL, 0, 0, 0, PEER_M_TRANSFERS, NULL, print_transfers, NULL },
	{ "cancel", "ID", "stop a running transfer, or forget a paused one", "",
	  NULL, 0, 1, 1, PEER_M_CANCEL, id_params, print_cancelled, NULL },
	{ "pause", "ID", "stop a running transfer, keeping it to resume", "",
	  NULL, 0, 1, 1, PEER_M_PAUSE, id_params, print_paused, NULL },
	{ "resume", "ID", "continue a paused transfer from its partial file", "",
	  NULL, 0, 1, 1, PEER_M_RESUME, id_params, print_resumed, NULL },
	{ "set", "upload-rate RATE | download-rate RATE ...", "change a rate limit now, until the peer restarts",
	  "      RATE          bytes/s with an optional K, M or G (KiB/s etc.); 0 or unlimited: no limit\n",
	  NULL, 0, 2, 4, PEER_M_SET_RATES, set_params, print_rates, NULL },
};

const size_t ncommands = sizeof(commands) / sizeof(commands[0]);

int run_command(struct ctl *c, const struct cmd *cmd, int argc, char **argv)
{
	struct cmd_args a = { .argc = argc, .argv = argv, .limit = 50 };
	struct json_object *params, *pv;
	struct varlink_reply r;
	int s = parse_cmd_opts(c, cmd, argc, argv, cmd->opts, cmd->nopts, cmd_opt, &a);

	if (s >= 0)
		return s - 1;
	if (cmd->min_args >= 0 && !want_args(cmd, argc, argv, cmd->min_args, cmd->max_args))
		return EXIT_USAGE;
	if (cmd->run)
		return cmd->run(c, cmd, &a);
	if (cmd->params) {
		params = json_object_new_object();
		s = cmd->params(cmd, &a, params);
		if (s == EXIT_OK)
			s = call(c, cmd->method, params, &r);
		/* json-c keeps its own copy of a password: wipe it before freeing. */
		if (json_object_object_get_ex(params, "password", &pv))
			explicit_bzero((char *)json_object_get_string(pv), (size_t)json_object_get_string_len(pv));
		json_object_put(params);
	} else {
		s = call(c, cmd->method, NULL, &r);
	}
	if (s)
		return s;
	if (c->json)
		print_json(r.parameters);
	else
		cmd->print(c, &a, r.parameters);
	varlink_reply_free(&r);
	return EXIT_OK;
}

const struct cmd *find_cmd(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

void cmd_usage(FILE *f, const struct cmd *cmd)
{
	fprintf(f, "Usage: p2pctl [-s SOCKET | -p PEER] %s %s\n\n%c%s.\n\nOptions:\n%s"
		"      --json        print JSON for scripts\n"
		"  -q, --quiet       print only what was asked for, or nothing\n"
		"  -h, --help        show this help\n\nSee p2pctl(1).\n",
		cmd->name, cmd->args, cmd->summary[0] - 'a' + 'A', cmd->summary + 1, cmd->options);
}

