/* SPDX-License-Identifier: MIT */
/* session.c — owns the peer's session with the directory (session.h):
 * whether and as whom we are logged in, the configured login, heartbeats,
 * re-login and re-index when the directory forgot us, the backoff while it
 * is away, index, logout, and what Status and STATUS= say about it. Every
 * call goes through dirclient.c and returns at once; the answers arrive as
 * callbacks on the main loop. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "peerd.h"

#define RETRY_BASE_S 1.0    /* first wait after the directory is found unreachable */
#define NOT_ANSWERING_S 0.5 /* a call waiting this long: the directory is "not answering" */

struct waiter {
	session_done *cb;
	void *arg;
	struct waiter *next;
};

struct session {
	struct peerd *p;
	struct dirclient *dc;
	char username[USERNAME_MAX + 1]; /* "" when logged out */
	bool round_busy;                 /* a heartbeat or configured login in flight */
	unsigned failures;               /* consecutive rounds that could not reach it */
	struct event *ev_beat, *ev_retry;
	bool index_busy;
	struct waiter *index_now, *index_next; /* told when this / the next index ends */
	bool index_again;
	void (*on_login)(void *arg);
	void *on_login_arg;
};

static void set_token(struct session *s, const char *token, const char *user)
{
	dirclient_set_token(s->dc, token);
	snprintf(s->username, sizeof(s->username), "%s", token && *token ? user : "");
}

bool session_logged_in(const struct session *s)
{
	return s->username[0] != '\0';
}

const char *session_user(const struct session *s)
{
	return s->username;
}

void session_notify_status(const struct session *s)
{
	struct peerd *p = s->p;
	const char *extra = ""; /* watch.c says how far hashing is, itself */
	if (s->failures)
		notify_status("the directory %s is unreachable; retrying; sharing %zu file(s), gRPC port %d%s",
			      dirclient_url(s->dc), p->share.n, p->grpc_port, extra);
	else if (session_logged_in(s))
		notify_status("logged in as %s, sharing %zu file(s), gRPC port %d%s", s->username, p->share.n,
			      p->grpc_port, extra);
	else
		notify_status("not logged in, sharing %zu file(s), gRPC port %d%s", p->share.n, p->grpc_port, extra);
}

struct json_object *session_directory_json(const struct session *s)
{
	struct json_object *o = json_object_new_object();
	double oldest = dirclient_oldest_call(s->dc), now = mono_now();
	const char *state;
	char msg[128] = "";
	bool reachable;

	if (oldest && now - oldest >= NOT_ANSWERING_S) {
		state = "not answering";
		snprintf(msg, sizeof(msg), "a call has waited %.1f s for an answer", now - oldest);
		reachable = false;
	} else if (s->failures) {
		state = "unreachable";
		snprintf(msg, sizeof(msg), "%u attempt(s) failed; retrying", s->failures);
		reachable = false;
	} else if (dirclient_last_answer(s->dc) > 0) {
		state = "reachable";
		reachable = true;
	} else {
		state = "unknown";
		reachable = false;
	}
	json_object_object_add(o, "url", json_object_new_string(dirclient_url(s->dc)));
	json_object_object_add(o, "reachable", json_object_new_boolean(reachable));
	json_object_object_add(o, "state", json_object_new_string(state));
	if (*msg)
		json_object_object_add(o, "message", json_object_new_string(msg));
	return o;
}

/* ---- index --------------------------------------------------------------- */

static void index_start(struct session *s);

static void tell(struct waiter *list, enum dir_status st, const char *message)
{
	while (list) {
		struct waiter *w = list;

		list = w->next;
		if (w->cb)
			w->cb(w->arg, st, message, NULL);
		free(w);
	}
}

