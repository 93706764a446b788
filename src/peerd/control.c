/* control.c — the peer's control socket: varlink over a UNIX stream socket
 * (docs/CONTROL.md), served on the main libevent loop.
 *
 * Access: the socket file is mode 0660; each client is identified with
 * SO_PEERCRED (never by what it says) and allowed if it is root, our own uid,
 * or in the socket file's group (primary, or supplementary from
 * SO_PEERGROUPS). A stale socket file from a dead instance is replaced; a
 * live instance is never displaced.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>

#include "log.h"
#include "peerd.h"
#include "varlink.h"

#define IFACE "io.p2p.Peer."
#define VARLINK_INVALID_PARAMETER "org.varlink.service.InvalidParameter"
#define VARLINK_METHOD_NOT_FOUND "org.varlink.service.MethodNotFound"
#define SEARCH_LIMIT_DEFAULT 50
#define SEARCH_LIMIT_MAX 1000

struct client;

/* A client waiting on a Download call. */
struct watch {
	struct client *c;
	struct transfer *t;
	bool more;
	struct watch *next;
};

struct control {
	struct peerd *p;
	struct evconnlistener *listener;
	char *path;                 /* unlinked at stop; NULL when activated */
	struct event *tick;         /* progress and the end of transfers */
	struct event *wake;         /* a worker says a transfer ended */
	struct watch *watches;
	struct client *clients;     /* connected, freed at stop */
};

struct client {
	struct control *ctl;
	struct bufferevent *bev;
	pid_t pid;
	struct client *next;
};

/* ---- replies ------------------------------------------------------------- */

static void send_text(struct client *c, char *text, size_t len)
{
	if (text) {
		bufferevent_write(c->bev, text, len);
		free(text);
	}
}

static void reply(struct client *c, struct json_object *params)
{
	char *out = NULL;
	size_t len = 0;

	if (varlink_reply_format(params, false, &out, &len) == 0)
		send_text(c, out, len);
	json_object_put(params);
}

/* error: a full name, or a short one in io.p2p.Peer. */
static void reply_error(struct client *c, const char *error, struct json_object *params)
{
	char name[128], *out = NULL;
	size_t len = 0;

	snprintf(name, sizeof(name), "%s%s", strchr(error, '.') ? "" : IFACE, error);
	if (varlink_error_format(name, params, &out, &len) == 0)
		send_text(c, out, len);
	json_object_put(params);
}

static struct json_object *one(const char *key, struct json_object *v)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, key, v);
	return o;
}

static void invalid(struct client *c, const char *param)
{
	reply_error(c, VARLINK_INVALID_PARAMETER, one("parameter", json_object_new_string(param)));
}

/* A string parameter, or NULL (and InvalidParameter answered when required
 * or of the wrong type). */
static const char *param_string(struct client *c, struct json_object *params, const char *key,
				bool required, bool *answered)
{
	struct json_object *v;

	if (!json_object_object_get_ex(params, key, &v) || json_object_is_type(v, json_type_null)) {
		if (required) {
			invalid(c, key);
			*answered = true;
		}
		return NULL;
	}
	if (!json_object_is_type(v, json_type_string) ||
	    (size_t)json_object_get_string_len(v) != strlen(json_object_get_string(v))) {
		invalid(c, key);
		*answered = true;
		return NULL;
	}
	return json_object_get_string(v);
}

static bool param_int(struct client *c, struct json_object *params, const char *key, long long min,
		      long long max, long long *out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(params, key, &v) || json_object_is_type(v, json_type_null))
		return true;
	errno = 0;
	if (!json_object_is_type(v, json_type_int) || (*out = json_object_get_int64(v), errno) ||
	    *out < min || *out > max) {
		invalid(c, key);
		return false;
	}
	return true;
}

