/* SPDX-License-Identifier: MIT */
/* commands.c — one function per p2pctl command, the option parsing they
 * share, and the command table with its help texts. */
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
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "p2pctl.h"

/* ---- commands --------------------------------------------------------- */


const struct cmd *find_cmd(const char *name);
void cmd_usage(FILE *f, const struct cmd *cmd);



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

static int print_reply_json(struct varlink_reply *r)
{
	print_json(r->parameters);
	varlink_reply_free(r);
	return EXIT_OK;
}

/* register / login */
static int auth_opt(void *st, int o, const char *arg)
{
	struct pw_opts *pw = st;

	if (o == OPT_PW_STDIN)
		pw->from_stdin = true;
	else if (o == OPT_PW_FILE)
		pw->file = arg;
	else
		return -1;
	return 0;
}

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

static int do_auth(struct ctl *c, const struct cmd *cmd, int argc, char **argv, bool reg)
{
	static const struct option extra[] = {
		{ "password-stdin", no_argument, NULL, OPT_PW_STDIN },
		{ "password-file", required_argument, NULL, OPT_PW_FILE },
	};
	struct pw_opts pw = { 0 };
	char user[USERNAME_MAX + 2], password[PASSWORD_MAX];
	struct json_object *params;
	struct varlink_reply r;
	int s;

	s = parse_cmd_opts(c, cmd, argc, argv, extra, 2, auth_opt, &pw);
	if (s >= 0)
		return s - 1;
	if (!want_args(cmd, argc, argv, 0, 1))
		return EXIT_USAGE;
	if (pw.from_stdin && pw.file) {
		errmsg("%s: give only one of --password-stdin and --password-file", cmd->name);
		return EXIT_USAGE;
	}
	s = get_username(cmd, argc, argv, user, sizeof(user));
	if (s)
		return s;
	s = get_password(&pw, user, reg, password, sizeof(password));
	if (s) {
		explicit_bzero(password, sizeof(password));
		return s;
	}
	params = json_object_new_object();
	json_object_object_add(params, "username", json_object_new_string(user));
	json_object_object_add(params, "password", json_object_new_string(password));
	explicit_bzero(password, sizeof(password));
	s = call(c, reg ? PEER_M_REGISTER : PEER_M_LOGIN, params, &r);
	/* json-c keeps its own copy of the password: wipe it before freeing. */
	{
		struct json_object *pv;

		if (json_object_object_get_ex(params, "password", &pv))
			explicit_bzero((char *)json_object_get_string(pv), (size_t)json_object_get_string_len(pv));
	}
	json_object_put(params);
	if (s)
		return s;
	if (c->json)
		return print_reply_json(&r);
	if (!c->quiet) {
		if (reg)
			printf("Registered %s. Log in with: p2pctl login %s\n", user, user);
		else
			printf("Logged in as %s%s%s.\n", color(c, C_BOLD), jstr(r.parameters, "username", user),
			       color(c, C_RESET));
	}
	varlink_reply_free(&r);
	return EXIT_OK;
}

static int cmd_register(struct ctl *c, int argc, char **argv)
{
	return do_auth(c, find_cmd("register"), argc, argv, true);
}

static int cmd_login(struct ctl *c, int argc, char **argv)
{
	return do_auth(c, find_cmd("login"), argc, argv, false);
}

/* Commands without arguments of their own: one call, a one-line answer. */
static int simple(struct ctl *c, const char *name, const char *method, struct varlink_reply *r,
		  int argc, char **argv)
{
	const struct cmd *cmd = find_cmd(name);
	int s = parse_cmd_opts(c, cmd, argc, argv, NULL, 0, NULL, NULL);

	memset(r, 0, sizeof(*r));
	if (s >= 0)
		return s - 1;
	if (!want_args(cmd, argc, argv, 0, 0))
		return EXIT_USAGE;
	return call(c, method, NULL, r);
}

