/* p2pctl — drive one p2p-peerd over its control socket (docs/CONTROL.md).
 *
 * One call per command: parse the command line, connect, send one varlink
 * call, print the reply as a table (terminal), plain text or JSON (--json).
 * Every failure maps to one documented exit status and one message that
 * names the cause and the fix.
 */
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

#include "validate.h"
#include "varlink.h"

/* Exit statuses: documented in p2pctl(1); never renumber. */
enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,
	EXIT_USAGE = 2,
	EXIT_NOT_LOGGED_IN = 3,
	EXIT_NOT_FOUND = 4,
	EXIT_UNREACHABLE = 5,
	EXIT_VERIFICATION = 6,
};

#define DEFAULT_TIMEOUT_S 30
#define SLOW_TIMEOUT_S 600
#define PASSWORD_MAX 1024
#define RUNDIR RUNSTATEDIR "/p2p"

struct ctl {
	const char *socket;   /* resolved socket path */
	char *socket_owned;
	char peer[USERNAME_MAX + 1]; /* for messages: the NAME in p2p-peerd@NAME */
	int timeout_ms;
	bool timeout_set;     /* --timeout given */
	bool json;
	bool quiet;
	bool color;
	bool tty_out;         /* stdout is a terminal */
	struct varlink_conn *conn;
};

static const char *prog = "p2pctl";

static void errmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errmsg(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ---- output helpers --------------------------------------------------- */

static const char *color(const struct ctl *c, const char *code)
{
	return c->color ? code : "";
}
#define C_RESET "\033[0m"
#define C_BOLD  "\033[1m"
#define C_GREEN "\033[32m"
#define C_RED   "\033[31m"
#define C_YELLOW "\033[33m"

static void human_size(uint64_t n, char *out, size_t outlen)
{
	static const char *units[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)n;
	int u = -1;

	if (n < 1024) {
		snprintf(out, outlen, "%llu B", (unsigned long long)n);
		return;
	}
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(out, outlen, v < 10 ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void human_duration(double s, char *out, size_t outlen)
{
	unsigned long long t = s < 0 ? 0 : (unsigned long long)(s + 0.5);

	if (t >= 3600)
		snprintf(out, outlen, "%lluh%02llum", t / 3600, t / 60 % 60);
	else if (t >= 60)
		snprintf(out, outlen, "%llum%02llus", t / 60, t % 60);
	else
		snprintf(out, outlen, "%llus", t);
}

/* Text from the network made safe for a terminal: control characters and
 * invalid UTF-8 become '?'. Returns a malloc'd copy. */
static char *safe_text(const char *s)
{
	size_t n = strlen(s);
	char *o = malloc(n + 1);

	if (!o)
		abort();
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		o[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
	}
	o[n] = '\0';
	if (!valid_utf8(o, n))
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)o[i] >= 0x80)
				o[i] = '?';
	return o;
}

/* Columns a UTF-8 string takes (one per code point: good enough for names). */
static size_t text_width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

/* A table: rows of cells, printed with aligned columns. right[] marks
 * right-aligned (numeric) columns. */
#define TABLE_MAX_COLS 8
struct table {
	size_t ncols, nrows, cap;
	const char *head[TABLE_MAX_COLS];
	bool right[TABLE_MAX_COLS];
	char **cells; /* nrows * ncols, owned */
};

static void table_add(struct table *t, ...)
{
	va_list ap;

	if (t->nrows == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		t->cells = realloc(t->cells, t->cap * t->ncols * sizeof(char *));
		if (!t->cells)
			abort();
	}
	va_start(ap, t);
	for (size_t i = 0; i < t->ncols; i++)
		t->cells[t->nrows * t->ncols + i] = safe_text(va_arg(ap, const char *));
	va_end(ap);
	t->nrows++;
}

static void table_print(const struct ctl *c, struct table *t)
{
	size_t w[TABLE_MAX_COLS];

	for (size_t i = 0; i < t->ncols; i++) {
		w[i] = text_width(t->head[i]);
		for (size_t r = 0; r < t->nrows; r++) {
			size_t x = text_width(t->cells[r * t->ncols + i]);

			if (x > w[i])
				w[i] = x;
		}
	}
	for (size_t r = 0; r <= t->nrows; r++) {
		bool head = r == 0;

		if (head && c->quiet)
			continue;
		if (head)
			fputs(color(c, C_BOLD), stdout);
		for (size_t i = 0; i < t->ncols; i++) {
			const char *s = head ? t->head[i] : t->cells[(r - 1) * t->ncols + i];
			size_t pad = w[i] - text_width(s);
			bool last = i + 1 == t->ncols;

			if (t->right[i])
				printf("%*s%s", (int)pad, "", s);
			else
				printf("%s%*s", s, last ? 0 : (int)pad, "");
			if (!last)
				fputs("  ", stdout);
		}
		if (head)
			fputs(color(c, C_RESET), stdout);
		fputc('\n', stdout);
	}
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->nrows = t->cap = 0;
}

static void print_json(struct json_object *o)
{
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* Field accessors that tolerate a missing or mistyped field. */
static const char *jstr(struct json_object *o, const char *key, const char *dflt)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return dflt;
	return json_object_get_string(v);
}

static int64_t jint(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	return json_object_get_int64(v);
}

static double jdouble(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	return json_object_get_double(v);
}

static bool jbool(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

static struct json_object *jarray(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_array))
		return NULL;
	return v;
}

