/* SPDX-License-Identifier: MIT */
/* procmetrics.h — the Prometheus metrics every p2p daemon serves about
 * itself: process_* (the client libraries' standard names) and
 * p2p_build_info. Shared by p2p-dird's and p2p-peerd's /metrics. */
#ifndef P2P_PROCMETRICS_H
#define P2P_PROCMETRICS_H

#include <event2/buffer.h>

/* Remember the start time (call once, early in main). */
void procmetrics_init(void);

/* Append, in the Prometheus text format with HELP and TYPE lines:
 * process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds,
 * process_start_time_seconds, and p2p_build_info{version,program} 1.
 * A value that cannot be read is left out. Any thread. */
void procmetrics_write(struct evbuffer *out, const char *program);

#endif
