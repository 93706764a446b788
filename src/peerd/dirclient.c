/* SPDX-License-Identifier: MIT */
/* dirclient.c — owns every conversation with the directory's REST API
 * (dirclient.h): building the requests, the deadlines, mapping HTTP
 * statuses to enum dir_status (here and nowhere else), parsing the answers
 * (search hits, tickets) once, and the hand-off from other threads.
 *
 * All calls run on the peer's one event base. An https:// directory is
 * reached over TLS (libevent's OpenSSL bufferevents); its certificate must
 * chain to directory_ca (or the system's CAs) and name the URL's host. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "dirclient.h"
#include "log.h"
#include "peerd.h"
#include "tls.h"

enum dir_kind { K_REGISTER, K_LOGIN, K_INDEX, K_HEARTBEAT, K_LOGOUT, K_SEARCH, K_SEARCH_FILE, K_TICKET,
		K_VERIFY, K_HEALTHZ };

struct dir_req {
	struct dirclient *dc;
	enum dir_kind kind;
	struct evhttp_connection *conn;
	struct evhttp_request *req;
	struct bufferevent *bev; /* TLS only; the connection owns it */
	SSL *ssl;
	struct event *timer;     /* the deadline; then the deferred free */
	dir_done *cb;
	void *arg;
	double started;
	int deadline_s;
	bool finished, timed_out;
	struct dir_req *next;
};

/* Work another thread hands to the loop. */
struct handoff {
	void (*run)(struct dirclient *dc, struct handoff *h);
	struct handoff *next;
};

struct dirclient {
	struct event_base *base;
	struct evdns_base *dns;  /* NULL for an IP literal */
	char *url, *host;
	int port;
	bool https;
	struct dir_req *reqs;    /* in flight, or finished and waiting to be freed */
	unsigned inflight;
	double last_answer;
	pthread_mutex_t lock;    /* token, closing and the hand-off queue */
	bool closing;            /* dirclient_shutdown: every call fails at once */
	char token[SHA256_HEX_LEN + 1];
	struct handoff *queue, **queue_tail;
	int efd;
	struct event *ev_handoff;
};

/* ---- status and answers ------------------------------------------------ */

static enum dir_status map_status(int http)
{
	if (http == 0)
		return DIR_UNREACHABLE;
	if (http >= 200 && http < 300)
		return DIR_OK;
	if (http >= 500)
		return DIR_SERVER_ERROR;
	switch (http) {
	case 401: return DIR_UNAUTHORIZED;
	case 403: return DIR_FORBIDDEN;
	case 404: return DIR_NOT_FOUND;
	case 409: return DIR_CONFLICT;
	case 429: return DIR_RATE_LIMITED;
	default: return DIR_REJECTED;
	}
}

static const char *kind_path_name(enum dir_kind k)
{
	static const char *const names[] = { "register", "login", "index", "heartbeat", "logout", "search",
					     "search", "ticket", "ticket check", "health check" };
	return names[k];
}

/* peers_with_file entries with size and SHA-256 (names-only entries cannot
 * be verified), in the directory's order. */