static int cmd_logout(struct ctl *c, int argc, char **argv)
{
	struct varlink_reply r;
	int s = simple(c, "logout", PEER_M_LOGOUT, &r, argc, argv);

	if (s)
		return s;
	if (c->json)
		return print_reply_json(&r);
	if (!c->quiet)
		puts("Logged out.");
	varlink_reply_free(&r);
	return EXIT_OK;
}

static int cmd_index(struct ctl *c, int argc, char **argv)
{
	struct varlink_reply r;
	int s = simple(c, "index", PEER_M_INDEX, &r, argc, argv);
	int64_t n;

	if (s)
		return s;
	if (c->json)
		return print_reply_json(&r);
	n = jint(r.parameters, "indexed");
	if (!c->quiet)
		printf("Indexed %lld file%s.\n", (long long)n, n == 1 ? "" : "s");
	varlink_reply_free(&r);
	return EXIT_OK;
}

/* "unlimited", or "1.5 MiB/s". */
static void rate_text(int64_t rate, char *out, size_t size)
{
	char h[32];

	if (rate <= 0) {
		snprintf(out, size, "unlimited");
		return;
	}
	human_size((uint64_t)rate, h, sizeof(h));
	snprintf(out, size, "%s/s", h);
}

static int cmd_status(struct ctl *c, int argc, char **argv)
{
	struct varlink_reply r;
	struct json_object *p, *dir = NULL, *adv;
	char size[32];
	int s = simple(c, "status", PEER_M_STATUS, &r, argc, argv);
	const char *state;
	bool in, reach;
	char *t;

	if (s)
		return s;
	if (c->json)
		return print_reply_json(&r);
	p = r.parameters;
	json_object_object_get_ex(p, "directory", &dir);
	in = jbool(p, "logged_in");
	reach = dir && jbool(dir, "reachable");
	human_size((uint64_t)jint(p, "shared_bytes"), size, sizeof(size));
	t = safe_text(jstr(p, "peer", "?"));
	printf("Peer:       %s (p2p-peerd %s)\n", t, jstr(p, "version", "?"));
	free(t);
	t = safe_text(jstr(p, "username", "-"));
	if (in)
		printf("User:       %s (%slogged in%s)\n", t, color(c, C_GREEN), color(c, C_RESET));
	else
		printf("User:       %s (%snot logged in%s)\n", t, color(c, C_YELLOW), color(c, C_RESET));
	free(t);
	t = safe_text(dir ? jstr(dir, "url", "?") : "?");
	/* "not answering": it accepts connections but answers nothing. */
	state = dir && !strcmp(jstr(dir, "state", ""), "not answering") ? "not answering" : "unreachable";
	printf("Directory:  %s (%s%s%s)\n", t, color(c, reach ? C_GREEN : C_RED),
	       reach ? "reachable" : state, color(c, C_RESET));
	free(t);
	t = safe_text(jstr(p, "listen", "?"));
	printf("Listening:  %s\n", t);
	free(t);
	if (json_object_object_get_ex(p, "advertised", &adv) && json_object_is_type(adv, json_type_object)) {
		t = safe_text(jstr(adv, "ip", ""));
		if (*t)
			printf("Advertised: %s%s%s:%lld\n", strchr(t, ':') ? "[" : "", t, strchr(t, ':') ? "]" : "",
			       (long long)jint(adv, "port"));
		else
			printf("Advertised: port %lld (at the address the directory sees)\n", (long long)jint(adv, "port"));
		free(t);
	}
	t = safe_text(jstr(p, "folder", "?"));
	printf("Folder:     %s\n", t);
	free(t);
	printf("Shared:     %lld file%s, %s\n", (long long)jint(p, "shared_files"),
	       jint(p, "shared_files") == 1 ? "" : "s", size);
	printf("Transfers:  %lld active\n", (long long)jint(p, "transfers_active"));
	if (json_object_object_get_ex(p, "bytes_up", NULL)) {
		char up[32], down[32];

		human_size((uint64_t)jint(p, "bytes_up"), up, sizeof(up));
		human_size((uint64_t)jint(p, "bytes_down"), down, sizeof(down));
		printf("Traffic:    %s up, %s down since start\n", up, down);
	}
	if (json_object_object_get_ex(p, "bytes_up_total", NULL)) {
		char up[32], down[32];

		human_size((uint64_t)jint(p, "bytes_up_total"), up, sizeof(up));
		human_size((uint64_t)jint(p, "bytes_down_total"), down, sizeof(down));
		printf("            %s up, %s down in total\n", up, down);
	}
	if (json_object_object_get_ex(p, "upload_rate", NULL)) {
		char up[40], down[40];

		rate_text(jint(p, "upload_rate"), up, sizeof(up));
		rate_text(jint(p, "download_rate"), down, sizeof(down));
		printf("Rates:      up %s, down %s\n", up, down);
	}
	varlink_reply_free(&r);
	return EXIT_OK;
}

