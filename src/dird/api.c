/* SPDX-License-Identifier: MIT */
/* api.c — p2p-dird's REST API on libevent's evhttp.
 *
 * Every request goes through one function, api_dispatch(), which validates
 * in a fixed order before any handler runs: route (404), method (405 with
 * Allow; HEAD is answered as GET without the body), URI (no NUL, valid
 * UTF-8), authentication (401), body (size 413, JSON object, UTF-8: 400).
 * Handlers then check their own fields. Every answer is JSON
 * {"error": "..."} on failure; nothing here ever answers HTML.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <sys/queue.h>

#include <event2/keyvalq_struct.h>
#include <json-c/json.h>

#include "crypto.h"
#include "dird.h"
#include "log.h"
#include "openapi.h"
#include "procmetrics.h"
#include "validate.h"

#define PASSWORD_MAX 1024
#define FOLDER_MAX 4096
#define SEARCH_LIMIT_DEFAULT 50
#define SEARCH_LIMIT_MAX 1000
/* Bodies up to this size may be parsed on the event loop (~1 ms at most). */
#define INLINE_BODY_MAX 65536

struct route_def {
	const char *path;
	enum evhttp_cmd_type method; /* GET routes also answer HEAD */
	const char *allow;
	bool auth;    /* needs a Bearer session token */
	bool body;    /* expects a JSON object body */
	const char *name; /* metrics label */
	bool slow;    /* hashes a password (yescrypt, ~40 ms) or parses and
		       * stores a whole file list: never on the loop */
};

static const struct route_def routes[R_COUNT] = {
	[R_REGISTER] = { "/register", EVHTTP_REQ_POST, "POST", false, true, "register", true },
	[R_LOGIN] = { "/login", EVHTTP_REQ_POST, "POST", false, true, "login", true },
	[R_LOGOUT] = { "/logout", EVHTTP_REQ_POST, "POST", true, false, "logout", false },
	[R_VERIFY_LOGIN] = { "/verifyLogin", EVHTTP_REQ_POST, "POST", true, false, "verifyLogin", false },
	[R_INDEX] = { "/index", EVHTTP_REQ_POST, "POST", true, true, "index", true },
	[R_HEARTBEAT] = { "/heartbeat", EVHTTP_REQ_POST, "POST", true, false, "heartbeat", false },
	[R_SEARCH] = { "/search", EVHTTP_REQ_GET, "GET, HEAD", true, false, "search", false },
	[R_TICKETS] = { "/tickets", EVHTTP_REQ_POST, "POST", true, true, "tickets", false },
	[R_TICKETS_VERIFY] = { "/tickets/verify", EVHTTP_REQ_POST, "POST", true, true, "tickets_verify", false },
	[R_HEALTHZ] = { "/healthz", EVHTTP_REQ_GET, "GET, HEAD", false, false, "healthz", false },
	[R_METRICS] = { "/metrics", EVHTTP_REQ_GET, "GET, HEAD", false, false, "metrics", false },
	[R_OPENAPI] = { "/openapi.json", EVHTTP_REQ_GET, "GET, HEAD", false, false, "openapi", false },
	[R_OTHER] = { NULL, 0, NULL, false, false, "other", false },
};

static const int metric_codes[METRIC_CODES] = {
	200, 201, 400, 401, 403, 404, 405, 409, 413, 429, 500, 503, 0,
};

static const double latency_bounds[METRIC_BUCKETS - 1] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
};

/* One request being answered. The event loop's thread reads everything a
 * handler needs out of the evhttp request (dispatch) and sends the answer
 * (finish); the handler in between may run on a worker thread (pool.h), so
 * it touches only the call and thread-safe state: the store, the login
 * limiters under their lock, and the settings copied into the call. */
struct call {
	struct dird *d;
	struct evhttp_request *req;       /* loop thread only */
	enum route route;
	struct timespec start;
	struct dird_settings set;         /* as the request arrived (no strings) */
	char addr[INET6_ADDRSTRLEN + 8];  /* the client's address */
	char token_hash[SHA256_HEX_LEN + 1]; /* of the Bearer token, "" if none */
	char user[USERNAME_MAX + 1];      /* from the session, when auth */
	bool authed;                      /* user found already (on the loop) */
	struct evbuffer *in;              /* the body, moved out of req for a worker */
	struct json_object *body;         /* parsed body, when expected */
	struct evkeyvalq query;
	bool have_query;

	/* The answer. */
	int code;
	const char *ctype;
	char *text;
	size_t len;
	struct { const char *name; char value[32]; } hdr[2];
	int nhdr;
	void (*render)(struct call *c);   /* runs on the loop before sending */
	struct store_counts counts;       /* for render_metrics */
	struct store_replica replica;     /* for render_metrics */
	struct pool_job job;
	bool beat;                        /* authenticated, its beat not written:
					   * joins the next batch (beats_add) */
	struct call *next_beat;
};

/* Heartbeats on a database server, in batches: the loop collects the
 * authenticated beats, and one worker at a time writes every beat
 * collected so far (up to BEATS_MAX) in one statement, while the next ones
 * collect. Nothing waits for a batch to fill; the pending list is bounded
 * by the open connections (one request each). */
#define BEATS_MAX 4096
struct api_beats {
	struct pool_job job;
	struct dird *d;
	struct call *pending, **tail;
	size_t n;                         /* > 0: the job is with a worker */
	struct call *batch[BEATS_MAX];
	const char *users[BEATS_MAX];
	int result[BEATS_MAX];
};

int64_t dird_now(void)
{
	return (int64_t)time(NULL);
}