static void directory_error(struct client *c, int status, struct json_object *dreply)
{
	struct json_object *v;
	const char *msg = "";

	if (dreply && json_object_object_get_ex(dreply, "error", &v) && json_object_is_type(v, json_type_string))
		msg = json_object_get_string(v);
	if (status == 0 || status >= 500) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "url", json_object_new_string(c->ctl->p->set.directory));
		json_object_object_add(o, "message", json_object_new_string(status ? msg : "cannot connect"));
		reply_error(c, "DirectoryUnreachable", o);
	} else if (status == 401) {
		reply_error(c, "AuthenticationFailed", one("message", json_object_new_string(msg)));
	} else if (status == 429) {
		reply_error(c, "RateLimited", one("retry_after", json_object_new_int(60)));
	} else {
		/* The directory refused what we passed on: the caller's input. */
		struct json_object *o = one("parameter", json_object_new_string(msg));

		reply_error(c, VARLINK_INVALID_PARAMETER, o);
	}
}

static bool logged_in(struct peerd *p, char token[SHA256_HEX_LEN + 1])
{
	pthread_mutex_lock(&p->session.lock);
	snprintf(token, SHA256_HEX_LEN + 1, "%s", p->session.token);
	pthread_mutex_unlock(&p->session.lock);
	return token[0] != '\0';
}

/* ---- methods ------------------------------------------------------------- */

static void m_register(struct client *c, struct json_object *params)
{
	bool answered = false;
	const char *user = param_string(c, params, "username", true, &answered);
	const char *pw = answered ? NULL : param_string(c, params, "password", true, &answered);
	struct json_object *body, *dreply = NULL;
	int status;

	if (answered)
		return;
	if (!valid_username(user)) {
		invalid(c, "username");
		return;
	}
	if (!*pw) {
		invalid(c, "password");
		return;
	}
	body = json_object_new_object();
	json_object_object_add(body, "username", json_object_new_string(user));
	json_object_object_add(body, "password", json_object_new_string(pw));
	status = dir_call(c->ctl->p->set.directory, "POST", "/register", NULL, body, &dreply, 30);
	json_object_put(body);
	if (status == 201)
		reply(c, one("username", json_object_new_string(user)));
	else if (status == 409)
		reply_error(c, "UserExists", one("username", json_object_new_string(user)));
	else if (status == 403)
		reply_error(c, "RegistrationClosed", NULL);
	else
		directory_error(c, status, dreply);
	json_object_put(dreply);
}

static void m_login(struct client *c, struct json_object *params)
{
	bool answered = false;
	const char *user = param_string(c, params, "username", true, &answered);
	const char *pw = answered ? NULL : param_string(c, params, "password", true, &answered);
	struct json_object *dreply = NULL, *v, *o;
	int status = 0, r;

	if (answered)
		return;
	if (!valid_username(user)) {
		invalid(c, "username");
		return;
	}
	r = directory_login_as(c->ctl->p, user, pw, &status, &dreply);
	if (status != 200) {
		directory_error(c, status, dreply);
	} else {
		o = json_object_new_object();
		json_object_object_add(o, "username", json_object_new_string(user));
		if (json_object_object_get_ex(dreply, "expires_at", &v))
			json_object_object_add(o, "expires_at", json_object_get(v));
		if (r < 0)
			log_warn("logged in as %s but indexing failed", user);
		reply(c, o);
	}
	json_object_put(dreply);
	update_status(c->ctl->p);
}

static void m_logout(struct client *c, struct json_object *params)
{
	char token[SHA256_HEX_LEN + 1];

	if (!logged_in(c->ctl->p, token)) {
		reply_error(c, "NotLoggedIn", NULL);
		return;
	}
	directory_logout(c->ctl->p);
	update_status(c->ctl->p);
	reply(c, NULL);
}