static void short_hash(const char *h, char *out, size_t size)
{
	snprintf(out, size, "%.12s", h);
}

static int cmd_ls(struct ctl *c, int argc, char **argv)
{
	struct varlink_reply r;
	struct json_object *files;
	struct table t = { .ncols = 4, .head = { "NAME", "SIZE", "MODIFIED", "SHA256" },
			   .right = { false, true, false, false } };
	uint64_t total = 0;
	size_t n;
	int s = simple(c, "ls", PEER_M_LIST_SHARED, &r, argc, argv);

	if (s)
		return s;
	if (c->json)
		return print_reply_json(&r);
	files = jarray(r.parameters, "files");
	n = files ? json_object_array_length(files) : 0;
	for (size_t i = 0; i < n; i++) {
		struct json_object *f = json_object_array_get_idx(files, i);
		char size[32], when[32] = "-", hash[16];
		time_t mt = (time_t)jint(f, "mtime");
		struct tm tm;

		human_size((uint64_t)jint(f, "size"), size, sizeof(size));
		if (mt > 0 && localtime_r(&mt, &tm))
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
		short_hash(jstr(f, "sha256", "-"), hash, sizeof(hash));
		table_add(&t, jstr(f, "name", "?"), size, when, hash);
		total += (uint64_t)jint(f, "size");
	}
	if (n)
		table_print(c, &t);
	if (!c->quiet) {
		char size[32];

		human_size(total, size, sizeof(size));
		fprintf(n ? stdout : stderr, "%zu file%s shared, %s\n", n, n == 1 ? "" : "s", size);
	}
	varlink_reply_free(&r);
	return EXIT_OK;
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

struct search_st {
	const char *exact;
	long long limit, offset;
};

static int search_opt(void *st, int o, const char *arg)
{
	struct search_st *s = st;

	if (o == OPT_EXACT)
		s->exact = arg;
	else if (o == OPT_LIMIT)
		return parse_number("limit", arg, 1, PEER_SEARCH_LIMIT_MAX, &s->limit) ? 0 : -1;
	else if (o == OPT_OFFSET)
		return parse_number("offset", arg, 0, INT32_MAX, &s->offset) ? 0 : -1;
	else
		return -1;
	return 0;
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

static int cmd_search(struct ctl *c, int argc, char **argv)
{
	static const struct option extra[] = {
		{ "exact", required_argument, NULL, OPT_EXACT },
		{ "limit", required_argument, NULL, OPT_LIMIT },
		{ "offset", required_argument, NULL, OPT_OFFSET },
	};
	const struct cmd *cmd = find_cmd("search");
	struct search_st st = { .limit = 50 };
	struct table t = { .ncols = 5, .head = { "NAME", "SIZE", "PEER", "ADDRESS", "SHA256" },
			   .right = { false, true, false, false, false } };
	struct json_object *params, *results;
	struct varlink_reply r;
	size_t n;
	int s;

	s = parse_cmd_opts(c, cmd, argc, argv, extra, 3, search_opt, &st);
	if (s >= 0)
		return s - 1;
	if (!want_args(cmd, argc, argv, st.exact ? 0 : 1, st.exact ? 0 : 1))
		return EXIT_USAGE;
	params = json_object_new_object();
	if (st.exact) {
		if (!check_filename("file name", st.exact)) {
			json_object_put(params);
			return EXIT_USAGE;
		}
		json_object_object_add(params, "exact", json_object_new_string(st.exact));
	} else {
		const char *q = argv[optind];

		if (!*q || strlen(q) > FILENAME_MAX_BYTES || !valid_utf8(q, strlen(q))) {
			errmsg("search: the text must be 1 to 255 bytes of UTF-8");
			json_object_put(params);
			return EXIT_USAGE;
		}
		json_object_object_add(params, "query", json_object_new_string(q));
	}
	json_object_object_add(params, "limit", json_object_new_int64(st.limit));
	if (st.offset)
		json_object_object_add(params, "offset", json_object_new_int64(st.offset));
	s = call(c, PEER_M_SEARCH, params, &r);
	json_object_put(params);
	if (s)
		return s;
	if (c->json)
		return print_reply_json(&r);
	results = jarray(r.parameters, "results");
	n = results ? json_object_array_length(results) : 0;
	for (size_t i = 0; i < n; i++) {
		struct json_object *f = json_object_array_get_idx(results, i);
		char size[32], addr[300], hash[16];

		human_size((uint64_t)jint(f, "size"), size, sizeof(size));
		snprintf(addr, sizeof(addr), "%s:%lld", jstr(f, "ip", "?"), (long long)jint(f, "port"));
		short_hash(jstr(f, "sha256", "-"), hash, sizeof(hash));
		table_add(&t, jstr(f, "name", "?"), size, jstr(f, "peer", "?"), addr, hash);
	}
	if (n)
		table_print(c, &t);
	if (!c->quiet) {
		long long total = (long long)jint(r.parameters, "total");

		if (n == 0)
			fprintf(stderr, "No online peer shares a matching file.\n");
		else if ((long long)n + st.offset < total)
			printf("%zu of %lld results shown; see more with --offset %lld or --limit\n", n, total,
			       st.offset + (long long)n);
	}
	varlink_reply_free(&r);
	return EXIT_OK;
}

/* Download progress: a bar on a terminal, a line a second otherwise. */
struct progress {
	bool tty;
	bool drawn;
	int64_t last_ms;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void progress_show(const struct ctl *c, struct progress *pr, struct json_object *p)
{
	uint64_t size = (uint64_t)jint(p, "size"), got = (uint64_t)jint(p, "received");
	double rate = jdouble(p, "rate");
	int64_t sources = jint(p, "sources");
	char hs[32], hg[32], hr[32], eta[32] = "?";
	int pct = size ? (int)(got * 100 / size) : 0;
	char *name = safe_text(jstr(p, "name", "?"));

	if (pct > 100)
		pct = 100;
	human_size(size, hs, sizeof(hs));
	human_size(got, hg, sizeof(hg));
	human_size((uint64_t)rate, hr, sizeof(hr));
	if (rate > 0 && size >= got)
		human_duration((double)(size - got) / rate, eta, sizeof(eta));
	if (pr->tty) {
		struct winsize ws;
		int cols = 80, barw;
		char bar[128];

		if (ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
			cols = ws.ws_col;
		barw = cols - 70;
		if (barw > 50)
			barw = 50;
		if (barw < 10)
			barw = 10;
		for (int i = 0; i < barw; i++)
			bar[i] = i < pct * barw / 100 ? '#' : '-';
		bar[barw] = '\0';
		if (text_width(name) > 24) {
			/* keep the end of a long name, where the extension is */
			size_t skip = text_width(name) - 23, i = 0;

			while (skip && name[i]) {
				i++;
				while (((unsigned char)name[i] & 0xc0) == 0x80)
					i++;
				skip--;
			}
			memmove(name + 1, name + i, strlen(name + i) + 1);
			name[0] = '~';
		}
		fprintf(stderr, "\r\033[K%s [%s%s%s] %3d%% %s/%s %s/s ETA %s, %lld source%s", name,
			color(c, C_GREEN), bar, color(c, C_RESET), pct, hg, hs, hr, eta,
			(long long)sources, sources == 1 ? "" : "s");
		pr->drawn = true;
	} else {
		int64_t now = mono_ms();

		if (pr->last_ms && now - pr->last_ms < 1000) {
			free(name);
			return;
		}
		pr->last_ms = now;
		fprintf(stderr, "%s: %d%%, %s of %s, %s/s, ETA %s, %lld source%s\n", name, pct, hg, hs, hr, eta,
			(long long)sources, sources == 1 ? "" : "s");
	}
	fflush(stderr);
	free(name);
}

static void progress_end(struct progress *pr)
{
	if (pr->drawn)
		fputs("\r\033[K", stderr);
	pr->drawn = false;
}

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

struct download_st {
	const char *from, *to;
	bool force; /* replace an existing file of other content */
};

static int download_opt(void *st, int o, const char *arg)
{
	struct download_st *d = st;

	if (o == OPT_FROM)
		d->from = arg;
	else if (o == OPT_TO)
		d->to = arg;
	else if (o == OPT_FORCE)
		d->force = true;
	else
		return -1;
	return 0;
}

static int cmd_download(struct ctl *c, int argc, char **argv)
{
	static const struct option extra[] = {
		{ "from", required_argument, NULL, OPT_FROM },
		{ "to", required_argument, NULL, OPT_TO },
		{ "force", no_argument, NULL, OPT_FORCE },
	};
	const struct cmd *cmd = find_cmd("download");
	struct download_st st = { 0 };
	struct progress pr = { .tty = isatty(2) == 1 };
	struct json_object *params;
	struct varlink_reply r;
	char to[PATH_MAX], id[65] = "";
	sigset_t sigs;
	int s, e, sigfd;

	s = parse_cmd_opts(c, cmd, argc, argv, extra, 3, download_opt, &st);
	if (s >= 0)
		return s - 1;
	if (!want_args(cmd, argc, argv, 1, 1) || !check_filename("file name", argv[optind]))
		return EXIT_USAGE;
	if (st.from && !valid_username(st.from)) {
		errmsg("download: invalid peer name for --from: use 1 to 64 of A-Z a-z 0-9 . _ -");
		return EXIT_USAGE;
	}
	if (st.to) {
		struct stat sb;

		/* peerd wants an absolute directory: resolve it here, where the
		 * user's working directory is known. */
		if (!realpath(st.to, to) || stat(to, &sb) < 0) {
			errmsg("download: cannot use --to %s: %s", st.to, strerror(errno));
			return EXIT_USAGE;
		}
		if (!S_ISDIR(sb.st_mode)) {
			errmsg("download: --to %s is not a directory", st.to);
			return EXIT_USAGE;
		}
	}
	params = json_object_new_object();
	json_object_object_add(params, "name", json_object_new_string(argv[optind]));
	if (st.from)
		json_object_object_add(params, "from", json_object_new_string(st.from));
	if (st.to)
		json_object_object_add(params, "to", json_object_new_string(to));
	if (st.force)
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
	if (!c->json && !c->quiet) {
		char size[32], rate[32], secs[32];
		double sec = jdouble(r.parameters, "seconds");
		char *path = safe_text(jstr(r.parameters, "path", "?"));

		human_size((uint64_t)jint(r.parameters, "size"), size, sizeof(size));
		human_size(sec > 0 ? (uint64_t)((double)jint(r.parameters, "size") / sec) : 0, rate, sizeof(rate));
		human_duration(sec, secs, sizeof(secs));
		printf("Downloaded %s (%s in %s, %s/s), SHA-256 verified.\n", path, size, secs, rate);
		free(path);
	}
	varlink_reply_free(&r);
	return EXIT_OK;
}

static int cmd_transfers(struct ctl *c, int argc, char **argv)
{
	struct varlink_reply r;
	struct json_object *list;
	struct table t = { .ncols = 7, .head = { "ID", "NAME", "STATE", "DONE", "SIZE", "RATE", "SOURCES" },
			   .right = { false, false, false, true, true, true, true } };
	size_t n;
	int s = simple(c, "transfers", PEER_M_TRANSFERS, &r, argc, argv);

	if (s)
		return s;
	if (c->json)
		return print_reply_json(&r);
	list = jarray(r.parameters, "transfers");
	n = list ? json_object_array_length(list) : 0;
	for (size_t i = 0; i < n; i++) {
		struct json_object *f = json_object_array_get_idx(list, i);
		uint64_t size = (uint64_t)jint(f, "size"), got = (uint64_t)jint(f, "received");
		char hs[32], hr[40], pct[16], src[16];

		human_size(size, hs, sizeof(hs));
		human_size((uint64_t)jdouble(f, "rate"), hr, sizeof(hr) - 2);
		strcat(hr, "/s");
		snprintf(pct, sizeof(pct), "%d%%", size ? (int)(got * 100 / size) : 0);
		snprintf(src, sizeof(src), "%lld", (long long)jint(f, "sources"));
		table_add(&t, jstr(f, "id", "?"), jstr(f, "name", "?"), jstr(f, "state", "?"), pct, hs, hr, src);
	}
	if (n)
		table_print(c, &t);
	else if (!c->quiet)
		fprintf(stderr, "No transfers.\n");
	varlink_reply_free(&r);
	return EXIT_OK;
}

static int cmd_cancel(struct ctl *c, int argc, char **argv)
{
	const struct cmd *cmd = find_cmd("cancel");
	struct json_object *params;
	struct varlink_reply r;
	const char *id;
	int s = parse_cmd_opts(c, cmd, argc, argv, NULL, 0, NULL, NULL);

	if (s >= 0)
		return s - 1;
	if (!want_args(cmd, argc, argv, 1, 1))
		return EXIT_USAGE;
	id = argv[optind];
	if (!*id || strlen(id) > 64 || strspn(id, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_") != strlen(id)) {
		errmsg("cancel: invalid transfer id; see the IDs with 'p2pctl transfers'");
		return EXIT_USAGE;
	}
	params = json_object_new_object();
	json_object_object_add(params, "id", json_object_new_string(id));
	s = call(c, PEER_M_CANCEL, params, &r);
	json_object_put(params);
	if (s)
		return s;
	if (c->json)
		return print_reply_json(&r);
	if (!c->quiet)
		printf("Cancelled transfer %s.\n", id);
	varlink_reply_free(&r);
	return EXIT_OK;
}

/* pause / resume ID: one call, one line. */
static int pause_resume(struct ctl *c, int argc, char **argv, bool pause)
{
	const struct cmd *cmd = find_cmd(pause ? "pause" : "resume");
	struct json_object *params;
	struct varlink_reply r;
	const char *id;
	int s = parse_cmd_opts(c, cmd, argc, argv, NULL, 0, NULL, NULL);

	if (s >= 0)
		return s - 1;
	if (!want_args(cmd, argc, argv, 1, 1))
		return EXIT_USAGE;
	id = argv[optind];
	if (!*id || strlen(id) > 64 || strspn(id, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_") != strlen(id)) {
		errmsg("%s: invalid transfer id; see the IDs with 'p2pctl transfers'", cmd->name);
		return EXIT_USAGE;
	}
	params = json_object_new_object();
	json_object_object_add(params, "id", json_object_new_string(id));
	s = call(c, pause ? PEER_M_PAUSE : PEER_M_RESUME, params, &r);
	json_object_put(params);
	if (s)
		return s;
	if (c->json)
		return print_reply_json(&r);
	if (!c->quiet)
		printf(pause ? "Paused transfer %s; resume it with 'p2pctl resume %s'.\n" : "Resumed transfer %s.\n", id,
		       id);
	varlink_reply_free(&r);
	return EXIT_OK;
}

static int cmd_pause(struct ctl *c, int argc, char **argv)
{
	return pause_resume(c, argc, argv, true);
}

static int cmd_resume(struct ctl *c, int argc, char **argv)
{
	return pause_resume(c, argc, argv, false);
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

/* set upload-rate N [download-rate N]: SetRates, then the rates in force. */
static int cmd_set(struct ctl *c, int argc, char **argv)
{
	const struct cmd *cmd = find_cmd("set");
	struct json_object *params;
	struct varlink_reply r;
	char up[40], down[40];
	int s = parse_cmd_opts(c, cmd, argc, argv, NULL, 0, NULL, NULL);

	if (s >= 0)
		return s - 1;
	if (!want_args(cmd, argc, argv, 2, 4))
		return EXIT_USAGE;
	if ((argc - optind) % 2) {
		errmsg("%s: '%s' needs a value; usage: p2pctl set %s", cmd->name, argv[argc - 1], cmd->args);
		return EXIT_USAGE;
	}
	params = json_object_new_object();
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
			json_object_put(params);
			return EXIT_USAGE;
		}
		json_object_object_add(params, key, json_object_new_int64(v));
	}
	s = call(c, PEER_M_SET_RATES, params, &r);
	json_object_put(params);
	if (s)
		return s;
	if (c->json)
		return print_reply_json(&r);
	if (!c->quiet) {
		rate_text(jint(r.parameters, "upload_rate"), up, sizeof(up));
		rate_text(jint(r.parameters, "download_rate"), down, sizeof(down));
		printf("Upload rate: %s; download rate: %s (until the peer restarts).\n", up, down);
	}
	varlink_reply_free(&r);
	return EXIT_OK;
}

const struct cmd commands[] = {
	{ "register", "[USER] [--password-stdin | --password-file FILE]", "create an account at the directory",
	  "      --password-stdin     read the password from the first line of standard input\n"
	  "      --password-file FILE read it from the first line of FILE\n", cmd_register },
	{ "login", "[USER] [--password-stdin | --password-file FILE]", "log in and share this peer's folder",
	  "      --password-stdin     read the password from the first line of standard input\n"
	  "      --password-file FILE read it from the first line of FILE\n", cmd_login },
	{ "logout", "", "log out; the files leave search results at once", "", cmd_logout },
	{ "status", "", "who is logged in, the directory, shared files, transfers", "", cmd_status },
	{ "index", "", "re-scan the shared folder and re-index it now", "", cmd_index },
	{ "ls", "", "list the files this peer shares", "", cmd_ls },
	{ "search", "TEXT | --exact NAME [--limit N] [--offset N]", "find files on online peers",
	  "      --exact NAME  match the whole file name instead of a substring\n"
	  "      --limit N     show at most N results (1-1000, default 50)\n"
	  "      --offset N    skip the first N results\n", cmd_search },
	{ "download", "NAME [--from PEER] [--to DIR] [--force]", "fetch a file, verify it and share it",
	  "      --from PEER   read only from this peer\n"
	  "      --to DIR      save into DIR instead of the shared folder\n"
	  "      --force       replace a file of that name with other content (kept otherwise)\n", cmd_download },
	{ "transfers", "", "list running and recent transfers", "", cmd_transfers },
	{ "cancel", "ID", "stop a running transfer, or forget a paused one", "", cmd_cancel },
	{ "pause", "ID", "stop a running transfer, keeping it to resume", "", cmd_pause },
	{ "resume", "ID", "continue a paused transfer from its partial file", "", cmd_resume },
	{ "set", "upload-rate RATE | download-rate RATE ...", "change a rate limit now, until the peer restarts",
	  "      RATE          bytes/s with an optional K, M or G (KiB/s etc.); 0 or unlimited: no limit\n",
	  cmd_set },
};

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


const size_t ncommands = sizeof(commands) / sizeof(commands[0]);