static void on_indexed(void *arg, const struct dir_result *r)
{
	struct session *s = arg;
	struct waiter *told = s->index_now;

	s->index_busy = false;
	s->index_now = NULL;
	if (r->status == DIR_OK)
		log_info("indexed %zu file(s) at %s", s->p->share.n, dirclient_url(s->dc));
	else if (r->status != DIR_CANCELLED)
		log_warn("indexing at %s failed: %s", dirclient_url(s->dc), r->message);
	if (r->status == DIR_UNAUTHORIZED)
		set_token(s, NULL, NULL);
	tell(told, r->status, r->message);
	if (s->index_again && r->status != DIR_CANCELLED) {
		s->index_again = false;
		index_start(s);
	} else {
		tell(s->index_next, r->status == DIR_CANCELLED ? DIR_CANCELLED : DIR_NOT_LOGGED_IN, r->message);
		s->index_next = NULL;
		s->index_again = false;
	}
	session_notify_status(s);
}

static void index_start(struct session *s)
{
	struct peerd *p = s->p;
	struct json_object *body = json_object_new_object();

	s->index_now = s->index_next;
	s->index_next = NULL;
	s->index_busy = true;
	if (body) {
		if (p->set.ip)
			json_object_object_add(body, "ip", json_object_new_string(p->set.ip));
		json_object_object_add(body, "port", json_object_new_int(p->grpc_port));
		json_object_object_add(body, "folder", json_object_new_string(p->set.folder));
		json_object_object_add(body, "files", share_to_json(&p->share));
	}
	dir_index(s->dc, body, on_indexed, s);
}

void session_index(struct session *s, session_done *cb, void *arg)
{
	struct waiter *w = calloc(1, sizeof(*w));

	if (!w) {
		if (cb)
			cb(arg, DIR_NO_MEMORY, "out of memory", NULL);
		return;
	}
	w->cb = cb;
	w->arg = arg;
	w->next = s->index_next;
	s->index_next = w;
	if (!session_logged_in(s)) {
		s->index_next = w->next;
		free(w);
		if (cb)
			cb(arg, DIR_NOT_LOGGED_IN, "not logged in", NULL);
		return;
	}
	if (s->index_busy)
		s->index_again = true; /* the list changed since that one was sent */
	else
		index_start(s);
}

/* ---- rounds: configured login, heartbeat, backoff ----------------------- */

static void round_start(struct session *s);

static int read_password(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return log_errno(LOG_ERR, errno, "cannot read the password file %s", path);
	if (!fgets(buf, (int)len, f))
		buf[0] = '\0';
	fclose(f);
	n = strcspn(buf, "\r\n");
	buf[n] = '\0';
	return n ? 0 : -EINVAL;
}

/* The directory cannot be reached: try again after an exponential backoff
 * with jitter, capped, instead of at the next heartbeat. */
static void away(struct session *s)
{
	uint32_t rnd = 0;
	double delay;
	struct timeval tv;

	s->failures++;
	metrics_set(M_DIRECTORY_UP, 0);
	crypto_random(&rnd, sizeof(rnd));
	delay = backoff_delay(s->failures, RETRY_BASE_S, (double)s->p->set.retry_max, rnd / 4294967296.0);
	if (s->failures == 1)
		log_warn("the directory %s cannot be reached; retrying (backoff up to %llds)", dirclient_url(s->dc),
			 s->p->set.retry_max);
	else
		log_debug("the directory is still unreachable (attempt %u); next try in %.1fs", s->failures, delay);
	tv.tv_sec = (time_t)delay;
	tv.tv_usec = (suseconds_t)((delay - (double)tv.tv_sec) * 1e6);
	event_add(s->ev_retry, &tv);
	session_notify_status(s);
}

static bool away_status(enum dir_status st)
{
	return st == DIR_UNREACHABLE || st == DIR_SERVER_ERROR;
}

/* A round ended: st is how the directory answered (DIR_OK when it is there). */
static void round_end(struct session *s, enum dir_status st)
{
	s->round_busy = false;
	if (st == DIR_CANCELLED)
		return;
	if (away_status(st)) {
		away(s);
		return;
	}
	if (s->failures)
		log_notice("the directory %s is back (after %u attempt(s))", dirclient_url(s->dc), s->failures);
	s->failures = 0;
	metrics_set(M_DIRECTORY_UP, 1);
	session_notify_status(s);
}