static size_t parse_hits(struct json_object *reply, struct dir_hit **out)
{
	struct json_object *list;
	struct dir_hit *hits;
	size_t n = 0, len;

	*out = NULL;
	if (!json_object_object_get_ex(reply, "peers_with_file", &list) || !json_object_is_type(list, json_type_array))
		return 0;
	len = json_object_array_length(list);
	if (len == 0 || !(hits = calloc(len, sizeof(*hits))))
		return 0;
	for (size_t i = 0; i < len; i++) {
		struct json_object *h = json_object_array_get_idx(list, i), *peer, *ip, *port, *size, *sha;
		const char *ips;
		struct dir_hit *d = &hits[n];

		if (!json_object_object_get_ex(h, "peer", &peer) || !json_object_object_get_ex(h, "ip", &ip) ||
		    !json_object_object_get_ex(h, "port", &port) || !json_object_object_get_ex(h, "size", &size) ||
		    !json_object_object_get_ex(h, "sha256", &sha) || !json_object_is_type(sha, json_type_string) ||
		    !json_object_is_type(size, json_type_int) || !json_object_is_type(peer, json_type_string) ||
		    !json_object_is_type(ip, json_type_string) || !json_object_is_type(port, json_type_int) ||
		    !valid_username(json_object_get_string(peer)) || !valid_sha256_hex(json_object_get_string(sha)) ||
		    json_object_get_int64(size) < 0 || json_object_get_int(port) < 1 ||
		    json_object_get_int(port) > 65535)
			continue;
		ips = json_object_get_string(ip);
		if (strlen(ips) > 255)
			continue;
		snprintf(d->peer, sizeof(d->peer), "%s", json_object_get_string(peer));
		snprintf(d->target, sizeof(d->target), strchr(ips, ':') ? "[%s]:%d" : "%s:%d", ips,
			 json_object_get_int(port));
		d->size = (uint64_t)json_object_get_int64(size);
		snprintf(d->sha256, sizeof(d->sha256), "%s", json_object_get_string(sha));
		n++;
	}
	if (n == 0) {
		free(hits);
		hits = NULL;
	}
	*out = hits;
	return n;
}

static const char *json_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return NULL;
}

/* Hand the answer to the caller, then free the request once libevent is
 * done with it (never inside its own callback). */
static void finish(struct dir_req *rq, int http, struct json_object *json, const char *why)
{
	struct dir_result r = { .status = map_status(http), .http = http, .json = json, .timed_out = rq->timed_out };
	struct dir_hit *hits = NULL;
	const char *msg = json_str(json, "error");
	char reason[128];

	if (rq->finished)
		return;
	rq->finished = true;
	rq->dc->inflight--;
	if (http)
		rq->dc->last_answer = mono_now();
	if (why)
		msg = why;
	if (r.status == DIR_OK) {
		switch (rq->kind) {
		case K_LOGIN:
			r.token = json_str(json, "token");
			if (!r.token || !valid_sha256_hex(r.token))
				r.status = DIR_BAD_REPLY;
			break;
		case K_TICKET:
			r.ticket = json_str(json, "ticket");
			if (!r.ticket || !valid_sha256_hex(r.ticket))
				r.status = DIR_BAD_REPLY;
			break;
		case K_VERIFY:
			r.file = json_str(json, "file");
			if (!r.file)
				r.status = DIR_BAD_REPLY;
			break;
		case K_SEARCH_FILE:
			r.nhits = parse_hits(json, &hits);
			r.hits = hits;
			break;
		default:
			break;
		}
		if (r.status == DIR_BAD_REPLY)
			msg = "the directory's answer lacks what was asked for";
	}
	if (!msg) {
		if (http)
			snprintf(reason, sizeof(reason), "HTTP %d", http);
		else
			snprintf(reason, sizeof(reason), "cannot connect");
		msg = reason;
	}
	r.message = msg;
	if (rq->cb)
		rq->cb(rq->arg, &r);
	free(hits);
	event_active(rq->timer, EV_TIMEOUT, 1); /* the deferred free */
}

static void req_free(struct dir_req *rq)
{
	for (struct dir_req **pp = &rq->dc->reqs; *pp; pp = &(*pp)->next)
		if (*pp == rq) {
			*pp = rq->next;
			break;
		}
	if (rq->conn)
		evhttp_connection_free(rq->conn);
	event_free(rq->timer);
	free(rq);
}

static void log_tls_failure(struct dir_req *rq)
{
	unsigned long e;
	const char *why;

	if (!rq->ssl || !rq->bev)
		return;
	e = bufferevent_get_openssl_error(rq->bev);
	why = tls_failure_reason(rq->ssl, e, NULL);
	/* A refused or unreachable connection has no TLS reason: callers say so. */
	if (SSL_get_verify_result(rq->ssl) != X509_V_OK)
		log_err("the directory %s presented a certificate that is refused: %s "
			"(check directory_ca and the host in the URL)", rq->dc->url, why);
	else if (why)
		log_err("TLS with the directory %s failed: %s", rq->dc->url, why);
	while (bufferevent_get_openssl_error(rq->bev))
		;
}