/* ---- talking to peerd ------------------------------------------------- */

/* "cannot reach peerd at PATH: ..." with the systemd hint. */
static int unreachable(const struct ctl *c, int err)
{
	const char *p = c->peer[0] ? c->peer : "NAME";

	switch (err) {
	case -ENOENT:
	case -ECONNREFUSED:
		errmsg("cannot reach peerd at %s: %s; is p2p-peerd@%s running? systemctl start p2p-peerd@%s",
		       c->socket, strerror(-err), p, p);
		break;
	case -EACCES:
	case -EPERM:
		errmsg("cannot reach peerd at %s: %s; join the group p2p (usermod -aG p2p $USER, then log in again) or use sudo",
		       c->socket, strerror(-err));
		break;
	case -ETIMEDOUT:
		errmsg("peerd at %s did not answer within %d s: is it stuck? see journalctl -u p2p-peerd@%s, or raise --timeout",
		       c->socket, c->timeout_ms / 1000, p);
		break;
	case -ECONNRESET:
	case -EPIPE:
		errmsg("peerd at %s closed the connection: see journalctl -u p2p-peerd@%s", c->socket, p);
		break;
	default:
		errmsg("cannot reach peerd at %s: %s", c->socket, strerror(-err));
		break;
	}
	return EXIT_UNREACHABLE;
}

static int ctl_connect(struct ctl *c)
{
	int r = varlink_connect(c->socket, c->timeout_ms, &c->conn);

	if (r == -ENAMETOOLONG) {
		errmsg("socket path %s is too long for a UNIX socket (at most 107 bytes)", c->socket);
		return EXIT_USAGE;
	}
	return r < 0 ? unreachable(c, r) : EXIT_OK;
}

/* Explain a varlink error reply: message on stderr (and a JSON document on
 * stdout with --json); returns the exit status. */