static void m_index(struct client *c, struct json_object *params)
{
	struct peerd *p = c->ctl->p;
	char token[SHA256_HEX_LEN + 1];
	int n;

	if (!logged_in(p, token)) {
		reply_error(c, "NotLoggedIn", NULL);
		return;
	}
	n = share_scan(&p->share, &p->set.files);
	if (n < 0 || directory_index(p) < 0) {
		reply_error(c, "DirectoryUnreachable", one("url", json_object_new_string(p->set.directory)));
		return;
	}
	update_status(p);
	reply(c, one("indexed", json_object_new_int(n)));
}

static void copy_key(struct json_object *to, struct json_object *from, const char *key)
{
	struct json_object *v;

	if (json_object_object_get_ex(from, key, &v))
		json_object_object_add(to, key, json_object_get(v));
	else
		json_object_object_add(to, key, NULL);
}

static void m_search(struct client *c, struct json_object *params)
{
	struct peerd *p = c->ctl->p;
	bool answered = false;
	const char *query = param_string(c, params, "query", false, &answered);
	const char *exact = answered ? NULL : param_string(c, params, "exact", false, &answered);
	long long limit = SEARCH_LIMIT_DEFAULT, offset = 0;
	char token[SHA256_HEX_LEN + 1], path[2048], *enc;
	struct json_object *dreply = NULL, *list, *results, *o, *total = NULL;
	int status;

	if (answered)
		return;
	if (!param_int(c, params, "limit", 1, SEARCH_LIMIT_MAX, &limit) ||
	    !param_int(c, params, "offset", 0, INT32_MAX, &offset))
		return;
	if ((query != NULL) == (exact != NULL)) {
		invalid(c, query ? "exact" : "query");
		return;
	}
	if ((exact && !valid_filename(exact, strlen(exact))) || (query && (!*query || strlen(query) > 255))) {
		invalid(c, exact ? "exact" : "query");
		return;
	}
	if (!logged_in(p, token)) {
		reply_error(c, "NotLoggedIn", NULL);
		return;
	}
	enc = evhttp_encode_uri(exact ? exact : query);
	if (!enc) {
		reply_error(c, "DirectoryUnreachable", NULL);
		return;
	}
	if (exact)
		snprintf(path, sizeof(path), "/search?file=%s", enc);
	else
		snprintf(path, sizeof(path), "/search?q=%s&limit=%lld&offset=%lld", enc, limit, offset);
	free(enc);
	status = dir_call(p->set.directory, "GET", path, token, NULL, &dreply, 30);
	if (status == 401) {
		json_object_put(dreply);
		reply_error(c, "NotLoggedIn", NULL);
		return;
	}
	if (!(status == 200 || (exact && status == 404))) {
		directory_error(c, status, dreply);
		json_object_put(dreply);
		return;
	}
	results = json_object_new_array();
	if (status == 200 && (json_object_object_get_ex(dreply, exact ? "peers_with_file" : "results", &list)) &&
	    json_object_is_type(list, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(list); i++) {
			struct json_object *h = json_object_array_get_idx(list, i), *r = json_object_new_object();

			copy_key(r, h, "peer");
			copy_key(r, h, "ip");
			copy_key(r, h, "port");
			copy_key(r, h, "name");
			copy_key(r, h, "size");
			copy_key(r, h, "sha256");
			json_object_array_add(results, r);
		}
	}
	o = json_object_new_object();
	if (!exact && json_object_object_get_ex(dreply, "total", &total))
		json_object_object_add(o, "total", json_object_get(total));
	else
		json_object_object_add(o, "total", json_object_new_int((int)json_object_array_length(results)));
	json_object_object_add(o, "results", results);
	json_object_put(dreply);
	reply(c, o);
}