static void on_done(struct evhttp_request *req, void *arg)
{
	struct dir_req *rq = arg;
	struct json_object *json = NULL;
	int http = req ? evhttp_request_get_response_code(req) : 0;

	rq->req = NULL; /* libevent frees it after this callback */
	if (http && req) {
		struct evbuffer *in = evhttp_request_get_input_buffer(req);
		size_t len = evbuffer_get_length(in);

		if (len > 0 && len <= DIR_REPLY_MAX) {
			struct json_tokener *tok = json_tokener_new();

			if (tok) {
				json = json_tokener_parse_ex(tok, (const char *)evbuffer_pullup(in, -1), (int)len);
				json_tokener_free(tok);
			}
		}
	} else {
		log_tls_failure(rq);
	}
	finish(rq, http, json, NULL);
	json_object_put(json);
}

/* The deadline passed, or (after finish) the deferred free. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct dir_req *rq = arg;
	char why[96];

	if (rq->finished) {
		req_free(rq);
		return;
	}
	if (rq->req) {
		evhttp_cancel_request(rq->req); /* its callback will not run */
		rq->req = NULL;
	}
	log_tls_failure(rq);
	snprintf(why, sizeof(why), "no answer within %d s", rq->deadline_s);
	rq->timed_out = true;
	log_debug("%s at %s: %s", kind_path_name(rq->kind), rq->dc->url, why);
	finish(rq, 0, NULL, why);
}

/* ---- making a call ----------------------------------------------------- */

/* Start one request. Whatever happens, cb runs exactly once. */
static void start(struct dirclient *dc, enum dir_kind kind, enum evhttp_cmd_type method, const char *path,
		  bool auth, struct json_object *body, int deadline_s, dir_done *cb, void *arg)
{
	struct dir_req *rq = calloc(1, sizeof(*rq));
	struct evkeyvalq *h;
	char hdr[SHA256_HEX_LEN + 300];
	struct timeval tv = { .tv_sec = deadline_s };
	struct dir_result fail = { .status = DIR_NO_MEMORY, .message = "out of memory or descriptors" };

	if (dc->closing || !rq || dc->inflight >= DIR_CALLS_MAX || !(rq->timer = evtimer_new(dc->base, on_timer, rq))) {
		if (dc->closing)
			fail = (struct dir_result){ .status = DIR_CANCELLED, .message = "p2p-peerd is stopping" };
		else if (rq && dc->inflight >= DIR_CALLS_MAX)
			fail.message = "too many calls to the directory at once";
		free(rq);
		json_object_put(body);
		if (cb)
			cb(arg, &fail);
		return;
	}
	rq->dc = dc;
	rq->kind = kind;
	rq->cb = cb;
	rq->arg = arg;
	rq->started = mono_now();
	rq->deadline_s = deadline_s;
	rq->next = dc->reqs;
	dc->reqs = rq;
	dc->inflight++;
	if (auth && !dc->token[0]) {
		finish(rq, 0, NULL, NULL);
		return;
	}
	if (dc->https) {
		if (!peer_directory_tls() || !(rq->ssl = SSL_new(peer_directory_tls())) ||
		    tls_client_set_host(rq->ssl, dc->host) < 0) {
			log_err("cannot set up TLS for the directory %s", dc->url);
			SSL_free(rq->ssl);
			rq->ssl = NULL;
			goto fail;
		}
		/* The bufferevent owns ssl from here; the connection owns bev. */
		rq->bev = bufferevent_openssl_socket_new(dc->base, -1, rq->ssl, BUFFEREVENT_SSL_CONNECTING,
							 BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		if (!rq->bev) {
			SSL_free(rq->ssl);
			rq->ssl = NULL;
			goto fail;
		}
		rq->conn = evhttp_connection_base_bufferevent_new(dc->base, dc->dns, rq->bev, dc->host,
								  (unsigned short)dc->port);
		if (!rq->conn) {
			bufferevent_free(rq->bev);
			rq->bev = NULL;
			rq->ssl = NULL;
			goto fail;
		}
	} else {
		rq->conn = evhttp_connection_base_new(dc->base, dc->dns, dc->host, (unsigned short)dc->port);
		if (!rq->conn)
			goto fail;
	}
	/* libevent's own timeout backs up the deadline timer below. */
	evhttp_connection_set_timeout(rq->conn, deadline_s + 1);
	evhttp_connection_set_max_body_size(rq->conn, DIR_REPLY_MAX);
	evhttp_connection_set_max_headers_size(rq->conn, 64 << 10);
	rq->req = evhttp_request_new(on_done, rq);
	if (!rq->req)
		goto fail;
	h = evhttp_request_get_output_headers(rq->req);
	snprintf(hdr, sizeof(hdr), "%s:%d", dc->host, dc->port);
	if (evhttp_add_header(h, "Host", hdr) < 0 || evhttp_add_header(h, "Connection", "close") < 0)
		goto fail_req;
	if (auth) {
		snprintf(hdr, sizeof(hdr), "Bearer %s", dc->token);
		if (evhttp_add_header(h, "Authorization", hdr) < 0)
			goto fail_req;
	}
	if (body) {
		const char *text = json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN);

		if (!text || evhttp_add_header(h, "Content-Type", "application/json") < 0 ||
		    evbuffer_add(evhttp_request_get_output_buffer(rq->req), text, strlen(text)) < 0)
			goto fail_req;
		json_object_put(body);
		body = NULL;
	}
	evtimer_add(rq->timer, &tv);
	if (evhttp_make_request(rq->conn, rq->req, method, path) < 0) {
		/* libevent keeps or frees the request itself here: leave it. */
		rq->req = NULL;
		goto fail;
	}
	if (!rq->finished && rq->req) {
		/* TLS sends headers and body as separate records; with Nagle the
		 * body waits for the server's delayed ACK (40 ms a POST, measured). */
		evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(rq->conn));
		int one = 1;

		if (fd >= 0)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	return;
fail_req:
	evhttp_request_free(rq->req);
	rq->req = NULL;
fail:
	json_object_put(body);
	finish(rq, 0, NULL, "out of memory or descriptors");
}