static double elapsed(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static void metrics_record(struct dird *d, enum route r, int code, double seconds)
{
	int slot = METRIC_CODES - 1;

	for (int i = 0; i < METRIC_CODES && metric_codes[i]; i++)
		if (metric_codes[i] == code) {
			slot = i;
			break;
		}
	d->metrics.requests[r][slot]++;
	for (int i = 0; i < METRIC_BUCKETS - 1; i++)
		if (seconds <= latency_bounds[i]) {
			d->metrics.latency_bucket[i]++;
			goto counted;
		}
	d->metrics.latency_bucket[METRIC_BUCKETS - 1]++;
counted:
	d->metrics.latency_count++;
	d->metrics.latency_sum += seconds;
}

/* Records the answer; finish() sends it. */
static void send_text(struct call *c, int code, const char *ctype, const char *text, size_t len)
{
	free(c->text);
	c->text = malloc(len ? len : 1);
	if (!c->text) {
		static const char oom[] = "{\"error\":\"out of memory\"}";

		c->text = strdup(oom);
		len = c->text ? sizeof(oom) - 1 : 0;
		code = 500;
		ctype = "application/json";
	} else {
		memcpy(c->text, text, len);
	}
	c->code = code;
	c->ctype = ctype;
	c->len = len;
}

/* An extra header for the answer (Allow, WWW-Authenticate, Retry-After). */
static void reply_header(struct call *c, const char *name, const char *value)
{
	if (c->nhdr < (int)(sizeof(c->hdr) / sizeof(c->hdr[0]))) {
		c->hdr[c->nhdr].name = name;
		snprintf(c->hdr[c->nhdr].value, sizeof(c->hdr[c->nhdr].value), "%s", value);
		c->nhdr++;
	}
}

static const char *reason_phrase(int code)
{
	switch (code) {
	case 200: return "OK";
	case 201: return "Created";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 429: return "Too Many Requests";
	case 503: return "Service Unavailable";
	default: return "Internal Server Error";
	}
}

/* Send obj (consumed) as the JSON answer. */
static void reply_json(struct call *c, int code, struct json_object *obj)
{
	size_t len;
	const char *text;

	if (!obj) {
		static const char oom[] = "{\"error\":\"out of memory\"}";
		send_text(c, 500, "application/json", oom, sizeof(oom) - 1);
		return;
	}
	text = json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	send_text(c, code, "application/json", text, len);
	json_object_put(obj);
}

static void reply_error(struct call *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void reply_error(struct call *c, int code, const char *fmt, ...)
{
	struct json_object *o = json_object_new_object();
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (o)
		json_object_object_add(o, "error", json_object_new_string(msg));
	reply_json(c, code, o);
}

/* A storage failure: 500 with a generic message (the detail is in the log). */
static void reply_store_error(struct call *c, int r)
{
	if (r == -EAGAIN) {
		/* The database is out of reach, or this replica too far behind
		 * it to answer right: another replica, or a moment, may do. */
		reply_header(c, "Retry-After", "1");
		reply_error(c, 503, "the directory's database is unavailable or this replica lags it; retry");
	} else if (r == -ENOMEM)
		reply_error(c, 500, "out of memory");
	else
		reply_error(c, 500, "internal error: the database failed (see the server log)");
}

static void add_str(struct json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, v ? json_object_new_string(v) : NULL);
}

static void add_int(struct json_object *o, const char *k, int64_t v)
{
	json_object_object_add(o, k, json_object_new_int64(v));
}

/* ---- input helpers ------------------------------------------------------ */

/* Fetch a string field; returns NULL and answers 400 if absent or not a
 * string or not valid UTF-8 (json-c validated it) or longer than max. */
static const char *field_string(struct call *c, const char *key, size_t max, bool required)
{
	struct json_object *v;
	const char *s;

	if (!json_object_object_get_ex(c->body, key, &v) || json_object_is_type(v, json_type_null)) {
		if (required)
			reply_error(c, 400, "missing field \"%s\"", key);
		return NULL;
	}
	if (!json_object_is_type(v, json_type_string)) {
		reply_error(c, 400, "field \"%s\" must be a string", key);
		return NULL;
	}
	s = json_object_get_string(v);
	if ((size_t)json_object_get_string_len(v) != strlen(s)) {
		reply_error(c, 400, "field \"%s\" contains a NUL byte", key);
		return NULL;
	}
	if (strlen(s) > max) {
		reply_error(c, 400, "field \"%s\" is longer than %zu bytes", key, max);
		return NULL;
	}
	return s;
}

static const char *field_username(struct call *c, const char *key)
{
	const char *s = field_string(c, key, USERNAME_MAX * 4, true);

	if (s && !valid_username(s)) {
		reply_error(c, 400, "field \"%s\": a user name is 1-64 characters of A-Z a-z 0-9 _ . -", key);
		return NULL;
	}
	return s;
}

static const char *field_filename(struct call *c, const char *key)
{
	const char *s = field_string(c, key, FILENAME_MAX_BYTES * 4, true);

	if (s && !valid_filename(s, strlen(s))) {
		reply_error(c, 400, "field \"%s\": a file name is 1-255 bytes of UTF-8 without '/', not \".\" or \"..\"", key);
		return NULL;
	}
	return s;
}

static const char *field_password(struct call *c)
{
	const char *s = field_string(c, "password", PASSWORD_MAX, true);

	if (s && !*s) {
		reply_error(c, 400, "field \"password\" must not be empty");
		return NULL;
	}
	return s;
}

/* Strict non-negative decimal. */
static bool parse_uint(const char *s, long long max, long long *out)
{
	long long v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (*s - '0');
		if (v > max)
			return false;
	}
	*out = v;
	return true;
}

/* ---- handlers ----------------------------------------------------------- */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Answers 429 with Retry-After (wait_ms rounded up to seconds). */
static void reply_throttled(struct call *c, uint64_t wait_ms, const char *what)
{
	char retry[32];

	snprintf(retry, sizeof(retry), "%llu", (unsigned long long)(wait_ms + 999) / 1000);
	reply_header(c, "Retry-After", retry);
	reply_error(c, 429, "too many %s; retry in %s s", what, retry);
}

/* One registration per token of the source address's bucket: each costs a
 * yescrypt run and a row. */
static bool register_allowed(struct call *c, const char *user)
{
	uint64_t wait = 0;
	bool ok;

	pthread_mutex_lock(&c->d->login_lock);
	ok = ratelimit_take(c->d->register_by_addr, c->addr, now_ms(), &wait);
	pthread_mutex_unlock(&c->d->login_lock);
	if (ok)
		return true;
	log_notice("registration of %s from %s throttled", user, c->addr);
	reply_throttled(c, wait, "registrations from this address");
	return false;
}

static void handle_register(struct call *c)
{
	const char *user, *password;
	char *hash = NULL;
	struct json_object *o;
	int r;

	if (!c->set.registration) {
		reply_error(c, 403, "registration is closed on this directory");
		return;
	}
	if (!(user = field_username(c, "username")) || !(password = field_password(c)))
		return;
	if (!register_allowed(c, user))
		return;
	r = auth_hash_password(password, &hash);
	if (r < 0) {
		reply_error(c, 500, "cannot hash the password");
		return;
	}
	r = store_user_create(c->d->store, user, hash, dird_now());
	free(hash);
	if (r == -EEXIST) {
		reply_error(c, 409, "user \"%s\" already exists (user names are compared without case)", user);
		return;
	}
	if (r < 0) {
		reply_store_error(c, r);
		return;
	}
	log_info("registered user %s", user);
	o = json_object_new_object();
	add_str(o, "username", user);
	reply_json(c, 201, o);
}