static void m_status(struct client *c, struct json_object *params)
{
	struct peerd *p = c->ctl->p;
	struct json_object *o = json_object_new_object(), *dir = json_object_new_object();
	char token[SHA256_HEX_LEN + 1], user[USERNAME_MAX + 1], listen[64];
	uint64_t bytes = 0;
	bool in = logged_in(p, token);

	pthread_mutex_lock(&p->session.lock);
	snprintf(user, sizeof(user), "%s", p->session.username);
	pthread_mutex_unlock(&p->session.lock);
	pthread_mutex_lock(&p->share.lock);
	for (size_t i = 0; i < p->share.n; i++)
		bytes += p->share.files[i].size;
	json_object_object_add(o, "shared_files", json_object_new_int64((int64_t)p->share.n));
	pthread_mutex_unlock(&p->share.lock);
	snprintf(listen, sizeof(listen), "%s:%d", p->set.ip ? p->set.ip : "0.0.0.0", p->grpc_port);
	json_object_object_add(o, "version", json_object_new_string(PACKAGE_VERSION));
	json_object_object_add(o, "peer", p->name ? json_object_new_string(p->name) : NULL);
	json_object_object_add(o, "username", in ? json_object_new_string(user) : NULL);
	json_object_object_add(o, "logged_in", json_object_new_boolean(in));
	json_object_object_add(dir, "url", json_object_new_string(p->set.directory));
	json_object_object_add(dir, "reachable", json_object_new_boolean(
		dir_call(p->set.directory, "GET", "/healthz", NULL, NULL, NULL, 2) == 200));
	json_object_object_add(o, "directory", dir);
	json_object_object_add(o, "listen", json_object_new_string(listen));
	json_object_object_add(o, "folder", json_object_new_string(p->set.folder));
	json_object_object_add(o, "shared_bytes", json_object_new_int64((int64_t)bytes));
	{
		int active = 0;

		for (struct transfer *t = p->transfers; t; t = t->next) {
			pthread_mutex_lock(&t->lock);
			active += t->state == TRANSFER_RUNNING;
			pthread_mutex_unlock(&t->lock);
		}
		json_object_object_add(o, "transfers_active", json_object_new_int(active));
	}
	reply(c, o);
}

static void m_list_shared(struct client *c, struct json_object *params)
{
	struct peerd *p = c->ctl->p;
	struct json_object *arr = json_object_new_array();

	pthread_mutex_lock(&p->share.lock);
	for (size_t i = 0; i < p->share.n; i++) {
		struct json_object *f = json_object_new_object();

		json_object_object_add(f, "name", json_object_new_string(p->share.files[i].name));
		json_object_object_add(f, "size", json_object_new_int64((int64_t)p->share.files[i].size));
		json_object_object_add(f, "sha256", json_object_new_string(p->share.files[i].sha256));
		json_object_object_add(f, "mtime", json_object_new_int64(p->share.files[i].mtime));
		json_object_array_add(arr, f);
	}
	pthread_mutex_unlock(&p->share.lock);
	reply(c, one("files", arr));
}

static const char *const state_names[] = {
	[TRANSFER_RUNNING] = "running", [TRANSFER_DONE] = "done",
	[TRANSFER_FAILED] = "failed", [TRANSFER_CANCELLED] = "cancelled",
};

/* The transfer as JSON; the caller holds t->lock. */
static struct json_object *transfer_json(struct transfer *t, double now)
{
	struct json_object *o = json_object_new_object();
	double secs = t->state == TRANSFER_RUNNING ? now - t->started : t->seconds;