/* A call that needs a session but there is none: DIR_NOT_LOGGED_IN. */
static bool need_token(struct dirclient *dc, dir_done *cb, void *arg, struct json_object *body)
{
	struct dir_result r = { .status = DIR_NOT_LOGGED_IN, .message = "not logged in" };

	if (dc->token[0])
		return true;
	json_object_put(body);
	if (cb)
		cb(arg, &r);
	return false;
}

static struct json_object *user_body(const char *user, const char *password)
{
	struct json_object *body = json_object_new_object();

	if (body) {
		json_object_object_add(body, "username", json_object_new_string(user));
		json_object_object_add(body, "password", json_object_new_string(password));
	}
	return body;
}

void dir_register(struct dirclient *dc, const char *user, const char *password, dir_done *cb, void *arg)
{
	start(dc, K_REGISTER, EVHTTP_REQ_POST, "/register", false, user_body(user, password), DIR_DEADLINE_S, cb,
	      arg);
}

void dir_login(struct dirclient *dc, const char *user, const char *password, dir_done *cb, void *arg)
{
	start(dc, K_LOGIN, EVHTTP_REQ_POST, "/login", false, user_body(user, password), DIR_DEADLINE_S, cb, arg);
}

void dir_index(struct dirclient *dc, struct json_object *body, dir_done *cb, void *arg)
{
	if (need_token(dc, cb, arg, body))
		start(dc, K_INDEX, EVHTTP_REQ_POST, "/index", true, body, DIR_DEADLINE_INDEX_S, cb, arg);
}

void dir_heartbeat(struct dirclient *dc, dir_done *cb, void *arg)
{
	if (need_token(dc, cb, arg, NULL))
		start(dc, K_HEARTBEAT, EVHTTP_REQ_POST, "/heartbeat", true, NULL, DIR_DEADLINE_S, cb, arg);
}

void dir_logout(struct dirclient *dc, dir_done *cb, void *arg)
{
	if (need_token(dc, cb, arg, NULL))
		start(dc, K_LOGOUT, EVHTTP_REQ_POST, "/logout", true, NULL, DIR_DEADLINE_S, cb, arg);
}

