/* SPDX-License-Identifier: MIT */
/* control_methods.c — owns the io.p2p.Peer methods (docs/CONTROL.md): one
 * handler per method, all of one signature. A handler checks its
 * parameters, then asks the module that owns the state (session.c,
 * dirclient.c, transfers.c, watch.c, share.c) through its functions; what
 * waits on the directory answers from a callback, so the loop and the
 * other clients never wait. It also keeps the Download watchers. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "metrics.h"
#include "peerd.h"

#define STATUS_PROBE_MS 80 /* Status waits this long for /healthz, no longer */

static struct json_object *one(const char *key, struct json_object *v)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, key, v);
	return o;
}

static void invalid(struct control_call *call, const char *param)
{
	control_error(call, VARLINK_E_INVALID_PARAMETER, one("parameter", json_object_new_string(param)));
}

static void peer_error(struct control_call *call, enum peer_error e, struct json_object *params)
{
	control_error(call, peer_error_name(e), params);
}

/* A string parameter, or NULL (and InvalidParameter answered when required
 * or of the wrong type). */
static const char *param_string(struct control_call *call, struct json_object *params, const char *key,
				bool required, bool *answered)
{
	struct json_object *v;

	if (*answered)
		return NULL;
	if (!json_object_object_get_ex(params, key, &v) || json_object_is_type(v, json_type_null)) {
		if (required) {
			invalid(call, key);
			*answered = true;
		}
		return NULL;
	}
	if (!json_object_is_type(v, json_type_string) ||
	    (size_t)json_object_get_string_len(v) != strlen(json_object_get_string(v))) {
		invalid(call, key);
		*answered = true;
		return NULL;
	}
	return json_object_get_string(v);
}

static bool param_int(struct control_call *call, struct json_object *params, const char *key, long long min,
		      long long max, long long *out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(params, key, &v) || json_object_is_type(v, json_type_null))
		return true;
	errno = 0;
	if (!json_object_is_type(v, json_type_int) || (*out = json_object_get_int64(v), errno) || *out < min ||
	    *out > max) {
		invalid(call, key);
		return false;
	}
	return true;
}

/* The one mapping of a directory outcome to a control error. */
static void directory_error(struct control_call *call, enum dir_status st, const char *message)
{
	struct peerd *p = control_peerd(call);
	struct json_object *o;

	switch (st) {
	case DIR_UNAUTHORIZED:
		peer_error(call, PEER_E_AUTHENTICATION_FAILED, one("message", json_object_new_string(message)));
		break;
	case DIR_NOT_LOGGED_IN:
		peer_error(call, PEER_E_NOT_LOGGED_IN, NULL);
		break;
	case DIR_RATE_LIMITED:
		peer_error(call, PEER_E_RATE_LIMITED, one("retry_after", json_object_new_int(60)));
		break;
	case DIR_FORBIDDEN:
	case DIR_NOT_FOUND:
	case DIR_CONFLICT:
	case DIR_REJECTED:
		/* The directory refused what we passed on: the caller's input. */
		control_error(call, VARLINK_E_INVALID_PARAMETER, one("parameter", json_object_new_string(message)));
		break;
	default:
		o = json_object_new_object();
		json_object_object_add(o, "url", json_object_new_string(p->set.directory));
		json_object_object_add(o, "message", json_object_new_string(message));
		peer_error(call, PEER_E_DIRECTORY_UNREACHABLE, o);
	}
}

/* ---- Register, Login, Logout, Index -------------------------------------- */

struct register_call {
	struct control_call *call;
	char user[USERNAME_MAX + 1];
};

static void registered(void *arg, const struct dir_result *r)
{
	struct register_call *rc = arg;

	if (r->status == DIR_OK)
		control_reply(rc->call, one("username", json_object_new_string(rc->user)));
	else if (r->status == DIR_CONFLICT)
		peer_error(rc->call, PEER_E_USER_EXISTS, one("username", json_object_new_string(rc->user)));
	else if (r->status == DIR_FORBIDDEN)
		peer_error(rc->call, PEER_E_REGISTRATION_CLOSED, NULL);
	else
		directory_error(rc->call, r->status, r->message);
	free(rc);
}

