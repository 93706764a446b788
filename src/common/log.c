/* SPDX-License-Identifier: MIT */
/* log.c — see log.h. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"

static const char *log_progname = "p2p";
static int log_level = LOG_INFO;
static int log_prefix = -1;
static int log_fd = STDERR_FILENO;

static const char *const level_names[] = {
	[LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit",
	[LOG_ERR] = "err", [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
	[LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

void log_init(const char *progname)
{
	const char *slash = strrchr(progname, '/');

	log_progname = slash ? slash + 1 : progname;
}

void log_set_level(int level)
{
	if (level >= LOG_EMERG && level <= LOG_DEBUG)
		log_level = level;
}

int log_get_level(void)
{
	return log_level;
}

void log_set_prefix(int on)
{
	log_prefix = on;
}

void log_set_fd(int fd)
{
	log_fd = fd;
}

int log_level_from_name(const char *name)
{
	for (int i = LOG_EMERG; i <= LOG_DEBUG; i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return i;
	if (strcasecmp(name, "error") == 0)
		return LOG_ERR;
	if (strcasecmp(name, "warn") == 0)
		return LOG_WARNING;
	return -1;
}

static void log_vwrite(int priority, const char *suffix, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

static void log_vwrite(int priority, const char *suffix, const char *fmt, va_list ap)
{
	char line[2048];
	int n, m;
	bool prefix = log_prefix >= 0 ? log_prefix : !isatty(log_fd);

	if (prefix)
		n = snprintf(line, sizeof(line), "<%d>", priority);
	else
		n = snprintf(line, sizeof(line), "%s: %s: ", log_progname, level_names[priority]);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	if (m < 0)
		return;
	n += m;
	if ((size_t)n >= sizeof(line) - 2) /* truncated: keep the newline */
		n = sizeof(line) - 2;
	if (suffix) {
		m = snprintf(line + n, sizeof(line) - 1 - (size_t)n, ": %s", suffix);
		n += m;
		if ((size_t)n >= sizeof(line) - 2)
			n = sizeof(line) - 2;
	}
	/* Control characters from outside must not forge log lines. */
	for (int i = prefix ? 3 : 0; i < n; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[n++] = '\n';
	/* One write per line; a short write to stderr is not worth a retry loop. */
	if (write(log_fd, line, (size_t)n) < 0)
		return;
}

void log_msg(int priority, const char *fmt, ...)
{
	va_list ap;

	if (priority > log_level)
		return;
	va_start(ap, fmt);
	log_vwrite(priority, NULL, fmt, ap);
	va_end(ap);
}

int log_errno(int priority, int err, const char *fmt, ...)
{
	va_list ap;
	char buf[256];

	if (err < 0)
		err = -err;
	if (priority <= log_level) {
		va_start(ap, fmt);
		log_vwrite(priority, strerror_r(err, buf, sizeof(buf)), fmt, ap);
		va_end(ap);
	}
	return -err;
}
