/* SPDX-License-Identifier: MIT */
/* dird.h — p2p-dird's settings and daemon context, shared by its modules. */
#ifndef P2P_DIRD_H
#define P2P_DIRD_H

#include <stdbool.h>
#include <pthread.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "conf.h"
#include "pool.h"
#include "ptrmap.h"
#include "ratelimit.h"
#include "store.h"

struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

/* An address block: IPv4 addresses are kept as IPv4-mapped IPv6. */
struct dird_cidr {
	unsigned char addr[16];
	int bits;                    /* prefix length, 0-128 */
};

struct dird_settings {
	char *listen;                /* ADDR:PORT */
	char *database;              /* SQLite file or postgresql:// URI */
	long long database_connections; /* PostgreSQL connections at most */
	long long workers;           /* threads answering requests; 0: the loop */
	char *log_level;
	bool registration;           /* POST /register open */
	long long ttl;               /* s: peer liveness */
	long long session_lifetime;  /* s */
	long long ticket_lifetime;   /* s */
	long long max_body;          /* bytes */
	long long max_files;         /* files in one peer's index */
	long long max_headers;       /* bytes */
	long long max_connections;
	long long timeout;           /* s: idle/slow client */
	long long login_burst;       /* attempts before throttling */
	long long login_interval;    /* s per attempt regained */
	long long register_burst;    /* registrations per address before throttling */
	long long register_interval; /* s per registration regained */
	struct conf_strlist trusted_proxies; /* addresses/CIDRs whose X-Forwarded-For counts */
	bool proxy_protocol;         /* connections start with a PROXY header */
	long long sweep_interval;    /* s */
	long long max_staleness;     /* s: PostgreSQL replica's lag before 503 */
	char *tls_certificate;       /* PEM chain; with tls_key: serve HTTPS */
	char *tls_key;               /* PEM private key */
};

extern const struct conf_key dird_keys[];
void dird_settings_defaults(struct dird_settings *s);
/* Semantic checks beyond types and ranges; 0 or -EINVAL with err filled. */
int dird_settings_check(const struct dird_settings *s, char *err, size_t errlen);
/* "ADDR" or "ADDR/BITS", IPv4 or IPv6; false if malformed. */
bool dird_cidr_parse(const char *s, struct dird_cidr *out);
/* Whether addr (an IPv4 or IPv6 address as text) is in one of the blocks. */
bool dird_cidr_match(const struct dird_cidr *v, size_t n, const char *addr);

enum route {
	R_REGISTER, R_LOGIN, R_LOGOUT, R_VERIFY_LOGIN, R_INDEX, R_HEARTBEAT,
	R_SEARCH, R_TICKETS, R_TICKETS_VERIFY, R_HEALTHZ, R_METRICS, R_OPENAPI,
	R_OTHER, /* unknown paths, and errors before routing */
	R_COUNT
};

#define METRIC_CODES 16
#define METRIC_BUCKETS 12

struct dird_metrics {
	uint64_t requests[R_COUNT][METRIC_CODES]; /* by route and status slot */
	uint64_t latency_bucket[METRIC_BUCKETS];  /* cumulative at export */
	uint64_t latency_count;
	double latency_sum;
};

struct dird {
	struct event_base *base;
	struct evhttp *http;
	struct evconnlistener *listener;
	struct ssl_ctx_st *tls_ctx;  /* serving HTTPS, or NULL: plain HTTP */
	struct store *store;
	struct dird_settings set;
	const char *config_path;     /* NULL: none */
	bool config_required;
	struct ratelimit *login_by_user, *login_by_addr, *register_by_addr;
	pthread_mutex_t login_lock;  /* the limiters, taken by workers */
	struct dird_cidr *proxies;   /* trusted_proxies, parsed (loop thread) */
	size_t nproxies;
	struct ptrmap pp;            /* bufferevent -> proxyproto_conn */
	struct pool *pool;           /* NULL: handlers run on the loop */
	struct api_beats *beats;     /* heartbeats collecting for a batch (api.c) */
	bool status_busy;            /* a sweep and count is under way */
	struct dird_metrics metrics;
	struct store_counts counts;  /* refreshed by the sweep timer */
	int connections;             /* that have sent a request and are open */
	struct ptrmap conns;         /* their evhttp_connections (conn.c) */
	bool listener_paused;
	bool stopping;
	int inflight;                /* requests being answered */
};

/* api.c */
int api_init(struct dird *d);
void api_apply_settings(struct dird *d);
void api_free(struct dird *d);

/* conn.c: on each request, counts its connection (from the first request
 * until it closes) and writes its client's address into addr. */
void conn_request(struct dird *d, struct evhttp_request *req, char *addr, size_t len);

/* proxyproto.c: evhttp's bufferevent for a connection that starts with a
 * PROXY protocol header; the client's address it gave (NULL: none yet, or
 * the proxy's own connection). Loop thread only. */
struct proxyproto_conn;
struct bufferevent *proxyproto_bufferevent(struct event_base *base, struct dird *d);
const char *proxyproto_client(struct dird *d, struct bufferevent *bev);

/* auth.c: yescrypt through libcrypt. 0, -EINVAL, -ENOMEM or -EIO. */
int auth_hash_password(const char *password, char **hash_out);
/* true if password matches hash (constant-time compare of the results). */
bool auth_check_password(const char *password, const char *hash);
/* Runs one hash for nothing, so a missing user costs what a wrong password does. */
void auth_burn_time(const char *password);

int64_t dird_now(void);

/* migrate.c: copy the SQLite directory in file from into the empty
 * PostgreSQL database to (a URI). 0 or a negative errno (logged). */
int dird_migrate(const char *from, const char *to);

#endif
