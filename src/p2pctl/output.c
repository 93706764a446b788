/* SPDX-License-Identifier: MIT */
/* output.c — how p2pctl prints: colours, sizes and durations for humans,
 * terminal-safe text, tables, JSON for scripts, messages on stderr (also
 * as a JSON error object on stdout with --json), each command's reply
 * (the print_* functions named in commands.c's table) and the download
 * progress. */
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

const char *prog = "p2pctl";

static char last_error[1024]; /* the first message of this run, for --json */
static bool json_printed;      /* stdout has a JSON document already */

void errmsg(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (!last_error[0]) {
		va_start(ap, fmt);
		vsnprintf(last_error, sizeof(last_error), fmt, ap);
		va_end(ap);
	}
}

void output_json_failure(int status)
{
	static const char *const names[] = {
		[EXIT_FAIL] = "p2pctl.Failed", [EXIT_USAGE] = "p2pctl.Usage",
		[EXIT_NOT_LOGGED_IN] = "p2pctl.NotLoggedIn", [EXIT_NOT_FOUND] = "p2pctl.NotFound",
		[EXIT_UNREACHABLE] = "p2pctl.PeerdUnreachable", [EXIT_VERIFICATION] = "p2pctl.VerificationFailed",
	};
	struct json_object *o, *p;

	if (json_printed || status <= EXIT_OK || status > EXIT_VERIFICATION)
		return;
	o = json_object_new_object();
	p = json_object_new_object();
	json_object_object_add(p, "message", json_object_new_string(last_error[0] ? last_error : "failed"));
	json_object_object_add(p, "exit_status", json_object_new_int(status));
	json_object_object_add(o, "error", json_object_new_string(names[status]));
	json_object_object_add(o, "parameters", p);
	print_json(o);
	json_object_put(o);
}

/* ---- output helpers --------------------------------------------------- */

const char *color(const struct ctl *c, const char *code)
{
	return c->color ? code : "";
}

void human_size(uint64_t n, char *out, size_t outlen)
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

void human_duration(double s, char *out, size_t outlen)
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
char *safe_text(const char *s)
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
size_t text_width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

/* A table: rows of cells, printed with aligned columns. right[] marks
 * right-aligned (numeric) columns. */

void table_add(struct table *t, ...)
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

void table_print(const struct ctl *c, struct table *t)
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

void print_json(struct json_object *o)
{
	json_printed = true;
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* Field accessors that tolerate a missing or mistyped field. */
const char *jstr(struct json_object *o, const char *key, const char *dflt)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return dflt;
	return json_object_get_string(v);
}

int64_t jint(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	return json_object_get_int64(v);
}

double jdouble(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	return json_object_get_double(v);
}

bool jbool(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

struct json_object *jarray(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_array))
		return NULL;
	return v;
}

/* ---- what each command prints ------------------------------------------ */
/* Each prints a successful reply for humans (with --json, run_command
 * prints the reply as it came). a: the command's arguments, as parsed. */

void print_registered(const struct ctl *c, const struct cmd_args *a, struct json_object *p)
{
	(void)p;
	if (!c->quiet)
		printf("Registered %s. Log in with: p2pctl login %s\n", a->user, a->user);
}

void print_logged_in(const struct ctl *c, const struct cmd_args *a, struct json_object *p)
{
	if (!c->quiet)
		printf("Logged in as %s%s%s.\n", color(c, C_BOLD), jstr(p, "username", a->user), color(c, C_RESET));
}

void print_logged_out(const struct ctl *c, const struct cmd_args *a, struct json_object *p)
{
	(void)a;
	(void)p;
	if (!c->quiet)
		puts("Logged out.");
}