static void round_indexed(void *arg, enum dir_status st, const char *message, struct json_object *extra)
{
	struct session *s = arg;

	/* A directory that is back but fails the re-index is not back yet:
	 * retry with backoff (else the re-index would wait for the next 409). */
	round_end(s, st == DIR_OK || st == DIR_NOT_LOGGED_IN || st == DIR_UNAUTHORIZED || !s->failures ? DIR_OK
												      : DIR_SERVER_ERROR);
}

static void own_login_indexed(void *arg, enum dir_status st, const char *message, struct json_object *extra)
{
	struct session *s = arg;

	if (st == DIR_OK && s->on_login)
		s->on_login(s->on_login_arg);
	round_indexed(arg, st, message, extra);
}

static void on_own_login(void *arg, const struct dir_result *r)
{
	struct session *s = arg;

	if (r->status == DIR_OK) {
		set_token(s, r->token, s->p->set.username);
		log_info("logged in as %s at %s", s->username, dirclient_url(s->dc));
		session_index(s, own_login_indexed, s);
		return;
	}
	if (!away_status(r->status) && r->status != DIR_CANCELLED)
		log_err("login as %s at %s failed: %s", s->p->set.username, dirclient_url(s->dc), r->message);
	round_end(s, r->status);
}

static void own_login(struct session *s)
{
	char password[PEER_PASSWORD_MAX + 80];

	if (read_password(s->p->set.password_file, password, sizeof(password)) < 0) {
		round_end(s, DIR_OK);
		return;
	}
	dir_login(s->dc, s->p->set.username, password, on_own_login, s);
	explicit_bzero(password, sizeof(password));
}

static void on_beat_answer(void *arg, const struct dir_result *r)
{
	struct session *s = arg;
	bool configured = s->p->set.username && s->p->set.password_file;

	switch (r->status) {
	case DIR_UNAUTHORIZED:
		set_token(s, NULL, NULL);
		if (configured) {
			own_login(s);
			return;
		}
		break;
	case DIR_CONFLICT:
		/* Away longer than the directory's TTL, or a restored database:
		 * say again what we share. */
		session_index(s, round_indexed, s);
		return;
	case DIR_OK:
		if (s->failures) {
			session_index(s, round_indexed, s);
			return;
		}
		break;
	case DIR_NOT_LOGGED_IN:
	case DIR_UNREACHABLE:
	case DIR_SERVER_ERROR:
	case DIR_CANCELLED:
		break;
	default:
		log_warn("heartbeat to %s failed: %s", dirclient_url(s->dc), r->message);
	}
	round_end(s, r->status);
}

/* One round: log in when we have no session (and can do it ourselves),
 * else heartbeat. */
static void round_start(struct session *s)
{
	if (s->round_busy)
		return;
	s->round_busy = true;
	if (session_logged_in(s))
		dir_heartbeat(s->dc, on_beat_answer, s);
	else if (s->p->set.username && s->p->set.password_file)
		own_login(s);
	else
		round_end(s, DIR_OK);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	round_start(arg);
}

static void on_beat(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	if (s->failures == 0) /* while it is away, the retry timer does this */
		round_start(s);
}

/* ---- from the control socket --------------------------------------------- */

struct login_call {
	struct session *s;
	char user[USERNAME_MAX + 1];
	struct json_object *expires_at;
	session_done *cb;
	void *arg;
};

static void ctl_login_indexed(void *arg, enum dir_status st, const char *message, struct json_object *extra)
{
	struct login_call *lc = arg;

	if (st != DIR_OK)
		log_warn("logged in as %s but indexing failed: %s", lc->user, message);
	else if (lc->s->on_login)
		lc->s->on_login(lc->s->on_login_arg);
	lc->cb(lc->arg, DIR_OK, "", lc->expires_at);
	json_object_put(lc->expires_at);
	free(lc);
}

