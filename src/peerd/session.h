/* SPDX-License-Identifier: MIT */
/* session.h — the peer's session with the directory: login (configured
 * or from the control socket), heartbeats, re-login and re-index when the
 * directory lost us, backoff while it is away, index, logout, and what
 * status says about it. Main loop only, unless noted. */
#ifndef P2P_PEERD_SESSION_H
#define P2P_PEERD_SESSION_H

#include <stdbool.h>

#include <json-c/json.h>

#include "dirclient.h"

struct peerd;
struct session;

/* The outcome of an asynchronous session call: status DIR_OK or why not;
 * extra: for a login, the directory's "expires_at" (borrowed), else NULL. */
typedef void session_done(void *arg, enum dir_status status, const char *message, struct json_object *extra);

int session_new(struct peerd *p, struct dirclient *dc, struct session **out);
/* Log in with the configured user (if any) and start the heartbeats. */
void session_start(struct session *s);
/* Called after every login that indexed (main.c continues saved transfers). */
void session_on_login(struct session *s, void (*fn)(void *arg), void *arg);
/* At shutdown: log out, running the loop until the directory answered or
 * the deadline, then stop. */
void session_stop(struct session *s);
void session_free(struct session *s);

void session_login(struct session *s, const char *user, const char *password, session_done *cb, void *arg);
/* -ENOTCONN when not logged in (cb not called). */
int session_logout(struct session *s, session_done *cb, void *arg);
/* Send the shared list now (coalesced with one in flight); cb may be NULL. */
void session_index(struct session *s, session_done *cb, void *arg);

bool session_logged_in(const struct session *s);
/* The user logged in as, "" when none. */
const char *session_user(const struct session *s);
/* The "directory" object of Status: {"url","reachable","state","message"}. */
struct json_object *session_directory_json(const struct session *s);
/* STATUS= for systemd. */
void session_notify_status(const struct session *s);

#endif