static bool login_allowed(struct call *c, const char *user)
{
	uint64_t wait_user = 0, wait_addr = 0, wait, now = now_ms();
	char key[USERNAME_MAX + 1];
	bool ok_user, ok_addr;
	size_t i;

	/* Names compare without ASCII case: Alice and alice share a bucket. */
	for (i = 0; user[i] && i < USERNAME_MAX; i++)
		key[i] = user[i] >= 'A' && user[i] <= 'Z' ? (char)(user[i] - 'A' + 'a') : user[i];
	key[i] = '\0';
	pthread_mutex_lock(&c->d->login_lock);
	ok_addr = ratelimit_take(c->d->login_by_addr, c->addr, now, &wait_addr);
	ok_user = ratelimit_take(c->d->login_by_user, key, now, &wait_user);
	pthread_mutex_unlock(&c->d->login_lock);
	if (ok_user && ok_addr)
		return true;
	wait = wait_user > wait_addr ? wait_user : wait_addr;
	log_notice("login for %s from %s throttled", user, c->addr);
	reply_throttled(c, wait, "login attempts");
	return false;
}

static void handle_login(struct call *c)
{
	const char *user, *password;
	char *hash = NULL, token[SHA256_HEX_LEN + 1], token_hash[SHA256_HEX_LEN + 1];
	struct json_object *o;
	int64_t expires;
	int r;

	if (!(user = field_username(c, "username")) || !(password = field_password(c)))
		return;
	if (!login_allowed(c, user))
		return;
	r = store_user_hash(c->d->store, user, &hash);
	if (r == -ENOENT) {
		auth_burn_time(password);
		reply_error(c, 401, "wrong user name or password");
		return;
	}
	if (r < 0) {
		reply_store_error(c, r);
		return;
	}
	if (!auth_check_password(password, hash)) {
		free(hash);
		log_notice("failed login for %s", user);
		reply_error(c, 401, "wrong user name or password");
		return;
	}
	free(hash);
	if (crypto_token(token) < 0) {
		reply_error(c, 500, "cannot make a token");
		return;
	}
	crypto_sha256_hex(token, SHA256_HEX_LEN, token_hash);
	expires = dird_now() + c->set.session_lifetime;
	r = store_session_create(c->d->store, user, token_hash, expires);
	if (r < 0) {
		reply_store_error(c, r);
		return;
	}
	log_info("user %s logged in", user);
	o = json_object_new_object();
	add_str(o, "token", token);
	add_int(o, "expires_at", expires);
	add_str(o, "message", "login successful");
	explicit_bzero(token, sizeof(token));
	reply_json(c, 200, o);
}

/* The SHA-256 of the request's Bearer token into out ("" if none). */
static void bearer_hash(struct evhttp_request *req, char out[SHA256_HEX_LEN + 1])
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");

	out[0] = '\0';
	if (h && strncasecmp(h, "Bearer ", 7) == 0 && valid_sha256_hex(h + 7))
		crypto_sha256_hex(h + 7, SHA256_HEX_LEN, out);
}

static void handle_logout(struct call *c)
{
	struct json_object *o;
	int r;

	r = store_session_delete(c->d->store, c->token_hash);
	if (r < 0 && r != -ENOENT) {
		reply_store_error(c, r);
		return;
	}
	log_info("user %s logged out", c->user);
	o = json_object_new_object();
	add_str(o, "message", "logged out");
	reply_json(c, 200, o);
}

static void handle_verify_login(struct call *c)
{
	char user[USERNAME_MAX + 1];
	struct json_object *o;
	int64_t expires = 0;

	if (store_session_lookup(c->d->store, c->token_hash, dird_now(), user, &expires) < 0) {
		reply_header(c, "WWW-Authenticate", "Bearer");
		reply_error(c, 401, "invalid or expired token");
		return;
	}
	o = json_object_new_object();
	add_str(o, "username", user);
	add_int(o, "expires_at", expires);
	reply_json(c, 200, o);
}

static bool parse_port(struct json_object *v, int *port)
{
	long long p;

	if (json_object_is_type(v, json_type_int)) {
		errno = 0;
		p = json_object_get_int64(v);
		if (errno)
			return false;
	} else if (!json_object_is_type(v, json_type_string) ||
		   !parse_uint(json_object_get_string(v), 65535, &p)) {
		return false;
	}
	if (p < 1 || p > 65535)
		return false;
	*port = (int)p;
	return true;
}