static void m_register(struct control_call *call, struct json_object *params)
{
	bool answered = false;
	const char *user = param_string(call, params, "username", true, &answered);
	const char *pw = param_string(call, params, "password", true, &answered);
	struct register_call *rc;

	if (answered)
		return;
	if (!valid_username(user)) {
		invalid(call, "username");
		return;
	}
	if (!*pw || strlen(pw) >= PEER_PASSWORD_MAX) {
		invalid(call, "password");
		return;
	}
	rc = calloc(1, sizeof(*rc));
	if (!rc) {
		directory_error(call, DIR_NO_MEMORY, "out of memory");
		return;
	}
	rc->call = call;
	snprintf(rc->user, sizeof(rc->user), "%s", user);
	dir_register(control_peerd(call)->dc, user, pw, registered, rc);
}

struct login_call {
	struct control_call *call;
	char user[USERNAME_MAX + 1];
};

static void logged_in(void *arg, enum dir_status st, const char *message, struct json_object *expires_at)
{
	struct login_call *lc = arg;
	struct json_object *o;

	if (st != DIR_OK) {
		directory_error(lc->call, st, message);
	} else {
		o = json_object_new_object();
		json_object_object_add(o, "username", json_object_new_string(lc->user));
		if (expires_at)
			json_object_object_add(o, "expires_at", json_object_get(expires_at));
		control_reply(lc->call, o);
	}
	free(lc);
}

static void m_login(struct control_call *call, struct json_object *params)
{
	bool answered = false;
	const char *user = param_string(call, params, "username", true, &answered);
	const char *pw = param_string(call, params, "password", true, &answered);
	struct login_call *lc;

	if (answered)
		return;
	if (!valid_username(user)) {
		invalid(call, "username");
		return;
	}
	if (strlen(pw) >= PEER_PASSWORD_MAX) {
		invalid(call, "password");
		return;
	}
	lc = calloc(1, sizeof(*lc));
	if (!lc) {
		directory_error(call, DIR_NO_MEMORY, "out of memory");
		return;
	}
	lc->call = call;
	snprintf(lc->user, sizeof(lc->user), "%s", user);
	session_login(control_peerd(call)->session, user, pw, logged_in, lc);
}

static void logged_out(void *arg, enum dir_status st, const char *message, struct json_object *extra)
{
	/* The session is over here whatever the directory said. */
	control_reply(arg, NULL);
}

static void m_logout(struct control_call *call, struct json_object *params)
{
	int r = session_logout(control_peerd(call)->session, logged_out, call);

	if (r == -ENOTCONN)
		peer_error(call, PEER_E_NOT_LOGGED_IN, NULL);
	else if (r < 0)
		directory_error(call, DIR_NO_MEMORY, "out of memory");
}

static void indexed(void *arg, int n, enum dir_status st, const char *message)
{
	struct control_call *call = arg;

	if (st == DIR_NOT_LOGGED_IN)
		peer_error(call, PEER_E_NOT_LOGGED_IN, NULL);
	else if (n < 0 || st != DIR_OK)
		directory_error(call, st == DIR_OK ? DIR_UNREACHABLE : st, n < 0 ? "cannot read the shared folder"
										 : message);
	else
		control_reply(call, one("indexed", json_object_new_int(n)));
}

static void m_index(struct control_call *call, struct json_object *params)
{
	struct peerd *p = control_peerd(call);

	if (!session_logged_in(p->session)) {
		peer_error(call, PEER_E_NOT_LOGGED_IN, NULL);
		return;
	}
	watch_rescan(p->watch, indexed, call);
}

/* ---- Search ---------------------------------------------------------------- */

struct search_call {
	struct control_call *call;
	bool exact;
};

static void copy_key(struct json_object *to, struct json_object *from, const char *key)
{
	struct json_object *v;

	if (json_object_object_get_ex(from, key, &v))
		json_object_object_add(to, key, json_object_get(v));
	else
		json_object_object_add(to, key, NULL);
}