static int explain_error(const struct ctl *c, const char *method, struct varlink_reply *r)
{
	struct json_object *p = r->parameters;
	const char *e = r->error;
	const char *peer = c->peer[0] ? c->peer : "NAME";
	int status = EXIT_FAIL;

	if (c->json) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "error", json_object_new_string(e));
		json_object_object_add(o, "parameters", json_object_get(p));
		print_json(o);
		json_object_put(o);
	}
	if (!strcmp(e, "io.p2p.Peer.NotLoggedIn")) {
		errmsg("not logged in: run 'p2pctl login USER' first");
		status = EXIT_NOT_LOGGED_IN;
	} else if (!strcmp(e, "io.p2p.Peer.AuthenticationFailed")) {
		errmsg("login failed: wrong user name or password (%s); register first with 'p2pctl register USER'",
		       jstr(p, "message", "rejected by the directory"));
	} else if (!strcmp(e, "io.p2p.Peer.UserExists")) {
		errmsg("user %s already exists at the directory: choose another name, or log in with 'p2pctl login %s'",
		       jstr(p, "username", "?"), jstr(p, "username", "USER"));
	} else if (!strcmp(e, "io.p2p.Peer.RegistrationClosed")) {
		errmsg("the directory does not accept new users: ask its operator for an account");
	} else if (!strcmp(e, "io.p2p.Peer.RateLimited")) {
		errmsg("the directory is limiting requests: try again in %lld s", (long long)jint(p, "retry_after"));
	} else if (!strcmp(e, "io.p2p.Peer.DirectoryUnreachable")) {
		errmsg("peerd cannot reach the directory at %s: %s; is p2p-dird running there? check \"directory\" in /etc/p2p/peers/%s.json",
		       jstr(p, "url", "?"), jstr(p, "message", "no answer"), peer);
	} else if (!strcmp(e, "io.p2p.Peer.NotFound")) {
		if (!strcmp(method, "io.p2p.Peer.Cancel"))
			errmsg("no running transfer %s: see 'p2pctl transfers'", jstr(p, "id", jstr(p, "name", "?")));
		else
			errmsg("no online peer shares %s: check the exact name with 'p2pctl search'", jstr(p, "name", "that file"));
		status = EXIT_NOT_FOUND;
	} else if (!strcmp(e, "io.p2p.Peer.VerificationFailed")) {
		errmsg("%s failed verification: %s; nothing was saved under its name",
		       jstr(p, "name", "the file"), jstr(p, "message", "size or SHA-256 mismatch"));
		status = EXIT_VERIFICATION;
	} else if (!strcmp(e, "io.p2p.Peer.FileExists")) {
		errmsg("%s", jstr(p, "message", "a file of that name exists; it is kept (use --force to replace it)"));
	} else if (!strcmp(e, "io.p2p.Peer.TransferFailed")) {
		/* issue 14: peerd says whether trying again can help ("retry"). */
		struct json_object *retry = NULL;
		bool again = !json_object_object_get_ex(p, "retry", &retry) || json_object_get_boolean(retry);

		errmsg("download of %s failed after %lld bytes: %s%s", jstr(p, "name", "the file"),
		       (long long)jint(p, "received"), jstr(p, "message", "no source could complete it"),
		       again ? "; run the same command again to resume" : "");
	} else if (!strcmp(e, "io.p2p.Peer.Cancelled")) {
		errmsg("transfer %s was cancelled", jstr(p, "id", "?"));
	} else if (!strcmp(e, "io.p2p.Peer.PermissionDenied")) {
		errmsg("peerd refused this user: join the group p2p (usermod -aG p2p $USER, then log in again) or use sudo");
	} else if (!strcmp(e, "org.varlink.service.MethodNotFound")) {
		errmsg("peerd does not know %s: are p2pctl %s and p2p-peerd the same version?",
		       jstr(p, "method", method), PACKAGE_VERSION);
	} else if (!strcmp(e, "org.varlink.service.InvalidParameter")) {
		errmsg("peerd refused the parameter \"%s\" of %s: check the value given", jstr(p, "parameter", "?"), method);
		status = EXIT_USAGE;
	} else {
		errmsg("peerd answered %s: %s", e,
		       json_object_to_json_string_ext(p, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	}
	return status;
}

/* Turn what varlink_receive() returned into an exit status, printing why on
 * failure. A varlink error is explained and freed. */
static int received(struct ctl *c, const char *method, int e, struct varlink_reply *r,
		    enum varlink_fault fault)
{
	if (e == -EBADMSG || e == -EMSGSIZE || e == -EILSEQ) {
		errmsg("peerd at %s sent a malformed reply (%s): are p2pctl and p2p-peerd the same version?",
		       c->socket, varlink_fault_str(fault));
		return EXIT_FAIL;
	}
	if (e < 0)
		return unreachable(c, e);
	if (r->error) {
		int s = explain_error(c, method, r);

		varlink_reply_free(r);
		return s;
	}
	return EXIT_OK;
}

/* Receive one reply; on failure print why and return the exit status
 * (> 0). A varlink error is returned as EXIT_* too, already explained. */
static int receive(struct ctl *c, const char *method, int timeout_ms, struct varlink_reply *r)
{
	enum varlink_fault fault;
	int e = varlink_receive(c->conn, timeout_ms, r, &fault);

	return received(c, method, e, r, fault);
}

/* Connect, send one call, wait for its single reply. */
static int call(struct ctl *c, const char *method, struct json_object *params, struct varlink_reply *r)
{
	int s, e;

	memset(r, 0, sizeof(*r));
	s = ctl_connect(c);
	if (s)
		return s;
	e = varlink_send_call(c->conn, method, params, 0, c->timeout_ms);
	if (e < 0)
		return unreachable(c, e);
	/* Login and Index hash the whole folder: allow them minutes unless the
	 * user chose a limit. */
	if (!c->timeout_set && (!strcmp(method, "io.p2p.Peer.Login") || !strcmp(method, "io.p2p.Peer.Index")))
		return receive(c, method, SLOW_TIMEOUT_S * 1000, r);
	return receive(c, method, c->timeout_ms, r);
}

/* ---- passwords -------------------------------------------------------- */

/* The first line of fd, without its line ending. */
static int read_line_fd(int fd, char *buf, size_t size)
{
	size_t n = 0;

	for (;;) {
		char ch;
		ssize_t k = read(fd, &ch, 1);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0 || ch == '\n')
			break;
		if (ch == '\x03' || ch == '\x04')
			return -ECANCELED; /* ^C / ^D typed with ISIG off */
		if (n + 1 >= size)
			return -E2BIG;
		buf[n++] = ch;
	}
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	return (int)n;
}

