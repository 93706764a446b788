/* SPDX-License-Identifier: MIT */
/* log.h — logging to stderr for daemons run by systemd.
 *
 * Each message is one line written with one write(2), so lines from several
 * threads never interleave. When stderr is not a terminal (journald, a pipe,
 * a test log) every line starts with an sd-daemon priority prefix "<N>"
 * (sd-daemon(3)), which journald turns into the entry's priority. On a
 * terminal the line reads "PROG: LEVEL: message" instead.
 */
#ifndef P2P_LOG_H
#define P2P_LOG_H

#include <stdbool.h>
#include <syslog.h>

void log_init(const char *progname);
/* Messages above this priority (LOG_ERR..LOG_DEBUG) are dropped. Default LOG_INFO. */
void log_set_level(int level);
int log_get_level(void);
/* Force or disable the "<N>" prefix; -1 decides from isatty(stderr). */
void log_set_prefix(int on);
/* Send output to fd instead of 2 (tests). */
void log_set_fd(int fd);
/* Parse "err", "warning", "notice", "info", "debug"; -1 if unknown. */
int log_level_from_name(const char *name);

void log_msg(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Logs "message: strerror(err)" and returns -err, so callers can
 * `return log_errno(LOG_ERR, errno, "cannot open %s", path);`. */
int log_errno(int priority, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_err(...)    log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)   log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...)   log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)  log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