void print_indexed(const struct ctl *c, const struct cmd_args *a, struct json_object *p)
{
	int64_t n = jint(p, "indexed");

	(void)a;
	if (!c->quiet)
		printf("Indexed %lld file%s.\n", (long long)n, n == 1 ? "" : "s");
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

void print_status(const struct ctl *c, const struct cmd_args *a, struct json_object *p)
{
	struct json_object *dir = NULL, *adv;
	char size[32];
	const char *state;
	bool in, reach;
	char *t;

	(void)a;
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
}

static void short_hash(const char *h, char *out, size_t size)
{
	snprintf(out, size, "%.12s", h);
}

void print_shared(const struct ctl *c, const struct cmd_args *a, struct json_object *p)
{
	struct json_object *files = jarray(p, "files");
	struct table t = { .ncols = 4, .head = { "NAME", "SIZE", "MODIFIED", "SHA256" },
			   .right = { false, true, false, false } };
	uint64_t total = 0;
	size_t n = files ? json_object_array_length(files) : 0;

	(void)a;
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
}

void print_results(const struct ctl *c, const struct cmd_args *a, struct json_object *p)
{
	struct json_object *results = jarray(p, "results");
	struct table t = { .ncols = 5, .head = { "NAME", "SIZE", "PEER", "ADDRESS", "SHA256" },
			   .right = { false, true, false, false, false } };
	size_t n = results ? json_object_array_length(results) : 0;

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
		long long total = (long long)jint(p, "total");

		if (n == 0)
			fprintf(stderr, "No online peer shares a matching file.\n");
		else if ((long long)n + a->offset < total)
			printf("%zu of %lld results shown; see more with --offset %lld or --limit\n", n, total,
			       a->offset + (long long)n);
	}
}

void print_transfers(const struct ctl *c, const struct cmd_args *a, struct json_object *p)
{
	struct json_object *list = jarray(p, "transfers");
	struct table t = { .ncols = 7, .head = { "ID", "NAME", "STATE", "DONE", "SIZE", "RATE", "SOURCES" },
			   .right = { false, false, false, true, true, true, true } };
	size_t n = list ? json_object_array_length(list) : 0;

	(void)a;
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
}

void print_cancelled(const struct ctl *c, const struct cmd_args *a, struct json_object *p)
{
	(void)p;
	if (!c->quiet)
		printf("Cancelled transfer %s.\n", a->id);
}

void print_paused(const struct ctl *c, const struct cmd_args *a, struct json_object *p)
{
	(void)p;
	if (!c->quiet)
		printf("Paused transfer %s; resume it with 'p2pctl resume %s'.\n", a->id, a->id);
}

void print_resumed(const struct ctl *c, const struct cmd_args *a, struct json_object *p)
{
	(void)p;
	if (!c->quiet)
		printf("Resumed transfer %s.\n", a->id);
}

void print_rates(const struct ctl *c, const struct cmd_args *a, struct json_object *p)
{
	char up[40], down[40];

	(void)a;
	if (!c->quiet) {
		rate_text(jint(p, "upload_rate"), up, sizeof(up));
		rate_text(jint(p, "download_rate"), down, sizeof(down));
		printf("Upload rate: %s; download rate: %s (until the peer restarts).\n", up, down);
	}
}

/* Download progress: a bar on a terminal, a line a second otherwise. */
static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void progress_show(const struct ctl *c, struct progress *pr, struct json_object *p)
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

void progress_end(struct progress *pr)
{
	if (pr->drawn)
		fputs("\r\033[K", stderr);
	pr->drawn = false;
}

void print_downloaded(const struct ctl *c, const struct cmd_args *a, struct json_object *p)
{
	char size[32], rate[32], secs[32];
	double sec = jdouble(p, "seconds");
	char *path;

	(void)a;
	if (c->quiet)
		return;
	path = safe_text(jstr(p, "path", "?"));
	human_size((uint64_t)jint(p, "size"), size, sizeof(size));
	human_size(sec > 0 ? (uint64_t)((double)jint(p, "size") / sec) : 0, rate, sizeof(rate));
	human_duration(sec, secs, sizeof(secs));
	printf("Downloaded %s (%s in %s, %s/s), SHA-256 verified.\n", path, size, secs, rate);
	free(path);
}