/* A line typed with echo and line editing off: we do the editing (erase,
 * kill) and see ^C and ^D ourselves, so the terminal is always restored. */
static int read_secret(int fd, char *buf, size_t size)
{
	size_t n = 0;

	for (;;) {
		unsigned char ch;
		ssize_t k = read(fd, &ch, 1);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0 || ch == '\n' || ch == '\r')
			break;
		if (ch == 0x03 || (ch == 0x04 && n == 0))
			return -ECANCELED;
		if (ch == 0x7f || ch == 0x08) {
			if (n > 0)
				n--;
			continue;
		}
		if (ch == 0x15) { /* ^U */
			n = 0;
			continue;
		}
		if (n + 1 >= size)
			return -E2BIG;
		buf[n++] = (char)ch;
	}
	buf[n] = '\0';
	return (int)n;
}

/* Prompt on the controlling terminal; without echo for passwords. */
static int prompt_tty(const char *prompt, char *buf, size_t size, bool echo)
{
	struct termios old, quiet;
	int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
	int r;

	if (fd < 0)
		return -ENOTTY;
	if (tcgetattr(fd, &old) < 0) {
		close(fd);
		return -ENOTTY;
	}
	if (echo) {
		if (write(fd, prompt, strlen(prompt)) < 0) {
			close(fd);
			return -ENOTTY;
		}
		r = read_line_fd(fd, buf, size);
		close(fd);
		return r;
	}
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ICANON | ISIG);
	quiet.c_cc[VMIN] = 1;
	quiet.c_cc[VTIME] = 0;
	/* Echo goes off (dropping anything typed ahead) before the prompt
	 * shows, so nothing typed after it can be flushed or echoed. */
	if (tcsetattr(fd, TCSAFLUSH, &quiet) < 0 || write(fd, prompt, strlen(prompt)) < 0) {
		tcsetattr(fd, TCSANOW, &old);
		close(fd);
		return -ENOTTY;
	}
	r = read_secret(fd, buf, size);
	tcsetattr(fd, TCSANOW, &old);
	if (write(fd, "\n", 1) < 0 && r >= 0)
		r = -errno;
	close(fd);
	return r;
}

struct pw_opts {
	bool from_stdin;
	const char *file;
};

/* The password from --password-stdin, --password-file or the terminal.
 * Returns 0 or an exit status, with the message printed. */
