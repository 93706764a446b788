/* SPDX-License-Identifier: MIT */
/* dirclient.h — the peer's one client of the directory's REST API.
 *
 * Every call is asynchronous and runs on the peer's main event base (no
 * event base per call): it has a deadline, its HTTP status is mapped once to
 * enum dir_status, and its callback runs on the main loop exactly once
 * (also when the call cannot even start: then before the call returns).
 * Calls that need a session send the bearer token set with
 * dirclient_set_token (session.c owns it).
 *
 * Other threads never touch libevent: they hand work over with
 * dirclient_verify_ticket (asynchronous) or dirclient_ticket_wait (blocks
 * the calling thread, never the loop). */
#ifndef P2P_PEERD_DIRCLIENT_H
#define P2P_PEERD_DIRCLIENT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <json-c/json.h>

#include "crypto.h"
#include "validate.h"

/* Deadlines, seconds (p2p-peerd(8), "Bounds"). */
#define DIR_DEADLINE_S 10       /* every call but the two below */
#define DIR_DEADLINE_INDEX_S 30 /* POST /index carries the whole file list */
#define DIR_DEADLINE_HEALTH_S 2
/* The largest answer read from the directory. */
#define DIR_REPLY_MAX (16u << 20)
/* Calls in flight at once; more fail at once with DIR_NO_MEMORY. */
#define DIR_CALLS_MAX 256

enum dir_status {
	DIR_OK = 0,
	DIR_UNREACHABLE,  /* no connection, or no answer before the deadline */
	DIR_SERVER_ERROR, /* 5xx */
	DIR_UNAUTHORIZED, /* 401: no session (any more) */
	DIR_FORBIDDEN,    /* 403 */
	DIR_NOT_FOUND,    /* 404 */
	DIR_CONFLICT,     /* 409 */
	DIR_RATE_LIMITED, /* 429 */
	DIR_REJECTED,     /* any other 4xx: the directory refused what we sent */
	DIR_BAD_REPLY,    /* a 2xx without what the call expects */
	DIR_NO_MEMORY,    /* out of memory or descriptors, or too many calls */
	DIR_NOT_LOGGED_IN, /* the call needs a session and there is none */
	DIR_CANCELLED,    /* the client is being freed */
};

/* A search hit (GET /search?file=) that names size and SHA-256. */
struct dir_hit {
	char peer[USERNAME_MAX + 1];
	char target[300]; /* gRPC target host:port or [v6]:port */
	uint64_t size;
	char sha256[SHA256_HEX_LEN + 1];
};

struct dir_result {
	enum dir_status status;
	int http;                  /* the HTTP status, 0 when none */
	bool timed_out;            /* DIR_UNREACHABLE: the deadline passed */
	const char *message;       /* the directory's "error", or why; never NULL */
	struct json_object *json;  /* the parsed answer, or NULL (borrowed) */
	/* Set by the typed calls on DIR_OK: */
	const char *token;         /* login */
	const char *ticket;        /* ticket */
	const char *file;          /* verify_ticket: the ticket's file */
	const struct dir_hit *hits; /* search_file: every hit with size and sha256, in order */
	size_t nhits;
};

typedef void dir_done(void *arg, const struct dir_result *r);

struct dirclient;

/* base: the main loop's. url: http[s]://HOST:PORT. 0 or -errno. */
int dirclient_new(struct event_base *base, const char *url, struct dirclient **out);
/* From now on every call, also one handed over by another thread, fails
 * at once with DIR_CANCELLED; those in flight get it now. */
void dirclient_shutdown(struct dirclient *dc);
/* dirclient_shutdown, then free. */
void dirclient_free(struct dirclient *dc);
const char *dirclient_url(const struct dirclient *dc);
/* The session's token ("" or NULL: none). Any thread. */
void dirclient_set_token(struct dirclient *dc, const char *token);
bool dirclient_has_token(struct dirclient *dc);
/* The start (mono_now) of the oldest call in flight, 0 when none. */
double dirclient_oldest_call(const struct dirclient *dc);
/* When the directory last answered (any status), 0 when never. */
double dirclient_last_answer(const struct dirclient *dc);

/* The typed calls (main loop only). */
void dir_register(struct dirclient *dc, const char *user, const char *password, dir_done *cb, void *arg);
void dir_login(struct dirclient *dc, const char *user, const char *password, dir_done *cb, void *arg);
/* body: the POST /index object (taken). */
void dir_index(struct dirclient *dc, struct json_object *body, dir_done *cb, void *arg);
void dir_heartbeat(struct dirclient *dc, dir_done *cb, void *arg);
void dir_logout(struct dirclient *dc, dir_done *cb, void *arg);
void dir_search(struct dirclient *dc, const char *query, long long limit, long long offset, dir_done *cb,
		void *arg);
void dir_search_file(struct dirclient *dc, const char *name, dir_done *cb, void *arg);
void dir_ticket(struct dirclient *dc, const char *peer, const char *file, dir_done *cb, void *arg);
void dir_verify(struct dirclient *dc, const char *ticket, dir_done *cb, void *arg);
void dir_healthz(struct dirclient *dc, dir_done *cb, void *arg);

/* ---- from other threads ---------------------------------------------- */

/* The ticket check for rpc.c: result 1 = valid and file is the ticket's
 * file; 0 = refused (403); -EHOSTUNREACH unreachable, timed out or 5xx;
 * -ENOTCONN no session; -ENOMEM. */
typedef void ticket_verify_done(void *arg, int result, const char *file);
/* Any thread, never blocks; done runs exactly once, on the main loop (or
 * before the return when the hand-off itself fails). ctx: the dirclient. */
void dirclient_verify_ticket(void *ctx, const char *ticket, ticket_verify_done *done, void *arg);
/* A ticket for file from peer; blocks the calling thread (never the main
 * loop's) until the directory answers or the deadline. 0, -EACCES,
 * -ENOENT, -EHOSTUNREACH, -ETIMEDOUT, -ENOTCONN (or -ENOMEM). */
int dirclient_ticket_wait(struct dirclient *dc, const char *peer, const char *file, char out[SHA256_HEX_LEN + 1]);

#endif
