/* SPDX-License-Identifier: MIT */
/* notify.h — the daemons' one wrapper around sd_notify(3).
 *
 * All calls are no-ops outside systemd (no NOTIFY_SOCKET). */
#ifndef P2P_NOTIFY_H
#define P2P_NOTIFY_H

#include <stdint.h>

void notify_ready(void);
void notify_stopping(void);
void notify_reloading(void);
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void notify_watchdog(void);
/* Watchdog interval in microseconds when systemd asked for one
 * (WATCHDOG_USEC for this pid), else 0. Ping at half of it. */
uint64_t notify_watchdog_usec(void);

#endif