static int get_password(const struct pw_opts *o, const char *user, bool twice, char *pw, size_t size)
{
	int r;

	if (o->from_stdin) {
		r = read_line_fd(0, pw, size);
	} else if (o->file) {
		int fd = open(o->file, O_RDONLY | O_CLOEXEC);

		if (fd < 0) {
			errmsg("cannot read the password file %s: %s", o->file, strerror(errno));
			return EXIT_USAGE;
		}
		r = read_line_fd(fd, pw, size);
		close(fd);
	} else {
		char prompt[128], again[PASSWORD_MAX];

		snprintf(prompt, sizeof(prompt), "Password for %s: ", user);
		r = prompt_tty(prompt, pw, size, false);
		if (r == -ENOTTY) {
			errmsg("no terminal to ask the password on: use --password-stdin or --password-file FILE");
			return EXIT_USAGE;
		}
		if (r >= 0 && twice) {
			int r2 = prompt_tty("Repeat password: ", again, sizeof(again), false);

			if (r2 < 0) {
				r = r2;
			} else if (strcmp(pw, again) != 0) {
				explicit_bzero(again, sizeof(again));
				errmsg("the passwords do not match: nothing was changed");
				return EXIT_USAGE;
			}
			explicit_bzero(again, sizeof(again));
		}
	}
	if (r == -ECANCELED) {
		errmsg("cancelled");
		return EXIT_FAIL;
	}
	if (r == -E2BIG) {
		errmsg("the password is longer than %d bytes", PASSWORD_MAX - 1);
		return EXIT_USAGE;
	}
	if (r < 0) {
		errmsg("cannot read the password: %s", strerror(-r));
		return EXIT_FAIL;
	}
	if (r == 0) {
		errmsg("the password is empty");
		return EXIT_USAGE;
	}
	if (!valid_utf8(pw, (size_t)r)) {
		errmsg("the password is not valid UTF-8");
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

/* ---- commands --------------------------------------------------------- */

struct cmd {
	const char *name;
	const char *args;
	const char *summary;
	const char *options; /* help text for the command's own options */
	int (*run)(struct ctl *c, int argc, char **argv);
};

static const struct cmd *find_cmd(const char *name);
static void cmd_usage(FILE *f, const struct cmd *cmd);

/* Common options every command takes after its name. */
enum { OPT_JSON = 1000, OPT_PW_STDIN, OPT_PW_FILE, OPT_EXACT, OPT_LIMIT, OPT_OFFSET,
       OPT_FROM, OPT_TO, OPT_FORCE };

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
	s = call(c, reg ? "io.p2p.Peer.Register" : "io.p2p.Peer.Login", params, &r);
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
	int s = simple(c, "logout", "io.p2p.Peer.Logout", &r, argc, argv);

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
	int s = simple(c, "index", "io.p2p.Peer.Index", &r, argc, argv);
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

static int cmd_status(struct ctl *c, int argc, char **argv)
{
	struct varlink_reply r;
	struct json_object *p, *dir = NULL;
	char size[32];
	int s = simple(c, "status", "io.p2p.Peer.Status", &r, argc, argv);
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
	printf("Directory:  %s (%s%s%s)\n", t, color(c, reach ? C_GREEN : C_RED),
	       reach ? "reachable" : "unreachable", color(c, C_RESET));
	free(t);
	t = safe_text(jstr(p, "listen", "?"));
	printf("Listening:  %s\n", t);
	free(t);
	t = safe_text(jstr(p, "folder", "?"));
	printf("Folder:     %s\n", t);
	free(t);
	printf("Shared:     %lld file%s, %s\n", (long long)jint(p, "shared_files"),
	       jint(p, "shared_files") == 1 ? "" : "s", size);
	printf("Transfers:  %lld active\n", (long long)jint(p, "transfers_active"));
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
	int s = simple(c, "ls", "io.p2p.Peer.ListShared", &r, argc, argv);

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
static bool parse_number(const char *opt, const char *arg, long long min, long long max, long long *out)
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
		return parse_number("limit", arg, 1, 1000, &s->limit) ? 0 : -1;
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
	s = call(c, "io.p2p.Peer.Search", params, &r);
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
		if (varlink_send_call(conn, "io.p2p.Peer.Cancel", params, 0, 2000) == 0 &&
		    varlink_receive(conn, 5000, &r, &fault) == 0) {
			ok = !r.error || !strcmp(r.error, "io.p2p.Peer.NotFound");
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
	bool force; /* issue 14: replace an existing file of other content */
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
	e = varlink_send_call(c->conn, "io.p2p.Peer.Download", params, VARLINK_CALL_MORE, c->timeout_ms);
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
		s = received(c, "io.p2p.Peer.Download", e, &r, fault);
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
	int s = simple(c, "transfers", "io.p2p.Peer.Transfers", &r, argc, argv);

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
	s = call(c, "io.p2p.Peer.Cancel", params, &r);
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

static const struct cmd commands[] = {
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
	{ "cancel", "ID", "stop a running transfer", "", cmd_cancel },
};

static const struct cmd *find_cmd(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

static void cmd_usage(FILE *f, const struct cmd *cmd)
{
	fprintf(f, "Usage: p2pctl [-s SOCKET | -p PEER] %s %s\n\n%c%s.\n\nOptions:\n%s"
		"      --json        print JSON for scripts\n"
		"  -q, --quiet       print only what was asked for, or nothing\n"
		"  -h, --help        show this help\n\nSee p2pctl(1).\n",
		cmd->name, cmd->args, cmd->summary[0] - 'a' + 'A', cmd->summary + 1, cmd->options);
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: p2pctl [OPTIONS] COMMAND [ARGS]\n\n"
		"Drive a p2p-peerd through its control socket.\n\nCommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
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

int main(int argc, char **argv)
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
		s = cmd->run(&c, argc - optind, argv + optind);
		varlink_close(c.conn);
	}
	free(c.socket_owned);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		errmsg("cannot write the output: %s", strerror(errno));
		return EXIT_FAIL;
	}
	return s;
}
