/* SPDX-License-Identifier: MIT */
/* metrics.c — p2p-peerd's Prometheus metrics (metrics.h): counters kept as
 * relaxed atomics so that every thread adds without a lock, and the text
 * exposition served by evhttp on the main loop when metrics_listen is set.
 * Process metrics and p2p_build_info come from procmetrics.c. It also keeps
 * the byte totals across restarts (STATE_DIR/totals). */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "file.h"
#include "log.h"
#include "metrics.h"
#include "procmetrics.h"

#define GRPC_METHODS 16
#define GRPC_CODES 17

static _Atomic uint64_t counters[M_COUNT];
static _Atomic uint64_t grpc_started[GRPC_METHODS];
static _Atomic uint64_t grpc_handled[GRPC_METHODS][GRPC_CODES];
static const char *const *grpc_methods;
static int n_grpc_methods;
static struct evhttp *http;

static const char *const code_names[GRPC_CODES] = {
	"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
	"PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
	"Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
};

void metrics_add(enum metric m, uint64_t n)
{
	atomic_fetch_add_explicit(&counters[m], n, memory_order_relaxed);
}

void metrics_set(enum metric m, uint64_t v)
{
	atomic_store_explicit(&counters[m], v, memory_order_relaxed);
}

void metrics_grpc_init(const char *const *methods, int n)
{
	grpc_methods = methods;
	n_grpc_methods = n < GRPC_METHODS ? n : GRPC_METHODS;
}

void metrics_grpc_started(int method)
{
	if (method >= 0 && method < n_grpc_methods)
		atomic_fetch_add_explicit(&grpc_started[method], 1, memory_order_relaxed);
}

void metrics_grpc_handled(int method, int code)
{
	if (method >= 0 && method < n_grpc_methods && code >= 0 && code < GRPC_CODES)
		atomic_fetch_add_explicit(&grpc_handled[method][code], 1, memory_order_relaxed);
}

static uint64_t get(enum metric m)
{
	return atomic_load_explicit(&counters[m], memory_order_relaxed);
}

uint64_t metrics_get(enum metric m)
{
	return get(m);
}

/* ---- totals across restarts ------------------------------------------------ */

static struct {
	char *path;            /* STATE_DIR/totals, or NULL */
	uint64_t up, down;     /* what earlier runs served and received */
	struct event *timer;
} totals;

uint64_t metrics_total(enum metric m)
{
	return get(m) + (m == M_BYTES_SERVED ? totals.up : m == M_BYTES_RECEIVED ? totals.down : 0);
}

/* A total read back is at most 2^62 bytes (4 EiB): Status says totals as
 * JSON int64, and this leaves room for what the next runs add. */
#define TOTALS_MAX (UINT64_C(1) << 62)

/* "KEY N\n" with N decimal, 0 to TOTALS_MAX: 0, or -EINVAL. The newline
 * may be missing only at the end of the file (last), so a line longer
 * than the buffer is never taken for two. */
static int totals_line(const char *line, const char *key, bool last, uint64_t *out)
{
	size_t k = strlen(key);
	unsigned long long v;
	char *end;

	if (strncmp(line, key, k) || line[k] != ' ' || line[k + 1] < '0' || line[k + 1] > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(line + k + 1, &end, 10);
	if (errno || v > TOTALS_MAX || (*end == '\n' ? end[1] != '\0' : *end || !last))
		return -EINVAL;
	*out = v;
	return 0;
}

static int totals_fill(FILE *f, void *arg)
{
	(void)arg;
	return fprintf(f, "bytes_up %llu\nbytes_down %llu\n", (unsigned long long)metrics_total(M_BYTES_SERVED),
		       (unsigned long long)metrics_total(M_BYTES_RECEIVED)) > 0 ? 0 : -EIO;
}

static void totals_save(void)
{
	int e;

	if (totals.path && (e = file_write_atomic(totals.path, totals_fill, NULL, 0)) < 0)
		log_errno(LOG_WARNING, -e, "cannot save the byte totals %s", totals.path);
}

static void on_totals_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	totals_save();
}