static void searched(void *arg, const struct dir_result *r)
{
	struct search_call *sc = arg;
	struct json_object *list, *results, *o, *total = NULL;

	if (r->status == DIR_UNAUTHORIZED) {
		peer_error(sc->call, PEER_E_NOT_LOGGED_IN, NULL);
	} else if (!(r->status == DIR_OK || (sc->exact && r->status == DIR_NOT_FOUND))) {
		directory_error(sc->call, r->status, r->message);
	} else {
		results = json_object_new_array();
		if (r->status == DIR_OK &&
		    json_object_object_get_ex(r->json, sc->exact ? "peers_with_file" : "results", &list) &&
		    json_object_is_type(list, json_type_array)) {
			for (size_t i = 0; i < json_object_array_length(list); i++) {
				struct json_object *h = json_object_array_get_idx(list, i), *e = json_object_new_object();

				copy_key(e, h, "peer");
				copy_key(e, h, "ip");
				copy_key(e, h, "port");
				copy_key(e, h, "name");
				copy_key(e, h, "size");
				copy_key(e, h, "sha256");
				json_object_array_add(results, e);
			}
		}
		o = json_object_new_object();
		if (!sc->exact && json_object_object_get_ex(r->json, "total", &total))
			json_object_object_add(o, "total", json_object_get(total));
		else
			json_object_object_add(o, "total", json_object_new_int((int)json_object_array_length(results)));
		json_object_object_add(o, "results", results);
		control_reply(sc->call, o);
	}
	free(sc);
}

static void m_search(struct control_call *call, struct json_object *params)
{
	struct peerd *p = control_peerd(call);
	bool answered = false;
	const char *query = param_string(call, params, "query", false, &answered);
	const char *exact = param_string(call, params, "exact", false, &answered);
	long long limit = PEER_SEARCH_LIMIT_DEFAULT, offset = 0;
	struct search_call *sc;

	if (answered)
		return;
	if (!param_int(call, params, "limit", 1, PEER_SEARCH_LIMIT_MAX, &limit) ||
	    !param_int(call, params, "offset", 0, INT32_MAX, &offset))
		return;
	if ((query != NULL) == (exact != NULL)) {
		invalid(call, query ? "exact" : "query");
		return;
	}
	if ((exact && !valid_filename(exact, strlen(exact))) || (query && (!*query || strlen(query) > PEER_QUERY_MAX))) {
		invalid(call, exact ? "exact" : "query");
		return;
	}
	if (!session_logged_in(p->session)) {
		peer_error(call, PEER_E_NOT_LOGGED_IN, NULL);
		return;
	}
	sc = calloc(1, sizeof(*sc));
	if (!sc) {
		directory_error(call, DIR_NO_MEMORY, "out of memory");
		return;
	}
	sc->call = call;
	sc->exact = exact != NULL;
	if (exact)
		dir_search_file(p->dc, exact, searched, sc);
	else
		dir_search(p->dc, query, limit, offset, searched, sc);
}

/* ---- Status, ListShared ---------------------------------------------------- */

static struct json_object *status_json(struct peerd *p)
{
	struct json_object *o = json_object_new_object(), *adv = json_object_new_object();
	bool in = session_logged_in(p->session);
	uint64_t bytes = 0;
	size_t n = 0;

	share_totals(&p->share, &n, &bytes);
	json_object_object_add(o, "version", json_object_new_string(PACKAGE_VERSION));
	json_object_object_add(o, "peer", p->name ? json_object_new_string(p->name) : NULL);
	json_object_object_add(o, "username", in ? json_object_new_string(session_user(p->session)) : NULL);
	json_object_object_add(o, "logged_in", json_object_new_boolean(in));
	json_object_object_add(o, "directory", session_directory_json(p->session));
	json_object_object_add(o, "listen", json_object_new_string(p->bound));
	json_object_object_add(adv, "ip", p->set.ip ? json_object_new_string(p->set.ip) : NULL);
	json_object_object_add(adv, "port", json_object_new_int(p->grpc_port));
	json_object_object_add(o, "advertised", adv);
	json_object_object_add(o, "folder", json_object_new_string(p->set.folder));
	json_object_object_add(o, "shared_files", json_object_new_int64((int64_t)n));
	json_object_object_add(o, "shared_bytes", json_object_new_int64((int64_t)bytes));
	if (p->watch && watch_progress(p->watch))
		json_object_object_add(o, "hashing", json_object_new_string(watch_progress(p->watch)));
	json_object_object_add(o, "transfers_active", json_object_new_int(transfers_active(p->transfers)));
	json_object_object_add(o, "upload_rate", json_object_new_int64(p->set.upload_rate));
	json_object_object_add(o, "download_rate", json_object_new_int64(p->set.download_rate));
	/* File bytes since start, as metrics.c counts them (also without metrics_listen). */
	json_object_object_add(o, "bytes_up", json_object_new_int64((int64_t)metrics_get(M_BYTES_SERVED)));
	json_object_object_add(o, "bytes_down", json_object_new_int64((int64_t)metrics_get(M_BYTES_RECEIVED)));
	/* The same with earlier runs (STATE_DIR/totals). */
	json_object_object_add(o, "bytes_up_total", json_object_new_int64((int64_t)metrics_total(M_BYTES_SERVED)));
	json_object_object_add(o, "bytes_down_total", json_object_new_int64((int64_t)metrics_total(M_BYTES_RECEIVED)));
	return o;
}