	json_object_object_add(o, "id", json_object_new_string(t->id));
	json_object_object_add(o, "name", json_object_new_string(t->name));
	json_object_object_add(o, "state", json_object_new_string(state_names[t->state]));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)t->size));
	json_object_object_add(o, "received", json_object_new_int64((int64_t)t->received));
	json_object_object_add(o, "rate", json_object_new_int64(secs > 0 ? (int64_t)(t->received / secs) : 0));
	json_object_object_add(o, "sources", json_object_new_int(t->state == TRANSFER_RUNNING ? t->sources : 0));
	return o;
}

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void m_download(struct client *c, struct json_object *params, bool more)
{
	struct peerd *p = c->ctl->p;
	bool answered = false;
	const char *name = param_string(c, params, "name", true, &answered);
	const char *from = answered ? NULL : param_string(c, params, "from", false, &answered);
	const char *to = answered ? NULL : param_string(c, params, "to", false, &answered);
	struct json_object *fp; /* issue 14: "force" replaces an existing file */
	bool force = json_object_object_get_ex(params, "force", &fp) && json_object_get_boolean(fp);
	const char *error = "TransferFailed";
	char folder[4096];
	struct transfer *t;
	struct watch *w;
	struct stat st;

	if (answered)
		return;
	if (json_object_object_get_ex(params, "force", &fp) && !json_object_is_type(fp, json_type_boolean)) {
		invalid(c, "force");
		return;
	}
	if (!valid_filename(name, strlen(name))) {
		invalid(c, "name");
		return;
	}
	if (from && !valid_username(from)) {
		invalid(c, "from");
		return;
	}
	if (to && (to[0] != '/' || stat(to, &st) < 0 || !S_ISDIR(st.st_mode))) {
		invalid(c, "to");
		return;
	}
	if (!to) {
		if (!realpath(p->set.folder, folder)) {
			reply_error(c, "TransferFailed", one("message", json_object_new_string("the shared folder is gone")));
			return;
		}
		to = folder;
	}
	if (download_start(p, name, from, to, force, &t, &error) < 0) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "name", json_object_new_string(name));
		if (!strcmp(error, "DirectoryUnreachable"))
			json_object_object_add(o, "url", json_object_new_string(p->set.directory));
		reply_error(c, error, o);
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return;
	w->c = c;
	w->t = t;
	w->more = more;
	w->next = c->ctl->watches;
	c->ctl->watches = w;
}

static void m_transfers(struct client *c, struct json_object *params)
{
	struct json_object *arr = json_object_new_array();
	double now = mono();

	for (struct transfer *t = c->ctl->p->transfers; t; t = t->next) {
		pthread_mutex_lock(&t->lock);
		json_object_array_add(arr, transfer_json(t, now));
		pthread_mutex_unlock(&t->lock);
	}
	reply(c, one("transfers", arr));
}

static void m_cancel(struct client *c, struct json_object *params)
{
	bool answered = false;
	const char *id = param_string(c, params, "id", true, &answered);

	if (answered)
		return;
	for (struct transfer *t = c->ctl->p->transfers; t; t = t->next) {
		bool running;

		pthread_mutex_lock(&t->lock);
		running = t->state == TRANSFER_RUNNING && !strcmp(t->id, id);
		pthread_mutex_unlock(&t->lock);
		if (running) {
			download_cancel(t);
			reply(c, NULL);
			return;
		}
	}
	reply_error(c, "NotFound", one("id", json_object_new_string(id)));
}

/* Answer a watcher: progress while running (when it asked for more), the
 * end otherwise. Returns true when the call is over. */
