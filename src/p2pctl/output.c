/* SPDX-License-Identifier: MIT */
/* output.c — how p2pctl prints: colours, sizes and durations for humans,
 * terminal-safe text, tables, JSON for scripts, and messages on stderr
 * (also as a JSON error object on stdout with --json). */
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