/* Status asks /healthz and waits for it STATUS_PROBE_MS at most; a
 * directory that does not answer by then is reported so at once. */
struct status_call {
	struct control_call *call; /* NULL once answered */
	struct event *timer;
	bool probe_done;
};

static void status_answer(struct status_call *sc)
{
	if (sc->call) {
		control_reply(sc->call, status_json(control_peerd(sc->call)));
		sc->call = NULL;
	}
	if (sc->probe_done) {
		event_free(sc->timer);
		free(sc);
	}
}

static void status_probed(void *arg, const struct dir_result *r)
{
	struct status_call *sc = arg;

	sc->probe_done = true;
	status_answer(sc);
}

static void status_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct status_call *sc = arg;

	if (sc->call) {
		control_reply(sc->call, status_json(control_peerd(sc->call)));
		sc->call = NULL;
	}
}

static void m_status(struct control_call *call, struct json_object *params)
{
	struct peerd *p = control_peerd(call);
	struct status_call *sc;
	struct timeval tv = { 0, STATUS_PROBE_MS * 1000 };

	/* A call already waiting says enough about the directory. */
	if (dirclient_oldest_call(p->dc) || !(sc = calloc(1, sizeof(*sc)))) {
		control_reply(call, status_json(p));
		return;
	}
	sc->timer = evtimer_new(p->base, status_timeout, sc);
	if (!sc->timer) {
		free(sc);
		control_reply(call, status_json(p));
		return;
	}
	sc->call = call;
	evtimer_add(sc->timer, &tv);
	dir_healthz(p->dc, status_probed, sc);
}

static void m_list_shared(struct control_call *call, struct json_object *params)
{
	control_reply(call, one("files", share_list_json(&control_peerd(call)->share)));
}

/* ---- Download, Transfers, Cancel ------------------------------------------- */

/* A client following a Download. */
struct watcher {
	struct control_call *call;
	struct transfer *t;
	struct watcher *next;
};

static struct watcher *watchers;

/* Answer a watcher: progress while running (when it asked for more), the
 * end otherwise. Returns true when the call is over. */
static bool watcher_report(struct watcher *w)
{
	struct json_object *o = NULL;
	const char *error = NULL;
	int r;

	if (control_call_gone(w->call)) {
		control_reply(w->call, NULL); /* frees it: nobody listens */
		return true;
	}
	r = transfer_report(w->t, &o, &error);
	if (r == 1) {
		if (control_call_more(w->call))
			control_continue(w->call, o);
		else
			json_object_put(o);
		return false;
	}
	if (r == 0)
		control_reply(w->call, o);
	else
		control_error(w->call, error, o);
	return true;
}

static void watchers_tick(void *arg)
{
	for (struct watcher **pw = &watchers; *pw;) {
		struct watcher *w = *pw;

		if (watcher_report(w)) {
			*pw = w->next;
			free(w);
		} else {
			pw = &w->next;
		}
	}
}

struct download_call {
	struct control_call *call;
	char name[FILENAME_MAX_BYTES + 1];
};