int metrics_totals_start(struct event_base *base, const char *state_dir)
{
	struct timeval tv = { .tv_sec = TOTALS_SAVE_S, .tv_usec = 0 };
	char up[64] = "", down[64] = "";
	FILE *f;

	if (!state_dir)
		return 0;
	if (asprintf(&totals.path, "%s/totals", state_dir) < 0) {
		totals.path = NULL;
		return -ENOMEM;
	}
	if ((f = fopen(totals.path, "re"))) {
		if (!fgets(up, sizeof(up), f) || !fgets(down, sizeof(down), f) ||
		    totals_line(up, "bytes_up", false, &totals.up) < 0 ||
		    totals_line(down, "bytes_down", true, &totals.down) < 0) {
			log_warn("%s is not a byte totals file; counting from 0", totals.path);
			totals.up = totals.down = 0;
		}
		fclose(f);
	} else if (errno != ENOENT) {
		log_errno(LOG_WARNING, errno, "cannot read the byte totals %s; counting from 0", totals.path);
	}
	totals.timer = event_new(base, -1, EV_PERSIST, on_totals_timer, NULL);
	if (!totals.timer || event_add(totals.timer, &tv) < 0)
		return -ENOMEM;
	return 0;
}

void metrics_totals_stop(void)
{
	if (totals.timer)
		event_free(totals.timer);
	totals.timer = NULL;
	totals_save();
	free(totals.path);
	totals.path = NULL;
	totals.up = totals.down = 0;
}

static void family(struct evbuffer *b, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* "/p2p.v1.Peer/Read" -> service "p2p.v1.Peer", method "Read". */
static void split_method(const char *path, char *svc, size_t svclen, const char **method)
{
	const char *slash = strrchr(path, '/');
	size_t n = slash && slash > path ? (size_t)(slash - path - 1) : 0;

	if (n >= svclen)
		n = svclen - 1;
	memcpy(svc, path + 1, n);
	svc[n] = '\0';
	*method = slash ? slash + 1 : path;
}

static void render(struct evbuffer *b)
{
	static const struct { enum metric m; const char *label; } transfers[] = {
		{ M_TRANSFERS_DONE, "done" }, { M_TRANSFERS_FAILED, "failed" }, { M_TRANSFERS_CANCELLED, "cancelled" },
	}, dropped[] = {
		{ M_SOURCES_DROPPED_ERROR, "error" }, { M_SOURCES_DROPPED_HASH, "hash_mismatch" },
		{ M_SOURCES_DROPPED_SLOW, "stalled" },
	}, tickets[] = {
		{ M_TICKETS_VALID, "valid" }, { M_TICKETS_REFUSED, "refused" }, { M_TICKETS_UNAVAILABLE, "unavailable" },
	}, waits[] = {
		{ M_RATELIMIT_UPLOAD_WAITS, "upload" }, { M_RATELIMIT_DOWNLOAD_WAITS, "download" },
	};
	char svc[128];
	const char *method;

	family(b, "p2p_peer_bytes_served_total", "counter", "File bytes sent to other peers.");
	evbuffer_add_printf(b, "p2p_peer_bytes_served_total %llu\n", (unsigned long long)get(M_BYTES_SERVED));
	family(b, "p2p_peer_bytes_received_total", "counter", "File bytes received by downloads.");
	evbuffer_add_printf(b, "p2p_peer_bytes_received_total %llu\n", (unsigned long long)get(M_BYTES_RECEIVED));
	family(b, "p2p_peer_transfers_total", "counter", "Downloads that ended, by result.");
	for (size_t i = 0; i < sizeof(transfers) / sizeof(transfers[0]); i++)
		evbuffer_add_printf(b, "p2p_peer_transfers_total{result=\"%s\"} %llu\n", transfers[i].label,
				    (unsigned long long)get(transfers[i].m));
	family(b, "p2p_peer_sources_dropped_total", "counter", "Download sources given up, by reason.");
	for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++)
		evbuffer_add_printf(b, "p2p_peer_sources_dropped_total{reason=\"%s\"} %llu\n", dropped[i].label,
				    (unsigned long long)get(dropped[i].m));
	family(b, "p2p_peer_ticket_checks_total", "counter", "Tickets of incoming calls checked, by result.");
	for (size_t i = 0; i < sizeof(tickets) / sizeof(tickets[0]); i++)
		evbuffer_add_printf(b, "p2p_peer_ticket_checks_total{result=\"%s\"} %llu\n", tickets[i].label,
				    (unsigned long long)get(tickets[i].m));
	family(b, "p2p_peer_ticket_cache_hits_total", "counter", "Valid tickets answered from the cache.");
	evbuffer_add_printf(b, "p2p_peer_ticket_cache_hits_total %llu\n", (unsigned long long)get(M_TICKETS_CACHED));
	family(b, "p2p_peer_directory_up", "gauge", "1 when the directory answered the last call, else 0.");
	evbuffer_add_printf(b, "p2p_peer_directory_up %llu\n", (unsigned long long)get(M_DIRECTORY_UP));
	family(b, "p2p_peer_ratelimit_waits_total", "counter", "Times a transfer waited for rate-limit tokens.");
	for (size_t i = 0; i < sizeof(waits) / sizeof(waits[0]); i++)
		evbuffer_add_printf(b, "p2p_peer_ratelimit_waits_total{direction=\"%s\"} %llu\n", waits[i].label,
				    (unsigned long long)get(waits[i].m));
	family(b, "grpc_server_started_total", "counter", "gRPC calls started on the server.");
	for (int m = 0; m < n_grpc_methods; m++) {
		split_method(grpc_methods[m], svc, sizeof(svc), &method);
		evbuffer_add_printf(b, "grpc_server_started_total{grpc_service=\"%s\",grpc_method=\"%s\"} %llu\n", svc,
				    method, (unsigned long long)atomic_load(&grpc_started[m]));
	}
	family(b, "grpc_server_handled_total", "counter", "gRPC calls completed on the server, by status code.");
	for (int m = 0; m < n_grpc_methods; m++) {
		split_method(grpc_methods[m], svc, sizeof(svc), &method);
		for (int k = 0; k < GRPC_CODES; k++) {
			uint64_t v = atomic_load(&grpc_handled[m][k]);

			if (v || k == 0)
				evbuffer_add_printf(b, "grpc_server_handled_total{grpc_service=\"%s\",grpc_method=\"%s\","
						    "grpc_code=\"%s\"} %llu\n", svc, method, code_names[k],
						    (unsigned long long)v);
		}
	}
	procmetrics_write(b, "p2p-peerd");
}