/* "/search?" + key=VALUE (percent-encoded, any length) + tail. */
static char *search_path(const char *key, const char *value, const char *tail)
{
	char *enc = evhttp_encode_uri(value), *path = NULL;

	if (enc && asprintf(&path, "/search?%s=%s%s", key, enc, tail) < 0)
		path = NULL;
	free(enc);
	return path;
}

static void search_fail(dir_done *cb, void *arg)
{
	struct dir_result r = { .status = DIR_NO_MEMORY, .message = "out of memory" };

	if (cb)
		cb(arg, &r);
}

void dir_search(struct dirclient *dc, const char *query, long long limit, long long offset, dir_done *cb,
		void *arg)
{
	char tail[64], *path;

	if (!need_token(dc, cb, arg, NULL))
		return;
	snprintf(tail, sizeof(tail), "&limit=%lld&offset=%lld", limit, offset);
	path = search_path("q", query, tail);
	if (!path) {
		search_fail(cb, arg);
		return;
	}
	start(dc, K_SEARCH, EVHTTP_REQ_GET, path, true, NULL, DIR_DEADLINE_S, cb, arg);
	free(path);
}

void dir_search_file(struct dirclient *dc, const char *name, dir_done *cb, void *arg)
{
	char *path;

	if (!need_token(dc, cb, arg, NULL))
		return;
	path = search_path("file", name, "");
	if (!path) {
		search_fail(cb, arg);
		return;
	}
	start(dc, K_SEARCH_FILE, EVHTTP_REQ_GET, path, true, NULL, DIR_DEADLINE_S, cb, arg);
	free(path);
}

void dir_ticket(struct dirclient *dc, const char *peer, const char *file, dir_done *cb, void *arg)
{
	struct json_object *body;

	if (!need_token(dc, cb, arg, NULL))
		return;
	body = json_object_new_object();
	json_object_object_add(body, "peer", json_object_new_string(peer));
	json_object_object_add(body, "file", json_object_new_string(file));
	start(dc, K_TICKET, EVHTTP_REQ_POST, "/tickets", true, body, DIR_DEADLINE_S, cb, arg);
}

void dir_verify(struct dirclient *dc, const char *ticket, dir_done *cb, void *arg)
{
	struct json_object *body;

	if (!need_token(dc, cb, arg, NULL))
		return;
	body = json_object_new_object();
	json_object_object_add(body, "ticket", json_object_new_string(ticket));
	start(dc, K_VERIFY, EVHTTP_REQ_POST, "/tickets/verify", true, body, DIR_DEADLINE_S, cb, arg);
}

void dir_healthz(struct dirclient *dc, dir_done *cb, void *arg)
{
	start(dc, K_HEALTHZ, EVHTTP_REQ_GET, "/healthz", false, NULL, DIR_DEADLINE_HEALTH_S, cb, arg);
}

/* ---- the client -------------------------------------------------------- */