static bool watch_report(struct watch *w, double now)
{
	struct transfer *t = w->t;
	struct json_object *o;
	char *out = NULL, path[4400];
	size_t len;
	bool over = true;

	pthread_mutex_lock(&t->lock);
	if (t->state == TRANSFER_RUNNING) {
		over = false;
		if (w->more) {
			o = transfer_json(t, now);
			if (varlink_reply_format(o, true, &out, &len) == 0)
				send_text(w->c, out, len);
			json_object_put(o);
		}
	} else if (t->state == TRANSFER_DONE) {
		o = transfer_json(t, now);
		snprintf(path, sizeof(path), "%s/%s", t->to, t->name);
		json_object_object_add(o, "path", json_object_new_string(path));
		json_object_object_add(o, "sha256", json_object_new_string(t->sha256));
		json_object_object_add(o, "seconds", json_object_new_double(t->seconds));
		json_object_object_del(o, "rate");
		json_object_object_del(o, "sources");
		json_object_object_del(o, "received");
		json_object_object_add(o, "sources_used", json_object_new_int(t->sources_used));
		reply(w->c, o);
	} else {
		o = json_object_new_object();
		json_object_object_add(o, "name", json_object_new_string(t->name));
		json_object_object_add(o, "message", json_object_new_string(t->message));
		json_object_object_add(o, "received", json_object_new_int64((int64_t)t->received));
		json_object_object_add(o, "retry", json_object_new_boolean(t->retry)); /* issue 14 */
		if (t->state == TRANSFER_CANCELLED)
			json_object_object_add(o, "id", json_object_new_string(t->id));
		reply_error(w->c, t->state == TRANSFER_CANCELLED ? "Cancelled" : t->error, o);
	}
	pthread_mutex_unlock(&t->lock);
	return over;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct control *ctl = arg;
	uint64_t n;

	if (what & EV_READ && read(fd, &n, sizeof(n)) < 0)
		log_debug("eventfd read failed");
	struct peerd *p = ctl->p;
	double now = mono();
	bool reindex = false, ended = false;
	char folder[4096];

	for (struct watch **pw = &ctl->watches; *pw;) {
		struct watch *w = *pw;

		if (watch_report(w, now)) {
			*pw = w->next;
			free(w);
		} else {
			pw = &w->next;
		}
	}
	/* A finished download into the shared folder is shared at once. */
	for (struct transfer *t = p->transfers; t; t = t->next) {
		pthread_mutex_lock(&t->lock);
		if (t->state != TRANSFER_RUNNING && !t->reported) {
			t->reported = true;
			ended = true;
			if (t->state == TRANSFER_DONE && realpath(p->set.folder, folder) && !strcmp(folder, t->to)) {
				/* Verified already: the scan need not read it again. */
				share_remember(&p->share, &t->landed);
				reindex = true;
			}
		}
		pthread_mutex_unlock(&t->lock);
	}
	if (ended)
		download_save(p);
	if (reindex && share_scan(&p->share, &p->set.files) >= 0) {
		directory_index(p);
		update_status(p);
	}
}

static const struct {
	const char *name;
	void (*fn)(struct client *c, struct json_object *params);
} methods[] = {
	{ IFACE "Register", m_register },
	{ IFACE "Login", m_login },
	{ IFACE "Logout", m_logout },
	{ IFACE "Index", m_index },
	{ IFACE "Search", m_search },
	{ IFACE "Status", m_status },
	{ IFACE "ListShared", m_list_shared },
	{ IFACE "Transfers", m_transfers },
	{ IFACE "Cancel", m_cancel },
	{ IFACE "Download", NULL }, /* m_download: it needs the call's "more" */
};

/* ---- connections --------------------------------------------------------- */

static void client_free(struct client *c)
{
	/* Its downloads go on; only the reports to it stop. */
	for (struct watch **pw = &c->ctl->watches; *pw;) {
		struct watch *w = *pw;

		if (w->c == c) {
			*pw = w->next;
			free(w);
		} else {
			pw = &w->next;
		}
	}
	for (struct client **pc = &c->ctl->clients; *pc; pc = &(*pc)->next)
		if (*pc == c) {
			*pc = c->next;
			break;
		}
	bufferevent_free(c->bev);
	free(c);
}

/* Once the last answer has left, close. */
static void on_drained(struct bufferevent *bev, void *arg)
{
	client_free(arg);
}