static void on_ctl_login(void *arg, const struct dir_result *r)
{
	struct login_call *lc = arg;
	struct session *s = lc->s;
	struct json_object *v;

	if (r->status != DIR_OK) {
		if (r->status != DIR_UNREACHABLE && r->status != DIR_CANCELLED)
			log_err("login as %s at %s failed: %s", lc->user, dirclient_url(s->dc), r->message);
		lc->cb(lc->arg, r->status, r->message, NULL);
		free(lc);
		return;
	}
	set_token(s, r->token, lc->user);
	metrics_set(M_DIRECTORY_UP, 1);
	log_info("logged in as %s at %s", s->username, dirclient_url(s->dc));
	if (json_object_object_get_ex(r->json, "expires_at", &v))
		lc->expires_at = json_object_get(v);
	session_index(s, ctl_login_indexed, lc);
}

void session_login(struct session *s, const char *user, const char *password, session_done *cb, void *arg)
{
	struct login_call *lc = calloc(1, sizeof(*lc));

	if (!lc) {
		cb(arg, DIR_NO_MEMORY, "out of memory", NULL);
		return;
	}
	lc->s = s;
	snprintf(lc->user, sizeof(lc->user), "%s", user);
	lc->cb = cb;
	lc->arg = arg;
	dir_login(s->dc, user, password, on_ctl_login, lc);
}

struct logout_call {
	struct session *s;
	session_done *cb;
	void *arg;
	bool *done;
};

static void on_logout(void *arg, const struct dir_result *r)
{
	struct logout_call *lc = arg;

	if (r->status == DIR_OK)
		log_info("logged out of %s", dirclient_url(lc->s->dc));
	if (lc->cb)
		lc->cb(lc->arg, r->status, r->message, NULL);
	if (lc->done)
		*lc->done = true;
	free(lc);
}

static int logout(struct session *s, session_done *cb, void *arg, bool *done)
{
	struct logout_call *lc;

	if (!session_logged_in(s))
		return -ENOTCONN;
	lc = calloc(1, sizeof(*lc));
	if (!lc)
		return -ENOMEM;
	lc->s = s;
	lc->cb = cb;
	lc->arg = arg;
	lc->done = done;
	dir_logout(s->dc, on_logout, lc); /* the request carries the token already */
	set_token(s, NULL, NULL);
	session_notify_status(s);
	return 0;
}

int session_logout(struct session *s, session_done *cb, void *arg)
{
	return logout(s, cb, arg, NULL);
}

/* ---- life ----------------------------------------------------------------- */

int session_new(struct peerd *p, struct dirclient *dc, struct session **out)
{
	struct session *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->p = p;
	s->dc = dc;
	s->ev_beat = event_new(p->base, -1, EV_PERSIST, on_beat, s);
	s->ev_retry = evtimer_new(p->base, on_retry, s);
	if (!s->ev_beat || !s->ev_retry) {
		session_free(s);
		return -ENOMEM;
	}
	*out = s;
	return 0;
}

void session_on_login(struct session *s, void (*fn)(void *arg), void *arg)
{
	s->on_login = fn;
	s->on_login_arg = arg;
}

void session_start(struct session *s)
{
	struct timeval beat = { .tv_sec = s->p->set.heartbeat };

	event_add(s->ev_beat, &beat);
	if (!s->p->set.username || !s->p->set.password_file) {
		log_notice("no username and password_file configured: waiting for a login on the control socket");
		return;
	}
	round_start(s);
}

void session_stop(struct session *s)
{
	bool done = false;

	if (!s)
		return;
	event_del(s->ev_beat);
	event_del(s->ev_retry);
	if (logout(s, NULL, NULL, &done) < 0)
		return;
	/* Only the logout is left to wait for; it has its deadline. */
	while (!done && event_base_loop(s->p->base, EVLOOP_ONCE) == 0)
		;
}

void session_free(struct session *s)
{
	if (!s)
		return;
	tell(s->index_now, DIR_CANCELLED, "stopping");
	tell(s->index_next, DIR_CANCELLED, "stopping");
	if (s->ev_beat)
		event_free(s->ev_beat);
	if (s->ev_retry)
		event_free(s->ev_retry);
	free(s);
}