static void on_request(struct evhttp_request *req, void *arg)
{
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	struct evbuffer *b;

	if (!path || strcmp(path, "/metrics") != 0) {
		evhttp_send_error(req, HTTP_NOTFOUND, "only /metrics is here");
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET && evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
		evhttp_send_error(req, HTTP_BADMETHOD, "GET /metrics");
		return;
	}
	if (!(b = evbuffer_new())) {
		evhttp_send_error(req, HTTP_SERVUNAVAIL, "out of memory");
		return;
	}
	render(b);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain; version=0.0.4");
	evhttp_send_reply(req, HTTP_OK, "OK", b);
	evbuffer_free(b);
}

int metrics_start(struct event_base *base, const char *addr)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	size_t hl;

	if (!colon || (hl = (size_t)(colon - addr)) == 0 || hl >= sizeof(host))
		return -EINVAL;
	if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']') {
		addr++;
		hl -= 2;
	}
	memcpy(host, addr, hl);
	host[hl] = '\0';
	procmetrics_init();
	http = evhttp_new(base);
	if (!http)
		return -ENOMEM;
	/* Small requests, few of them: bound what a scraper can make us hold. */
	evhttp_set_max_headers_size(http, 8192);
	evhttp_set_max_body_size(http, 0);
	evhttp_set_timeout(http, 10);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
					       EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
	evhttp_set_gencb(http, on_request, NULL);
	if (!evhttp_bind_socket_with_handle(http, host, (uint16_t)atoi(colon + 1))) {
		evhttp_free(http);
		http = NULL;
		return -EADDRINUSE;
	}
	return 0;
}

void metrics_stop(void)
{
	if (http)
		evhttp_free(http);
	http = NULL;
}