static void close_after_write(struct client *c)
{
	bufferevent_disable(c->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		client_free(c);
	else
		bufferevent_setcb(c->bev, NULL, on_drained, NULL, c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	for (;;) {
		size_t avail = evbuffer_get_length(in), want = avail, msg_len = 0;
		struct varlink_call call;
		enum varlink_fault fault = VARLINK_FAULT_NONE;
		const unsigned char *buf;
		int r;

		if (avail == 0)
			return;
		if (want > VARLINK_MESSAGE_MAX + 1)
			want = VARLINK_MESSAGE_MAX + 1;
		buf = evbuffer_pullup(in, (ev_ssize_t)want);
		r = varlink_frame_find(buf, want, &msg_len);
		if (r == 0)
			return;
		if (r < 0) {
			log_warn("control: pid %d sent a message over %d bytes; closing", (int)c->pid, VARLINK_MESSAGE_MAX);
			client_free(c);
			return;
		}
		r = varlink_call_parse((const char *)buf, msg_len, &call, &fault);
		evbuffer_drain(in, msg_len + 1);
		if (r < 0) {
			/* Not a call we can answer in order: say why and close. */
			reply_error(c, VARLINK_INVALID_PARAMETER,
				    one("parameter", json_object_new_string(varlink_fault_str(fault))));
			close_after_write(c);
			return;
		}
		{
			size_t i;

			for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
				if (strcmp(call.method, methods[i].name) == 0)
					break;
			if (i == sizeof(methods) / sizeof(methods[0]))
				reply_error(c, VARLINK_METHOD_NOT_FOUND, one("method", json_object_new_string(call.method)));
			else if (!strcmp(call.method, IFACE "Download"))
				m_download(c, call.parameters, call.more);
			else if (!call.oneway)
				methods[i].fn(c, call.parameters);
		}
		varlink_call_free(&call);
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		client_free(arg);
}

/* The group allowed in: the socket file's, also for a socket systemd bound
 * (SocketGroup=), found by its address. An abstract or unnamed socket has no
 * file, so only root and our own uid may use it. */
static gid_t socket_group(const char *path, int fd, bool warn)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	struct stat st;

	if (path) /* bound by us: getsockname() would name the temporary path */
		return stat(path, &st) == 0 && S_ISSOCK(st.st_mode) ? st.st_gid : (gid_t)-1;
	memset(&sa, 0, sizeof(sa));
	if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0 && sa.sun_family == AF_UNIX &&
	    len > offsetof(struct sockaddr_un, sun_path) && sa.sun_path[0] != '\0' &&
	    len <= sizeof(sa) - 1 && stat(sa.sun_path, &st) == 0 && S_ISSOCK(st.st_mode))
		return st.st_gid;
	if (warn)
		log_warn("control: the socket has no file to take a group from; only root and uid %d may use it",
			 (int)getuid());
	return (gid_t)-1;
}

/* SO_PEERCRED: root, our uid, or a member of the socket's group. The
 * supplementary groups come from SO_PEERGROUPS, fixed when the client
 * connected; reading /proc/PID would race with the pid being reused. */
static bool allowed(struct control *ctl, int fd, const struct ucred *cr)
{
	gid_t groups[256], group;
	socklen_t len = sizeof(groups);

	if (cr->uid == 0 || cr->uid == getuid())
		return true;
	/* Looked up now, so that a chgrp of the socket takes effect at once. */
	group = socket_group(ctl->path, evconnlistener_get_fd(ctl->listener), false);
	if (group == (gid_t)-1)
		return false;
	if (cr->gid == group)
		return true;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
		log_notice("control: cannot read the groups of pid %d: %s", (int)cr->pid, strerror(errno));
		return false; /* fail closed, also for more than 256 groups (ERANGE) */
	}
	for (size_t i = 0; i < len / sizeof(gid_t); i++)
		if (groups[i] == group)
			return true;
	return false;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	struct control *ctl = arg;
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	struct client *c;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) < 0 || !allowed(ctl, fd, &cr)) {
		static const char denied[] = "{\"error\":\"io.p2p.Peer.PermissionDenied\",\"parameters\":{}}";

		log_notice("control: refused uid %d pid %d", crlen ? (int)cr.uid : -1, crlen ? (int)cr.pid : -1);
		if (send(fd, denied, sizeof(denied), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			log_debug("control: could not tell the refused client");
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->ctl = ctl;
	c->pid = cr.pid;
	c->bev = bufferevent_socket_new(ctl->p->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		free(c);
		close(fd);
		return;
	}
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->next = ctl->clients;
	ctl->clients = c;
}

/* Bind path, replacing a stale socket but never a live one. */
static int bind_socket(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX }, tmp = { .sun_family = AF_UNIX };
	mode_t old;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return log_errno(LOG_ERR, ENAMETOOLONG, "control socket path %s", path);
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(fd);
		log_err("another p2p-peerd is running on %s", path);
		return -EADDRINUSE;
	}
	if (errno == ECONNREFUSED) {
		log_notice("replacing the stale control socket %s", path);
		unlink(path);
	}
	close(fd);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* Listen under a temporary name and link it into place, so the path
	 * appears only once it accepts (a client connecting between bind and
	 * listen was refused), and link() fails if another instance got there. */
	if ((size_t)snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%s.%d.tmp", path, (int)getpid()) >=
	    sizeof(tmp.sun_path))
		tmp = sa; /* no room for the suffix: bind in place */
	else
		unlink(tmp.sun_path);
	old = umask(0117); /* the socket is born 0660 */
	r = bind(fd, (struct sockaddr *)&tmp, sizeof(tmp));
	umask(old);
	if (r < 0 || listen(fd, 64) < 0) {
		r = log_errno(LOG_ERR, errno, "cannot listen on %s", tmp.sun_path);
		close(fd);
		return r;
	}
	if (strcmp(tmp.sun_path, path) != 0) {
		r = link(tmp.sun_path, path) < 0 ? -errno : 0;
		unlink(tmp.sun_path);
		if (r < 0) {
			close(fd);
			if (r == -EEXIST)
				log_err("another p2p-peerd is running on %s", path);
			else
				log_errno(LOG_ERR, -r, "cannot create %s", path);
			return r == -EEXIST ? -EADDRINUSE : r;
		}
	}
	return fd;
}