static bool valid_ip(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static bool unspecified_ip(const char *s)
{
	return !*s || !strcmp(s, "0.0.0.0") || !strcmp(s, "::");
}

static void handle_index(struct call *c)
{
	struct json_object *v, *files, *seen = NULL, *o;
	struct store_file *list = NULL;
	const char *ip, *folder;
	int port, r;
	size_t n;

	ip = field_string(c, "ip", 64, false);
	if (!ip && json_object_object_get_ex(c->body, "ip", &v) && !json_object_is_type(v, json_type_null))
		return; /* answered */
	if (!ip || unspecified_ip(ip)) {
		/* A peer bound to 0.0.0.0 is reachable where it called from. */
		ip = c->addr;
	} else if (!valid_ip(ip)) {
		reply_error(c, 400, "field \"ip\" must be an IPv4 or IPv6 address");
		return;
	}
	if (!json_object_object_get_ex(c->body, "port", &v)) {
		reply_error(c, 400, "missing field \"port\"");
		return;
	}
	if (!parse_port(v, &port)) {
		reply_error(c, 400, "field \"port\" must be a port number 1-65535");
		return;
	}
	folder = field_string(c, "folder", FOLDER_MAX, false);
	if (!folder) {
		if (json_object_object_get_ex(c->body, "folder", &v) && !json_object_is_type(v, json_type_null))
			return;
		folder = "";
	}
	if (!json_object_object_get_ex(c->body, "files", &files)) {
		reply_error(c, 400, "missing field \"files\"");
		return;
	}
	if (!json_object_is_type(files, json_type_array)) {
		reply_error(c, 400, "field \"files\" must be a list");
		return;
	}
	n = json_object_array_length(files);
	if ((long long)n > c->set.max_files) {
		reply_error(c, 413, "%zu files are more than this directory takes from one peer (max_files %lld)",
			    n, c->set.max_files);
		return;
	}
	list = calloc(n ? n : 1, sizeof(*list));
	seen = json_object_new_object();
	if (!list || !seen) {
		reply_error(c, 500, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *f = json_object_array_get_idx(files, i), *fv;
		struct store_file *sf = &list[i];

		sf->size = -1;
		sf->sha256 = "";
		if (json_object_is_type(f, json_type_string)) {
			sf->name = json_object_get_string(f); /* the seed's form */
			if ((size_t)json_object_get_string_len(f) != strlen(sf->name))
				sf->name = NULL;
		} else if (json_object_is_type(f, json_type_object)) {
			if (json_object_object_get_ex(f, "name", &fv) && json_object_is_type(fv, json_type_string) &&
			    (size_t)json_object_get_string_len(fv) == strlen(json_object_get_string(fv)))
				sf->name = json_object_get_string(fv);
			if (json_object_object_get_ex(f, "size", &fv) && !json_object_is_type(fv, json_type_null)) {
				errno = 0;
				if (!json_object_is_type(fv, json_type_int) || (sf->size = json_object_get_int64(fv)) < 0 || errno) {
					reply_error(c, 400, "files[%zu].size must be a non-negative integer", i);
					goto out;
				}
			}
			if (json_object_object_get_ex(f, "sha256", &fv) && !json_object_is_type(fv, json_type_null)) {
				if (!json_object_is_type(fv, json_type_string) || !valid_sha256_hex(json_object_get_string(fv))) {
					reply_error(c, 400, "files[%zu].sha256 must be 64 lowercase hex digits", i);
					goto out;
				}
				sf->sha256 = json_object_get_string(fv);
			}
		} else {
			reply_error(c, 400, "files[%zu] must be a name or an object {\"name\",\"size\",\"sha256\"}", i);
			goto out;
		}
		if (!sf->name || !valid_filename(sf->name, strlen(sf->name))) {
			reply_error(c, 400, "files[%zu]: a file name is 1-255 bytes of UTF-8 without '/', not \".\" or \"..\"", i);
			goto out;
		}
		if (json_object_object_get_ex(seen, sf->name, NULL)) {
			reply_error(c, 400, "files[%zu]: \"%s\" is listed twice", i, sf->name);
			goto out;
		}
		json_object_object_add(seen, sf->name, NULL);
	}
	r = store_index(c->d->store, c->user, ip, port, folder, list, n, dird_now());
	if (r < 0) {
		reply_store_error(c, r);
		goto out;
	}
	log_debug("user %s indexed %zu files at %s:%d", c->user, n, ip, port);
	o = json_object_new_object();
	add_str(o, "status", "success");
	add_int(o, "indexed", (int64_t)n);
	reply_json(c, 200, o);
out:
	json_object_put(seen);
	free(list);
}

static void reply_heartbeat(struct call *c, int r)
{
	struct json_object *o;

	if (r == -ENOENT) {
		reply_error(c, 409, "nothing indexed yet: POST /index first");
		return;
	}
	if (r < 0) {
		reply_store_error(c, r);
		return;
	}
	o = json_object_new_object();
	add_str(o, "status", "ok");
	add_int(o, "ttl", c->set.ttl);
	reply_json(c, 200, o);
}

static void handle_heartbeat(struct call *c)
{
	/* On a database server, the beat joins a batch (beats_add). */
	if (c->d->pool && store_remote(c->d->store)) {
		c->beat = true;
		return;
	}
	reply_heartbeat(c, store_heartbeat(c->d->store, c->user, dird_now()));
}

static int hit_to_json(const struct store_hit *h, void *ctx)
{
	struct json_object *arr = ctx, *o = json_object_new_object();

	if (!o)
		return -ENOMEM;
	add_str(o, "peer", h->peer);
	add_str(o, "ip", h->ip);
	add_int(o, "port", h->port);
	add_str(o, "folder", h->folder);
	add_str(o, "name", h->name);
	if (h->size >= 0)
		add_int(o, "size", h->size);
	else
		json_object_object_add(o, "size", NULL);
	add_str(o, "sha256", h->sha256 && *h->sha256 ? h->sha256 : NULL);
	return json_object_array_add(arr, o) == 0 ? 0 : -ENOMEM;
}

static const char *query_param(struct call *c, const char *key, bool *bad)
{
	const char *v = evhttp_find_header(&c->query, key);

	if (v && !valid_utf8(v, strlen(v))) {
		reply_error(c, 400, "query parameter \"%s\" is not valid UTF-8", key);
		*bad = true;
		return NULL;
	}
	return v;
}

static void handle_search(struct call *c)
{
	bool bad = false;
	const char *file = query_param(c, "file", &bad), *q = query_param(c, "q", &bad);
	const char *limit_s = query_param(c, "limit", &bad), *offset_s = query_param(c, "offset", &bad);
	int64_t alive = dird_now() - c->set.ttl, total = 0;
	long long limit = SEARCH_LIMIT_DEFAULT, offset = 0;
	bool exact = true;
	struct json_object *arr, *o;
	int r;

	if (bad)
		return;
	if ((file != NULL) == (q != NULL)) {
		reply_error(c, 400, "give exactly one of ?file=NAME (exact) or ?q=TEXT (substring)");
		return;
	}
	if (limit_s && (!parse_uint(limit_s, SEARCH_LIMIT_MAX, &limit) || limit < 1)) {
		reply_error(c, 400, "limit must be an integer from 1 to %d", SEARCH_LIMIT_MAX);
		return;
	}
	if (offset_s && !parse_uint(offset_s, INT32_MAX, &offset)) {
		reply_error(c, 400, "offset must be a non-negative integer");
		return;
	}
	arr = json_object_new_array();
	if (!arr) {
		reply_error(c, 500, "out of memory");
		return;
	}
	if (file) {
		if (!valid_filename(file, strlen(file))) {
			json_object_put(arr);
			reply_error(c, 400, "file: a file name is 1-255 bytes of UTF-8 without '/', not \".\" or \"..\"");
			return;
		}
		r = store_search_exact(c->d->store, file, alive, hit_to_json, arr);
		if (r < 0) {
			json_object_put(arr);
			reply_store_error(c, r);
			return;
		}
		if (json_object_array_length(arr) == 0) {
			json_object_put(arr);
			o = json_object_new_object();
			add_str(o, "message", "no online peer has this file");
			reply_json(c, 404, o);
			return;
		}
		o = json_object_new_object();
		json_object_object_add(o, "peers_with_file", arr);
		reply_json(c, 200, o);
		return;
	}
	if (!*q || strlen(q) > FILENAME_MAX_BYTES) {
		json_object_put(arr);
		reply_error(c, 400, "q must be 1-255 bytes");
		return;
	}
	r = store_search_substring(c->d->store, q, alive, limit, offset, &total, &exact, hit_to_json, arr);
	if (r < 0) {
		json_object_put(arr);
		reply_store_error(c, r);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "results", arr);
	add_int(o, "total", total);
	json_object_object_add(o, "total_exact", json_object_new_boolean(exact));
	add_int(o, "limit", limit);
	add_int(o, "offset", offset);
	reply_json(c, 200, o);
}

struct peer_has {
	const char *peer;
	bool found;
};

static int check_peer_has(const struct store_hit *h, void *ctx)
{
	struct peer_has *ph = ctx;

	/* User names are compared without ASCII case, as the store does. */
	if (strcasecmp(h->peer, ph->peer) == 0)
		ph->found = true;
	return 0;
}

static void handle_tickets(struct call *c)
{
	const char *peer, *file;
	char ticket[SHA256_HEX_LEN + 1], th[SHA256_HEX_LEN + 1];
	struct peer_has ph = { 0 };
	struct json_object *o;
	int64_t expires;
	int r;

	if (!(peer = field_username(c, "peer")) || !(file = field_filename(c, "file")))
		return;
	ph.peer = peer;
	r = store_search_exact(c->d->store, file, dird_now() - c->set.ttl, check_peer_has, &ph);
	if (r < 0) {
		reply_store_error(c, r);
		return;
	}
	if (!ph.found) {
		reply_error(c, 404, "peer \"%s\" is not online with \"%s\"", peer, file);
		return;
	}
	if (crypto_token(ticket) < 0) {
		reply_error(c, 500, "cannot make a ticket");
		return;
	}
	crypto_sha256_hex(ticket, SHA256_HEX_LEN, th);
	expires = dird_now() + c->set.ticket_lifetime;
	r = store_ticket_create(c->d->store, th, c->user, peer, file, expires);
	if (r == -ENOENT) {
		reply_error(c, 404, "no such peer \"%s\"", peer);
		return;
	}
	if (r < 0) {
		reply_store_error(c, r);
		return;
	}
	o = json_object_new_object();
	add_str(o, "ticket", ticket);
	add_int(o, "expires_at", expires);
	reply_json(c, 201, o);
}

static void handle_tickets_verify(struct call *c)
{
	const char *ticket = field_string(c, "ticket", 128, true);
	char th[SHA256_HEX_LEN + 1], user[USERNAME_MAX + 1], file[FILENAME_MAX_BYTES + 1];
	struct json_object *o;
	int r;

	if (!ticket)
		return;
	if (!valid_sha256_hex(ticket)) {
		reply_error(c, 403, "invalid ticket");
		return;
	}
	crypto_sha256_hex(ticket, SHA256_HEX_LEN, th);
	r = store_ticket_verify(c->d->store, th, c->user, dird_now(), user, file);
	if (r == -ENOENT) {
		reply_error(c, 403, "the ticket is unknown, expired, or for another peer");
		return;
	}
	if (r < 0) {
		reply_store_error(c, r);
		return;
	}
	o = json_object_new_object();
	add_str(o, "username", user);
	add_str(o, "file", file);
	reply_json(c, 200, o);
}

/* 200 when the database answers and, on a replica, its view of the
 * database is within max_staleness; 503 otherwise. */
static void handle_healthz(struct call *c)
{
	struct json_object *o = json_object_new_object();
	bool ok = store_ping(c->d->store) == 0;
	struct store_replica rep;

	store_replica_status(c->d->store, &rep);
	if (rep.replicated && !rep.fresh)
		ok = false;
	add_str(o, "status", ok ? "ok" : "unavailable");
	if (rep.replicated) {
		json_object_object_add(o, "staleness_seconds", json_object_new_double(rep.staleness));
		json_object_object_add(o, "max_staleness_seconds", json_object_new_double(rep.max_staleness));
		add_int(o, "change", rep.seq);
		add_int(o, "database_change", rep.seq_seen);
	}
	reply_json(c, ok ? 200 : 503, o);
}

/* On the loop thread: the counters live there. */
static void render_metrics(struct call *c)
{
	struct dird *d = c->d;
	struct evbuffer *b = evbuffer_new();
	uint64_t cum = 0;
	size_t len;
	char *text;

	if (!b) {
		reply_error(c, 500, "out of memory");
		return;
	}
	d->counts = c->counts;
	procmetrics_write(b, "p2p-dird");
	evbuffer_add_printf(b, "# HELP p2p_dird_requests_total HTTP requests answered, by route and status code.\n"
			    "# TYPE p2p_dird_requests_total counter\n");
	for (int r = 0; r < R_COUNT; r++)
		for (int k = 0; k < METRIC_CODES; k++)
			if (d->metrics.requests[r][k]) {
				char code[8];

				if (metric_codes[k])
					snprintf(code, sizeof(code), "%d", metric_codes[k]);
				else
					snprintf(code, sizeof(code), "other");
				evbuffer_add_printf(b, "p2p_dird_requests_total{route=\"%s\",code=\"%s\"} %llu\n",
						    routes[r].name, code,
						    (unsigned long long)d->metrics.requests[r][k]);
			}
	evbuffer_add_printf(b, "# HELP p2p_dird_request_duration_seconds Time to answer a request once it was read.\n"
			    "# TYPE p2p_dird_request_duration_seconds histogram\n");
	for (int i = 0; i < METRIC_BUCKETS; i++) {
		cum += d->metrics.latency_bucket[i];
		if (i < METRIC_BUCKETS - 1)
			evbuffer_add_printf(b, "p2p_dird_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
					    latency_bounds[i], (unsigned long long)cum);
		else
			evbuffer_add_printf(b, "p2p_dird_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
					    (unsigned long long)cum);
	}
	evbuffer_add_printf(b, "p2p_dird_request_duration_seconds_sum %.6f\n"
			    "p2p_dird_request_duration_seconds_count %llu\n",
			    d->metrics.latency_sum, (unsigned long long)d->metrics.latency_count);
	evbuffer_add_printf(b,
			    "# HELP p2p_dird_users Registered users.\n# TYPE p2p_dird_users gauge\np2p_dird_users %lld\n"
			    "# HELP p2p_dird_sessions Unexpired sessions.\n# TYPE p2p_dird_sessions gauge\np2p_dird_sessions %lld\n"
			    "# HELP p2p_dird_peers_online Peers heard from within the TTL.\n# TYPE p2p_dird_peers_online gauge\np2p_dird_peers_online %lld\n"
			    "# HELP p2p_dird_files_indexed Files shared by online peers.\n# TYPE p2p_dird_files_indexed gauge\np2p_dird_files_indexed %lld\n"
			    "# HELP p2p_dird_connections Open client connections.\n# TYPE p2p_dird_connections gauge\np2p_dird_connections %d\n",
			    (long long)d->counts.users, (long long)d->counts.sessions,
			    (long long)d->counts.peers_online, (long long)d->counts.files_online,
			    d->connections);
	if (c->replica.replicated)
		evbuffer_add_printf(b,
				    "# HELP p2p_dird_replica_staleness_seconds Time since this replica's view was last known to match the database.\n"
				    "# TYPE p2p_dird_replica_staleness_seconds gauge\np2p_dird_replica_staleness_seconds %.3f\n"
				    "# HELP p2p_dird_replica_max_staleness_seconds Staleness past which searches answer 503.\n"
				    "# TYPE p2p_dird_replica_max_staleness_seconds gauge\np2p_dird_replica_max_staleness_seconds %.3f\n"
				    "# HELP p2p_dird_replica_change Last change applied to this replica's view.\n"
				    "# TYPE p2p_dird_replica_change gauge\np2p_dird_replica_change %lld\n"
				    "# HELP p2p_dird_replica_connected Whether the change stream's connection is up.\n"
				    "# TYPE p2p_dird_replica_connected gauge\np2p_dird_replica_connected %d\n"
				    "# HELP p2p_dird_replica_changes_applied_total Changes applied from the stream.\n"
				    "# TYPE p2p_dird_replica_changes_applied_total counter\np2p_dird_replica_changes_applied_total %llu\n"
				    "# HELP p2p_dird_replica_reloads_total Full loads of the view from the database.\n"
				    "# TYPE p2p_dird_replica_reloads_total counter\np2p_dird_replica_reloads_total %llu\n"
				    "# HELP p2p_dird_replica_follower_queries_total Statements the change-stream follower sent.\n"
				    "# TYPE p2p_dird_replica_follower_queries_total counter\np2p_dird_replica_follower_queries_total %llu\n"
				    "# HELP p2p_dird_replica_session_cache_total Session checks, by whether the cache answered.\n"
				    "# TYPE p2p_dird_replica_session_cache_total counter\n"
				    "p2p_dird_replica_session_cache_total{result=\"hit\"} %llu\n"
				    "p2p_dird_replica_session_cache_total{result=\"miss\"} %llu\n"
				    "# HELP p2p_dird_replica_names Files in this replica's in-memory view.\n"
				    "# TYPE p2p_dird_replica_names gauge\np2p_dird_replica_names %zu\n"
				    "# HELP p2p_dird_replica_memory_bytes Heap held by the view, by part.\n"
				    "# TYPE p2p_dird_replica_memory_bytes gauge\n"
				    "p2p_dird_replica_memory_bytes{part=\"name_index\"} %zu\n"
				    "p2p_dird_replica_memory_bytes{part=\"peers_files\"} %zu\n",
				    c->replica.staleness, c->replica.max_staleness, (long long)c->replica.seq,
				    c->replica.connected ? 1 : 0,
				    (unsigned long long)c->replica.applied, (unsigned long long)c->replica.reloads,
				    (unsigned long long)c->replica.follower_queries,
				    (unsigned long long)c->replica.session_hits,
				    (unsigned long long)c->replica.session_misses, c->replica.names,
				    c->replica.index_bytes, c->replica.view_bytes);
	if (store_remote(d->store))
		evbuffer_add_printf(b,
				    "# HELP p2p_dird_database_queries_total Statements sent to the database server for requests and timers.\n"
				    "# TYPE p2p_dird_database_queries_total counter\np2p_dird_database_queries_total %llu\n",
				    (unsigned long long)c->replica.queries);
	len = evbuffer_get_length(b);
	text = (char *)evbuffer_pullup(b, -1);
	send_text(c, 200, "text/plain; version=0.0.4; charset=utf-8", text ? text : "", text ? len : 0);
	evbuffer_free(b);
}

static void handle_metrics(struct call *c)
{
	/* Fresh gauges for the scrape; the timer keeps STATUS= current. */
	c->counts = c->d->counts;
	store_counts(c->d->store, dird_now() - c->set.ttl, &c->counts);
	store_replica_status(c->d->store, &c->replica);
	c->render = render_metrics;
}

/* The OpenAPI document, compiled in from docs/openapi.json (openapi.h). */
static void handle_openapi(struct call *c)
{
	send_text(c, 200, "application/json", (const char *)dird_openapi, dird_openapi_len);
}

typedef void (*handler_fn)(struct call *c);

static const handler_fn handlers[R_COUNT] = {
	[R_REGISTER] = handle_register,
	[R_LOGIN] = handle_login,
	[R_LOGOUT] = handle_logout,
	[R_VERIFY_LOGIN] = handle_verify_login,
	[R_INDEX] = handle_index,
	[R_HEARTBEAT] = handle_heartbeat,
	[R_SEARCH] = handle_search,
	[R_TICKETS] = handle_tickets,
	[R_TICKETS_VERIFY] = handle_tickets_verify,
	[R_HEALTHZ] = handle_healthz,
	[R_METRICS] = handle_metrics,
	[R_OPENAPI] = handle_openapi,
};

/* ---- dispatch ----------------------------------------------------------- */

static bool has_encoded_nul(const char *uri)
{
	for (const char *p = strchr(uri, '%'); p; p = strchr(p + 1, '%'))
		if (p[1] == '0' && p[2] == '0')
			return true;
	return false;
}

/* Bounds what parsing may allocate before json-c builds a single object:
 * counts the objects and the values (commas) outside strings. json-c
 * spends ~600 bytes on an empty object and ~80 on a number, so 8 MiB of
 * "{}," would cost 2 GB and "0," 300 MB; a file list needs at most one
 * object and four values per file, any other body a handful. */
static bool body_within_bounds(struct call *c, const char *text, size_t len)
{
	long long objects = 0, values = 0, max_objects = 16, max_values = 64;
	bool in_string = false;

	if (c->route == R_INDEX) {
		max_objects += c->set.max_files;
		max_values += 4 * c->set.max_files;
	}
	for (size_t i = 0; i < len; i++) {
		char ch = text[i];

		if (in_string) {
			if (ch == '\\')
				i++;
			else if (ch == '"')
				in_string = false;
		} else if (ch == '"') {
			in_string = true;
		} else if (ch == '{') {
			objects++;
		} else if (ch == ',') {
			values++;
		}
	}
	if (objects > max_objects || values > max_values) {
		reply_error(c, 413, "the body holds more JSON values than this request may (%lld objects, %lld values at most)",
			    max_objects, max_values);
		return false;
	}
	return true;
}

/* Parse the body (in c->in) as one JSON object; answers and returns false
 * otherwise. May run on a worker: it touches only the call. */
static bool parse_body(struct call *c)
{
	size_t len = evbuffer_get_length(c->in);
	struct json_tokener *tok;
	const char *text;

	if (len == 0) {
		reply_error(c, 400, "a JSON object body is required");
		return false;
	}
	text = (const char *)evbuffer_pullup(c->in, -1);
	if (!text) {
		reply_error(c, 500, "out of memory");
		return false;
	}
	if (!body_within_bounds(c, text, len))
		return false;
	tok = json_tokener_new_ex(64);
	if (!tok) {
		reply_error(c, 500, "out of memory");
		return false;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	c->body = json_tokener_parse_ex(tok, text, (int)len);
	if (!c->body || (size_t)json_tokener_get_parse_end(tok) != len) {
		enum json_tokener_error e = json_tokener_get_error(tok);

		json_tokener_free(tok);
		json_object_put(c->body);
		c->body = NULL;
		reply_error(c, 400, "malformed JSON: %s",
			    e == json_tokener_success ? "text after the object" : json_tokener_error_desc(e));
		return false;
	}
	json_tokener_free(tok);
	/* The text is no longer needed: free it before the handler runs. */
	evbuffer_drain(c->in, len);
	if (!json_object_is_type(c->body, json_type_object)) {
		reply_error(c, 400, "the body must be a JSON object");
		return false;
	}
	return true;
}

/* On the loop thread: send the answer and forget the call. */
static void finish(struct call *c)
{
	struct dird *d = c->d;
	struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
	struct evbuffer *out = evhttp_request_get_output_buffer(c->req);
	struct evhttp_connection *evcon;
	struct bufferevent *bev;

	if (c->render)
		c->render(c);
	if (!c->text)
		reply_error(c, 500, "internal error: no answer");
	for (int i = 0; i < c->nhdr; i++)
		evhttp_add_header(h, c->hdr[i].name, c->hdr[i].value);
	evhttp_add_header(h, "Content-Type", c->ctype);
	evhttp_add_header(h, "Cache-Control", "no-store");
	if (d->stopping)
		evhttp_add_header(h, "Connection", "close");
	/* A HEAD answer has the headers of the GET one and no body; evhttp
	 * leaves out Content-Length for HEAD, so it is set here. */
	if (evhttp_request_get_command(c->req) == EVHTTP_REQ_HEAD) {
		char clen[24];

		snprintf(clen, sizeof(clen), "%zu", c->len);
		evhttp_add_header(h, "Content-Length", clen);
	} else {
		evbuffer_add(out, c->text, c->len);
	}
	evcon = evhttp_request_get_connection(c->req);
	bev = d->set.proxy_protocol && evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
	/* If the client went away meanwhile, evhttp has detached the request
	 * and this frees it. */
	evhttp_send_reply(c->req, c->code, reason_phrase(c->code), NULL);
	/* A filtering bufferevent (PROXY protocol) passes on what evhttp wrote
	 * before enabling writes only when told, or not at all when the answer
	 * comes from a worker's hand-off rather than from its read callback. */
	if (bev)
		bufferevent_flush(bev, EV_WRITE, BEV_NORMAL);
	metrics_record(d, c->route, c->code, elapsed(&c->start));
	if (c->have_query)
		evhttp_clear_headers(&c->query);
	json_object_put(c->body);
	if (c->in)
		evbuffer_free(c->in);
	free(c->text);
	free(c);
	d->inflight--;
}

/* The part of a request that may wait: the body, the session, then the
 * handler. */
static void call_run(struct call *c)
{
	int r;

	if (routes[c->route].body && !c->body && !parse_body(c))
		return;
	r = routes[c->route].auth && !c->authed ?
	    store_session_lookup(c->d->store, c->token_hash, dird_now(), c->user, NULL) : 0;
	if (r == -EAGAIN) {
		reply_store_error(c, r);
		return;
	}
	if (r < 0) {
		reply_header(c, "WWW-Authenticate", "Bearer");
		reply_error(c, 401, "invalid or expired token");
		return;
	}
	handlers[c->route](c);
}

static void job_run(struct pool_job *job)
{
	call_run((struct call *)((char *)job - offsetof(struct call, job)));
}

static void beats_add(struct call *c);

/* On the loop thread, once the handler has run: a heartbeat it left
 * unwritten joins the next batch; anything else is answered. */
static void settle(struct call *c)
{
	if (c->beat)
		beats_add(c);
	else
		finish(c);
}

static void job_done(struct pool_job *job)
{
	settle((struct call *)((char *)job - offsetof(struct call, job)));
}

/* At shutdown, for calls that will not be answered: evhttp_free() frees
 * their requests. */
static void job_discard(struct pool_job *job)
{
	struct call *c = (struct call *)((char *)job - offsetof(struct call, job));

	if (c->have_query)
		evhttp_clear_headers(&c->query);
	json_object_put(c->body);
	if (c->in)
		evbuffer_free(c->in);
	free(c->text);
	free(c);
}

/* On a worker: one statement for the whole batch. */
static void beats_run(struct pool_job *job)
{
	struct api_beats *b = (struct api_beats *)job;
	int r;

	for (size_t i = 0; i < b->n; i++)
		b->users[i] = b->batch[i]->user;
	r = store_heartbeats(b->d->store, b->users, b->n, dird_now(), b->result);
	for (size_t i = 0; i < b->n; i++)
		reply_heartbeat(b->batch[i], r < 0 ? r : b->result[i]);
}

static void beats_write(struct api_beats *b)
{
	b->n = 0;
	while (b->pending && b->n < BEATS_MAX) {
		struct call *c = b->pending;

		b->pending = c->next_beat;
		b->batch[b->n++] = c;
		c->beat = false;
	}
	if (!b->pending)
		b->tail = &b->pending;
	if (!pool_submit(b->d->pool, &b->job)) {
		/* Stopping: answer rather than drop them. */
		for (size_t i = 0; i < b->n; i++) {
			reply_store_error(b->batch[i], -EAGAIN);
			finish(b->batch[i]);
		}
		b->n = 0;
	}
}

/* On the loop: the batch is written; answer it, then write what came. */
static void beats_done(struct pool_job *job)
{
	struct api_beats *b = (struct api_beats *)job;

	for (size_t i = 0; i < b->n; i++)
		finish(b->batch[i]);
	b->n = 0;
	if (b->pending)
		beats_write(b);
}

static void beats_discard(struct pool_job *job)
{
	struct api_beats *b = (struct api_beats *)job;

	for (size_t i = 0; i < b->n; i++)
		job_discard(&b->batch[i]->job);
	b->n = 0;
}

static void beats_add(struct call *c)
{
	struct api_beats *b = c->d->beats;

	c->next_beat = NULL;
	*b->tail = c;
	b->tail = &c->next_beat;
	if (b->n == 0)
		beats_write(b);
}

/* Reads what the handler needs out of the request and answers what can be
 * answered at once (bad route, method, URI, body); the rest goes to a
 * worker when there are any. */
static void api_dispatch(struct evhttp_request *req, void *arg)
{
	struct dird *d = arg;
	struct call *c = calloc(1, sizeof(*c));
	const char *uri = evhttp_request_get_uri(req);
	const struct evhttp_uri *parsed = evhttp_request_get_evhttp_uri(req);
	const char *path = parsed ? evhttp_uri_get_path(parsed) : NULL;
	const char *query = parsed ? evhttp_uri_get_query(parsed) : NULL;
	const struct route_def *rt;
	enum evhttp_cmd_type cmd;
	size_t body_len;

	if (!c) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	c->d = d;
	c->req = req;
	c->route = R_OTHER;
	c->set = d->set;
	/* Strings may be freed by a reload. */
	c->set.listen = c->set.database = c->set.log_level = NULL;
	c->set.tls_certificate = c->set.tls_key = NULL;
	memset(&c->set.trusted_proxies, 0, sizeof(c->set.trusted_proxies));
	clock_gettime(CLOCK_MONOTONIC, &c->start);
	d->inflight++;
	conn_request(d, req, c->addr, sizeof(c->addr));
	if (!path || !uri) {
		reply_error(c, 400, "malformed request URI");
		goto answer;
	}
	for (int i = 0; i < R_OTHER; i++)
		if (strcmp(path, routes[i].path) == 0) {
			c->route = (enum route)i;
			break;
		}
	if (c->route == R_OTHER) {
		reply_error(c, 404, "no such resource");
		goto answer;
	}
	rt = &routes[c->route];
	cmd = evhttp_request_get_command(req);
	if (cmd != rt->method && !(cmd == EVHTTP_REQ_HEAD && rt->method == EVHTTP_REQ_GET)) {
		reply_header(c, "Allow", rt->allow);
		reply_error(c, 405, "method not allowed; use %s", rt->allow);
		goto answer;
	}
	if (has_encoded_nul(uri) || !valid_utf8(uri, strlen(uri))) {
		reply_error(c, 400, "malformed request URI");
		goto answer;
	}
	if (query) {
		if (evhttp_parse_query_str(query, &c->query) < 0) {
			reply_error(c, 400, "malformed query string");
			goto answer;
		}
	} else {
		TAILQ_INIT(&c->query);
	}
	c->have_query = true;
	if (rt->auth)
		bearer_hash(req, c->token_hash);
	if (rt->auth && !c->token_hash[0]) {
		reply_header(c, "WWW-Authenticate", "Bearer");
		reply_error(c, 401, "missing or malformed Authorization: Bearer token");
		goto answer;
	}
	body_len = evbuffer_get_length(evhttp_request_get_input_buffer(req));
	if ((long long)body_len > d->set.max_body) {
		reply_error(c, 413, "request body larger than %lld bytes", d->set.max_body);
		goto answer;
	}
	if (rt->body) {
		/* Chains move, nothing is copied: the worker or the code below
		 * parses it. */
		c->in = evbuffer_new();
		if (!c->in || evbuffer_add_buffer(c->in, evhttp_request_get_input_buffer(req)) < 0) {
			reply_error(c, 500, "out of memory");
			goto answer;
		}
	}
	c->job.run = job_run;
	c->job.done = job_done;
	c->job.discard = job_discard;
	/* What may wait goes to a worker: password hashing, parsing and
	 * storing a file list, any body larger than INLINE_BODY_MAX, and every
	 * call into a database server. A local SQLite call takes microseconds
	 * and a hand-off would cost more than it saves (exact search: ~50k
	 * req/s on the loop, ~43k through 4 workers, bench/dird), so it runs
	 * here, holding the store's lock; when a worker holds that lock (a
	 * large index being stored), the call goes to a worker rather than
	 * wait for it. /healthz needs no lock (store_ping). */
	/* A search on a database server's replica is answered by its view in
	 * memory (view.h), and a heartbeat joins the next batch (beats_add);
	 * once the session is in the replica's cache too, either waits on
	 * nothing and runs here, like SQLite's. */
	if (d->pool && (c->route == R_SEARCH || c->route == R_HEARTBEAT) && store_remote(d->store) &&
	    store_session_cached(d->store, c->token_hash, dird_now(), c->user) == 0) {
		c->authed = true;
		call_run(c);
		goto answer;
	}
	if (d->pool && (rt->slow || store_remote(d->store) || body_len > INLINE_BODY_MAX) &&
	    pool_submit(d->pool, &c->job))
		return;
	if (d->pool && c->route != R_HEALTHZ) {
		if (!store_try_hold(d->store)) {
			if (pool_submit(d->pool, &c->job))
				return;
			store_hold(d->store);
		}
		call_run(c);
		store_release(d->store);
		goto answer;
	}
	call_run(c);
answer:
	settle(c);
}

void api_apply_settings(struct dird *d)
{
	/* libevent refuses a body over its own limit with an HTML page before
	 * we see the request; keep its limit well above ours so that every
	 * ordinary oversized body gets our JSON 413, and only absurd ones
	 * (4x the limit) are cut off by libevent. */
	evhttp_set_max_body_size(d->http, d->set.max_body * 4);
	evhttp_set_max_headers_size(d->http, d->set.max_headers);
	evhttp_set_timeout(d->http, (int)d->set.timeout);
	pthread_mutex_lock(&d->login_lock);
	ratelimit_configure(d->login_by_user, (unsigned)d->set.login_burst, (unsigned)(d->set.login_interval * 1000));
	ratelimit_configure(d->login_by_addr, (unsigned)d->set.login_burst * 4, (unsigned)(d->set.login_interval * 1000 / 4));
	ratelimit_configure(d->register_by_addr, (unsigned)d->set.register_burst,
			    (unsigned)(d->set.register_interval * 1000));
	pthread_mutex_unlock(&d->login_lock);
	/* Checked by dird_settings_check; an entry that fails now is skipped. */
	free(d->proxies);
	d->nproxies = 0;
	d->proxies = calloc(d->set.trusted_proxies.n ? d->set.trusted_proxies.n : 1, sizeof(*d->proxies));
	for (size_t i = 0; d->proxies && i < d->set.trusted_proxies.n; i++)
		if (dird_cidr_parse(d->set.trusted_proxies.v[i], &d->proxies[d->nproxies]))
			d->nproxies++;
}

int api_init(struct dird *d)
{
	int r;

	pthread_mutex_init(&d->login_lock, NULL);
	if (d->set.workers > 0) {
		r = pool_new(d->base, (int)d->set.workers, &d->pool);
		if (r < 0)
			return r;
	}
	d->beats = calloc(1, sizeof(*d->beats));
	if (!d->beats)
		return -ENOMEM;
	d->beats->d = d;
	d->beats->tail = &d->beats->pending;
	d->beats->job.run = beats_run;
	d->beats->job.done = beats_done;
	d->beats->job.discard = beats_discard;
	d->http = evhttp_new(d->base);
	d->login_by_user = ratelimit_new(1, 1, 65536);
	d->login_by_addr = ratelimit_new(1, 1, 65536);
	d->register_by_addr = ratelimit_new(1, 1, 65536);
	if (!d->http || !d->login_by_user || !d->login_by_addr || !d->register_by_addr)
		return -ENOMEM;
	/* Let every method reach api_dispatch so wrong ones get a JSON 405. */
	evhttp_set_allowed_methods(d->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
				   EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
				   EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_default_content_type(d->http, "application/json");
	evhttp_set_gencb(d->http, api_dispatch, d);
	api_apply_settings(d);
	return 0;
}

void api_free(struct dird *d)
{
	/* Workers first: their calls' requests die with evhttp. */
	pool_free(d->pool);
	d->pool = NULL;
	for (struct call *c = d->beats ? d->beats->pending : NULL, *next; c; c = next) {
		next = c->next_beat;
		job_discard(&c->job);
	}
	free(d->beats);
	d->beats = NULL;
	if (d->http)
		evhttp_free(d->http);
	d->http = NULL;
	/* Emptied by evhttp_free (proxyproto.c's conn_free, conn.c's closed). */
	ptrmap_free(&d->pp);
	ptrmap_free(&d->conns);
	ratelimit_free(d->login_by_user);
	ratelimit_free(d->login_by_addr);
	ratelimit_free(d->register_by_addr);
	free(d->proxies);
	d->proxies = NULL;
	pthread_mutex_destroy(&d->login_lock);
}