static void download_started(void *arg, struct transfer *t, enum peer_error err, const char *message)
{
	struct download_call *dc = arg;
	struct watcher *w;

	if (!t) {
		struct json_object *o = NULL;

		if (err != PEER_E_NOT_LOGGED_IN) { /* NotLoggedIn has no parameters */
			o = json_object_new_object();
			json_object_object_add(o, "name", json_object_new_string(dc->name));
			if (err == PEER_E_DIRECTORY_UNREACHABLE)
				json_object_object_add(o, "url",
						       json_object_new_string(control_peerd(dc->call)->set.directory));
			if (message && *message && err != PEER_E_NOT_FOUND)
				json_object_object_add(o, "message", json_object_new_string(message));
		}
		peer_error(dc->call, err, o);
		free(dc);
		return;
	}
	if (control_call_oneway(dc->call)) {
		control_reply(dc->call, NULL); /* it runs; nobody hears of it (see Transfers) */
		free(dc);
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		/* The transfer goes on; only its report is lost. */
		struct json_object *o = one("name", json_object_new_string(dc->name));

		json_object_object_add(o, "message", json_object_new_string("out of memory"));
		peer_error(dc->call, PEER_E_TRANSFER_FAILED, o);
		free(dc);
		return;
	}
	w->call = dc->call;
	w->t = t;
	w->next = watchers;
	watchers = w;
	free(dc);
}

static void m_download(struct control_call *call, struct json_object *params)
{
	struct peerd *p = control_peerd(call);
	bool answered = false;
	const char *name = param_string(call, params, "name", true, &answered);
	const char *from = param_string(call, params, "from", false, &answered);
	const char *to = param_string(call, params, "to", false, &answered);
	struct json_object *fp; /* "force": replace an existing file of other content */
	bool force = false;
	char folder[PATH_MAX];
	struct download_call *dc;
	struct stat st;

	if (answered)
		return;
	if (json_object_object_get_ex(params, "force", &fp) && !json_object_is_type(fp, json_type_null)) {
		if (!json_object_is_type(fp, json_type_boolean)) {
			invalid(call, "force");
			return;
		}
		force = json_object_get_boolean(fp);
	}
	if (!valid_filename(name, strlen(name))) {
		invalid(call, "name");
		return;
	}
	if (from && !valid_username(from)) {
		invalid(call, "from");
		return;
	}
	if (to && (to[0] != '/' || strlen(to) >= sizeof(((struct transfer *)0)->to) || stat(to, &st) < 0 ||
		   !S_ISDIR(st.st_mode))) {
		invalid(call, "to");
		return;
	}
	if (!to) {
		if (!realpath(p->set.folder, folder)) {
			struct json_object *o = one("name", json_object_new_string(name));

			json_object_object_add(o, "message", json_object_new_string("the shared folder is gone"));
			peer_error(call, PEER_E_TRANSFER_FAILED, o);
			return;
		}
		to = folder;
	}
	dc = calloc(1, sizeof(*dc));
	if (!dc) {
		struct json_object *o = one("name", json_object_new_string(name));

		json_object_object_add(o, "message", json_object_new_string("out of memory"));
		peer_error(call, PEER_E_TRANSFER_FAILED, o);
		return;
	}
	dc->call = call;
	snprintf(dc->name, sizeof(dc->name), "%s", name);
	transfers_start(p->transfers, name, from, to, force, download_started, dc);
}

static void m_transfers(struct control_call *call, struct json_object *params)
{
	control_reply(call, one("transfers", transfers_list_json(control_peerd(call)->transfers)));
}

static void m_cancel(struct control_call *call, struct json_object *params)
{
	bool answered = false;
	const char *id = param_string(call, params, "id", true, &answered);

	if (answered)
		return;
	if (transfers_cancel(control_peerd(call)->transfers, id) == 0)
		control_reply(call, NULL);
	else
		peer_error(call, PEER_E_NOT_FOUND, one("id", json_object_new_string(id)));
}

static void m_pause(struct control_call *call, struct json_object *params)
{
	bool answered = false;
	const char *id = param_string(call, params, "id", true, &answered);

	if (answered)
		return;
	if (transfers_pause(control_peerd(call)->transfers, id) == 0)
		control_reply(call, NULL);
	else
		peer_error(call, PEER_E_NOT_FOUND, one("id", json_object_new_string(id)));
}