int control_start(struct peerd *p, const char *path, int fd, struct control **out)
{
	struct control *ctl = calloc(1, sizeof(*ctl));

	if (!ctl)
		return -ENOMEM;
	ctl->p = p;
	if (fd < 0) {
		fd = bind_socket(path);
		if (fd < 0) {
			free(ctl);
			return fd;
		}
		ctl->path = strdup(path);
	} else {
		/* systemd passes it blocking; libevent accepts until EAGAIN, so a
		 * blocking socket would stall the whole loop after one client. */
		evutil_make_socket_nonblocking(fd);
		evutil_make_socket_closeonexec(fd);
	}
	socket_group(ctl->path, fd, true); /* warns now if there is no group to allow */
	ctl->listener = evconnlistener_new(p->base, on_accept, ctl, LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (!ctl->listener) {
		close(fd);
		free(ctl->path);
		free(ctl);
		return -ENOMEM;
	}
	{
		struct timeval tv = { 0, 250000 }; /* progress at most 4 times a second */

		ctl->tick = event_new(p->base, -1, EV_PERSIST, on_tick, ctl);
		event_add(ctl->tick, &tv);
		if (p->wake_fd >= 0) {
			ctl->wake = event_new(p->base, p->wake_fd, EV_READ | EV_PERSIST, on_tick, ctl);
			event_add(ctl->wake, NULL);
		}
	}
	log_info("control socket %s", path ? path : "(passed by systemd)");
	*out = ctl;
	return 0;
}

void control_stop(struct control *ctl)
{
	if (!ctl)
		return;
	evconnlistener_free(ctl->listener);
	while (ctl->clients)
		client_free(ctl->clients); /* their watches too */
	if (ctl->tick)
		event_free(ctl->tick);
	if (ctl->wake)
		event_free(ctl->wake);
	while (ctl->watches) {
		struct watch *w = ctl->watches;

		ctl->watches = w->next;
		free(w);
	}
	if (ctl->path) {
		unlink(ctl->path);
		free(ctl->path);
	}
	free(ctl);
}
