/* SPDX-License-Identifier: MIT */
/* metrics.h — p2p-peerd's Prometheus metrics: lock-free counters any
 * module bumps with one line, served as text on metrics_listen. */
#ifndef P2P_PEERD_METRICS_H
#define P2P_PEERD_METRICS_H

#include <stdint.h>

struct event_base;

enum metric {
	M_BYTES_SERVED,          /* file bytes sent to other peers (Read, DownloadFile) */
	M_BYTES_RECEIVED,        /* file bytes received by downloads */
	M_TRANSFERS_DONE,        /* downloads by result */
	M_TRANSFERS_FAILED,
	M_TRANSFERS_CANCELLED,
	M_SOURCES_DROPPED_ERROR,  /* a source that failed a call */
	M_SOURCES_DROPPED_HASH,   /* a source that sent data that did not verify */
	M_SOURCES_DROPPED_SLOW,   /* a source that stalled */
	M_TICKETS_VALID,         /* ticket checks by result (cache hits included) */
	M_TICKETS_REFUSED,
	M_TICKETS_UNAVAILABLE,   /* directory unreachable, not logged in, too many waiting */
	M_TICKETS_CACHED,        /* of the valid ones, answered from the cache */
	M_RATELIMIT_UPLOAD_WAITS,   /* a Read chunk waited for upload_rate tokens */
	M_RATELIMIT_DOWNLOAD_WAITS, /* a download waited for download_rate tokens */
	M_DIRECTORY_UP,          /* gauge: 1 when the directory answers */
	M_COUNT
};

/* Add n to a counter (or set a gauge with metrics_set). Any thread. */
void metrics_add(enum metric m, uint64_t n);
void metrics_set(enum metric m, uint64_t v);
/* A counter's value now (Status shows bytes up and down). Any thread. */
uint64_t metrics_get(enum metric m);

/* gRPC calls by method (index into the names given to metrics_grpc_init)
 * and status code. */
void metrics_grpc_init(const char *const *methods, int n);
void metrics_grpc_started(int method);
void metrics_grpc_handled(int method, int code);

/* Bytes up and down across restarts: STATE_DIR/totals keeps what earlier
 * runs served and received ("bytes_up N" and "bytes_down N" lines). Start
 * reads it (an unreadable or malformed file counts from 0, with a warning)
 * and saves it every TOTALS_SAVE_S seconds from base's loop; stop saves it
 * once more. state_dir NULL: totals are those of this run. */
#define TOTALS_SAVE_S 60
int metrics_totals_start(struct event_base *base, const char *state_dir);
void metrics_totals_stop(void);
/* The bytes of M_BYTES_SERVED or M_BYTES_RECEIVED, earlier runs included. */
uint64_t metrics_total(enum metric m);

/* Serve GET /metrics on addr ("ADDR:PORT") from base's loop. 0 or -errno. */
int metrics_start(struct event_base *base, const char *addr);
void metrics_stop(void);

#endif