struct resume_call {
	struct control_call *call;
	char id[17];
};

static void resumed(void *arg, struct transfer *t, enum peer_error err, const char *message)
{
	struct resume_call *rc = arg;
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "id", json_object_new_string(rc->id));
	if (t) {
		control_reply(rc->call, o);
	} else if (err == PEER_E_NOT_LOGGED_IN) {
		json_object_put(o); /* NotLoggedIn has no parameters */
		peer_error(rc->call, err, NULL);
	} else {
		if (err == PEER_E_DIRECTORY_UNREACHABLE)
			json_object_object_add(o, "url", json_object_new_string(control_peerd(rc->call)->set.directory));
		if (message && *message && err != PEER_E_NOT_FOUND)
			json_object_object_add(o, "message", json_object_new_string(message));
		peer_error(rc->call, err, o);
	}
	free(rc);
}

static void m_resume(struct control_call *call, struct json_object *params)
{
	bool answered = false;
	const char *id = param_string(call, params, "id", true, &answered);
	struct resume_call *rc;

	if (answered)
		return;
	if (strlen(id) >= sizeof(rc->id)) {
		peer_error(call, PEER_E_NOT_FOUND, one("id", json_object_new_string(id)));
		return;
	}
	rc = calloc(1, sizeof(*rc));
	if (!rc) {
		peer_error(call, PEER_E_TRANSFER_FAILED, one("message", json_object_new_string("out of memory")));
		return;
	}
	rc->call = call;
	snprintf(rc->id, sizeof(rc->id), "%s", id);
	transfers_resume(control_peerd(call)->transfers, id, resumed, rc);
}

/* ---- SetRates --------------------------------------------------------------- */

static struct json_object *rates_json(const struct peerd *p)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "upload_rate", json_object_new_int64(p->set.upload_rate));
	json_object_object_add(o, "download_rate", json_object_new_int64(p->set.download_rate));
	return o;
}

/* Either rate, or both, or neither (then it only reads them). Not saved:
 * the configuration's values come back at the next start. */
static void m_set_rates(struct control_call *call, struct json_object *params)
{
	struct peerd *p = control_peerd(call);
	long long up = -1, down = -1;

	if (!param_int(call, params, "upload_rate", 0, PEER_RATE_MAX, &up) ||
	    !param_int(call, params, "download_rate", 0, PEER_RATE_MAX, &down))
		return;
	if (up >= 0 && up != p->set.upload_rate) {
		log_info("upload_rate: %lld bytes/s (was %lld)", up, p->set.upload_rate);
		p->set.upload_rate = up;
		rpc_set_upload_rate(p->rpc, up);
	}
	if (down >= 0 && down != p->set.download_rate) {
		log_info("download_rate: %lld bytes/s (was %lld)", down, p->set.download_rate);
		transfers_set_download_rate(p, down);
	}
	control_reply(call, rates_json(p));
}

static const struct {
	const char *name;
	control_method *fn;
} methods[] = {
	{ PEER_M_REGISTER, m_register },
	{ PEER_M_LOGIN, m_login },
	{ PEER_M_LOGOUT, m_logout },
	{ PEER_M_INDEX, m_index },
	{ PEER_M_SEARCH, m_search },
	{ PEER_M_STATUS, m_status },
	{ PEER_M_LIST_SHARED, m_list_shared },
	{ PEER_M_TRANSFERS, m_transfers },
	{ PEER_M_CANCEL, m_cancel },
	{ PEER_M_PAUSE, m_pause },
	{ PEER_M_RESUME, m_resume },
	{ PEER_M_SET_RATES, m_set_rates },
	{ PEER_M_DOWNLOAD, m_download },
};

control_method *control_method_find(const char *name)
{
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strcmp(name, methods[i].name) == 0)
			return methods[i].fn;
	return NULL;
}

void control_methods_start(struct peerd *p)
{
	transfers_set_observer(p->transfers, watchers_tick, NULL);
}

void control_methods_stop(void)
{
	/* Their clients are gone: end the calls without an answer. */
	while (watchers) {
		struct watcher *w = watchers;

		watchers = w->next;
		control_reply(w->call, NULL);
		free(w);
	}
}