static void on_handoff(evutil_socket_t fd, short what, void *arg)
{
	struct dirclient *dc = arg;
	struct handoff *list;
	uint64_t n;

	if (read(dc->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_debug("dirclient: eventfd read: %s", strerror(errno));
	pthread_mutex_lock(&dc->lock);
	list = dc->queue;
	dc->queue = NULL;
	dc->queue_tail = &dc->queue;
	pthread_mutex_unlock(&dc->lock);
	while (list) {
		struct handoff *h = list;

		list = h->next;
		h->run(dc, h);
	}
}

/* Queue h for the loop; false when the client is shutting down (h is
 * not queued then). */
static bool handoff(struct dirclient *dc, struct handoff *h)
{
	uint64_t one = 1;

	h->next = NULL;
	pthread_mutex_lock(&dc->lock);
	if (dc->closing) {
		pthread_mutex_unlock(&dc->lock);
		return false;
	}
	*dc->queue_tail = h;
	dc->queue_tail = &h->next;
	pthread_mutex_unlock(&dc->lock);
	if (write(dc->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return false; /* it stays queued: the next wake-up runs it */
	return true;
}

int dirclient_new(struct event_base *base, const char *url, struct dirclient **out)
{
	struct dirclient *dc = calloc(1, sizeof(*dc));
	struct evhttp_uri *uri = evhttp_uri_parse(url);
	const char *host, *scheme;
	unsigned char addr[16];

	if (!dc || !uri || !(host = evhttp_uri_get_host(uri)) || !(scheme = evhttp_uri_get_scheme(uri))) {
		if (uri)
			evhttp_uri_free(uri);
		free(dc);
		return log_errno(LOG_ERR, EINVAL, "directory URL \"%s\" is not http[s]://HOST:PORT", url);
	}
	dc->base = base;
	dc->https = strcmp(scheme, "https") == 0;
	dc->port = evhttp_uri_get_port(uri);
	if (dc->port < 0)
		dc->port = dc->https ? 443 : 80;
	dc->url = strdup(url);
	dc->host = strdup(host);
	evhttp_uri_free(uri);
	pthread_mutex_init(&dc->lock, NULL);
	dc->queue_tail = &dc->queue;
	dc->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!dc->url || !dc->host || dc->efd < 0 ||
	    !(dc->ev_handoff = event_new(base, dc->efd, EV_READ | EV_PERSIST, on_handoff, dc)) ||
	    event_add(dc->ev_handoff, NULL) < 0) {
		dirclient_free(dc);
		return -ENOMEM;
	}
	/* A name is resolved without blocking the loop. */
	if (inet_pton(AF_INET, dc->host, addr) != 1 && inet_pton(AF_INET6, dc->host, addr) != 1)
		dc->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	*out = dc;
	return 0;
}

void dirclient_shutdown(struct dirclient *dc)
{
	if (!dc)
		return;
	pthread_mutex_lock(&dc->lock);
	dc->closing = true;
	pthread_mutex_unlock(&dc->lock);
	/* Hand-offs not run yet: run them now; their calls fail at once. */
	if (dc->ev_handoff)
		on_handoff(dc->efd, EV_READ, dc);
	while (dc->reqs) {
		struct dir_req *rq = dc->reqs;

		if (!rq->finished) {
			struct dir_result r = { .status = DIR_CANCELLED, .message = "p2p-peerd is stopping" };

			if (rq->req)
				evhttp_cancel_request(rq->req);
			rq->req = NULL;
			rq->finished = true;
			dc->inflight--;
			if (rq->cb)
				rq->cb(rq->arg, &r);
		}
		req_free(rq);
	}
}

void dirclient_free(struct dirclient *dc)
{
	if (!dc)
		return;
	dirclient_shutdown(dc);
	if (dc->ev_handoff)
		event_free(dc->ev_handoff);
	if (dc->dns)
		evdns_base_free(dc->dns, 0);
	if (dc->efd >= 0)
		close(dc->efd);
	pthread_mutex_destroy(&dc->lock);
	free(dc->url);
	free(dc->host);
	free(dc);
}

const char *dirclient_url(const struct dirclient *dc)
{
	return dc->url;
}

void dirclient_set_token(struct dirclient *dc, const char *token)
{
	pthread_mutex_lock(&dc->lock);
	snprintf(dc->token, sizeof(dc->token), "%s", token ? token : "");
	pthread_mutex_unlock(&dc->lock);
}

bool dirclient_has_token(struct dirclient *dc)
{
	bool in;

	pthread_mutex_lock(&dc->lock);
	in = dc->token[0] != '\0';
	pthread_mutex_unlock(&dc->lock);
	return in;
}

double dirclient_oldest_call(const struct dirclient *dc)
{
	double oldest = 0;

	for (const struct dir_req *rq = dc->reqs; rq; rq = rq->next)
		if (!rq->finished && (oldest == 0 || rq->started < oldest))
			oldest = rq->started;
	return oldest;
}

double dirclient_last_answer(const struct dirclient *dc)
{
	return dc->last_answer;
}

/* ---- from other threads ------------------------------------------------- */

struct verify_job {
	struct handoff h;
	char ticket[SHA256_HEX_LEN + 1];
	ticket_verify_done *done;
	void *arg;
};

static void verify_answered(void *arg, const struct dir_result *r)
{
	struct verify_job *j = arg;
	int result;

	switch (r->status) {
	case DIR_OK: result = 1; break;
	case DIR_FORBIDDEN: case DIR_NOT_FOUND: case DIR_REJECTED: case DIR_BAD_REPLY: result = 0; break;
	case DIR_NOT_LOGGED_IN: case DIR_UNAUTHORIZED: result = -ENOTCONN; break;
	case DIR_NO_MEMORY: result = -ENOMEM; break;
	default: result = -EHOSTUNREACH; break;
	}
	j->done(j->arg, result, result == 1 ? r->file : NULL);
	free(j);
}

static void verify_run(struct dirclient *dc, struct handoff *h)
{
	struct verify_job *j = (struct verify_job *)h;

	dir_verify(dc, j->ticket, verify_answered, j);
}

void dirclient_verify_ticket(void *ctx, const char *ticket, ticket_verify_done *done, void *arg)
{
	struct dirclient *dc = ctx;
	struct verify_job *j = calloc(1, sizeof(*j));

	if (!j) {
		done(arg, -ENOMEM, NULL);
		return;
	}
	j->h.run = verify_run;
	snprintf(j->ticket, sizeof(j->ticket), "%s", ticket);
	j->done = done;
	j->arg = arg;
	if (!handoff(dc, &j->h)) {
		free(j);
		done(arg, -EHOSTUNREACH, NULL);
	}
}

/* A thread waiting for one answer. */
struct wait_job {
	struct handoff h;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	/* the call */
	enum dir_kind kind;
	const char *peer, *file;
	/* the answer */
	enum dir_status status;
	int http;
	bool timed_out;
	char out[SHA256_HEX_LEN + 1];
	struct json_object *json;
};

static void wait_answered(void *arg, const struct dir_result *r)
{
	struct wait_job *j = arg;

	pthread_mutex_lock(&j->lock);
	j->status = r->status;
	j->http = r->http;
	j->timed_out = r->timed_out;
	if (r->ticket)
		snprintf(j->out, sizeof(j->out), "%s", r->ticket);
	j->json = json_object_get(r->json);
	j->done = true;
	pthread_cond_signal(&j->cond);
	pthread_mutex_unlock(&j->lock);
}

static void wait_run(struct dirclient *dc, struct handoff *h)
{
	struct wait_job *j = (struct wait_job *)h;

	dir_ticket(dc, j->peer, j->file, wait_answered, j);
}

static void wait_for(struct dirclient *dc, struct wait_job *j)
{
	pthread_mutex_init(&j->lock, NULL);
	pthread_cond_init(&j->cond, NULL);
	j->h.run = wait_run;
	if (!handoff(dc, &j->h)) {
		j->status = DIR_CANCELLED;
		j->done = true;
	}
	pthread_mutex_lock(&j->lock);
	while (!j->done)
		pthread_cond_wait(&j->cond, &j->lock);
	pthread_mutex_unlock(&j->lock);
	pthread_mutex_destroy(&j->lock);
	pthread_cond_destroy(&j->cond);
}

int dirclient_ticket_wait(struct dirclient *dc, const char *peer, const char *file, char out[SHA256_HEX_LEN + 1])
{
	struct wait_job j = { .kind = K_TICKET, .peer = peer, .file = file };

	if (!dirclient_has_token(dc))
		return -ENOTCONN;
	wait_for(dc, &j);
	json_object_put(j.json);
	switch (j.status) {
	case DIR_OK:
		snprintf(out, SHA256_HEX_LEN + 1, "%s", j.out);
		return 0;
	case DIR_NOT_FOUND: return -ENOENT;
	case DIR_NOT_LOGGED_IN: case DIR_UNAUTHORIZED: return -ENOTCONN;
	case DIR_NO_MEMORY: return -ENOMEM;
	case DIR_SERVER_ERROR: return -EHOSTUNREACH;
	case DIR_UNREACHABLE: case DIR_CANCELLED: return j.timed_out ? -ETIMEDOUT : -EHOSTUNREACH;
	default: return -EACCES;
	}
}
