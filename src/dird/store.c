/* SPDX-License-Identifier: MIT */
/* store.c — picks the storage backend by the database name and passes every
 * store.h call on to it; searches go to the backend's view (view.h), the
 * one search path for both backends. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_backend.h"
#include "view.h"

struct store {
	const struct store_ops *ops;
	struct store_backend *b;
	/* Serialises the calls into a backend that is not thread-safe;
	 * recursive, so that a thread holding it (store_hold) can call in. */
	pthread_mutex_t lock;
};

static void enter(struct store *st)
{
	if (!st->ops->thread_safe)
		pthread_mutex_lock(&st->lock);
}

static void leave(struct store *st)
{
	if (!st->ops->thread_safe)
		pthread_mutex_unlock(&st->lock);
}

bool store_try_hold(struct store *st)
{
	return st->ops->thread_safe || pthread_mutex_trylock(&st->lock) == 0;
}

void store_hold(struct store *st)
{
	enter(st);
}

void store_release(struct store *st)
{
	leave(st);
}

bool store_remote(const struct store *st)
{
	return st->ops->remote;
}

bool store_is_postgresql(const char *database)
{
	return strncmp(database, "postgresql://", 13) == 0 || strncmp(database, "postgres://", 11) == 0;
}

void store_describe(const char *database, char *buf, size_t len)
{
	const char *host, *end, *at, *colon, *pw;

	snprintf(buf, len, "%s", database);
	if (!store_is_postgresql(database))
		return;
	/* postgresql://user:secret@host/db?password=secret */
	host = strstr(database, "://") + 3;
	end = host + strcspn(host, "/?#");
	at = memrchr(host, '@', (size_t)(end - host));
	colon = at ? memchr(host, ':', (size_t)(at - host)) : NULL;
	if (colon)
		snprintf(buf, len, "%.*s***%s", (int)(colon + 1 - database), database, at);
	pw = strstr(buf, "password=");
	if (pw) {
		const char *rest = strstr(database, "password=") + 9;

		rest += strcspn(rest, "&#");
		snprintf((char *)pw + 9, len - (size_t)(pw + 9 - buf), "***%s", rest);
	}
}

int store_open_pool(const char *database, unsigned connections, struct store **out)
{
	const struct store_ops *ops = &store_sqlite_ops;
	struct store *st;
	int r;

	if (store_is_postgresql(database)) {
#ifdef HAVE_POSTGRESQL
		ops = &store_pg_ops;
#else
		log_err("database: this p2p-dird was built without PostgreSQL (configure --with-postgresql)");
		return -EPROTONOSUPPORT;
#endif
	}
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->ops = ops;
	{
		pthread_mutexattr_t attr;

		pthread_mutexattr_init(&attr);
		pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
		pthread_mutex_init(&st->lock, &attr);
		pthread_mutexattr_destroy(&attr);
	}
	r = ops->open(database, connections ? connections : 1, &st->b);
	if (r < 0) {
		free(st);
		return r;
	}
	*out = st;
	return 0;
}

int store_open(const char *database, struct store **out)
{
	return store_open_pool(database, 1, out);
}

void store_close(struct store *st)
{
	if (!st)
		return;
	st->ops->close(st->b);
	pthread_mutex_destroy(&st->lock);
	free(st);
}

int store_user_create(struct store *st, const char *username, const char *hash, int64_t now)
{
	int r;

	enter(st);
	r = st->ops->user_create(st->b, username, hash, now);
	leave(st);
	return r;
}

int store_user_hash(struct store *st, const char *username, char **hash_out)
{
	int r;

	enter(st);
	r = st->ops->user_hash(st->b, username, hash_out);
	leave(st);
	return r;
}

int store_user_delete(struct store *st, const char *username)
{
	int r;

	enter(st);
	r = st->ops->user_delete(st->b, username);
	leave(st);
	return r;
}

int store_user_list(struct store *st, store_name_cb cb, void *ctx)
{
	int r;

	enter(st);
	r = st->ops->user_list(st->b, cb, ctx);
	leave(st);
	return r;
}

int store_session_create(struct store *st, const char *username, const char *token_hash,
			 int64_t expires_at)
{
	int r;

	enter(st);
	r = st->ops->session_create(st->b, username, token_hash, expires_at);
	leave(st);
	return r;
}

int store_session_lookup(struct store *st, const char *token_hash, int64_t now,
			 char *username, int64_t *expires_at)
{
	int r;

	enter(st);
	r = st->ops->session_lookup(st->b, token_hash, now, username, expires_at);
	leave(st);
	return r;
}

int store_session_cached(struct store *st, const char *token_hash, int64_t now, char *username)
{
	/* Thread-safe backends only: this must not wait for store.c's lock. */
	if (!st->ops->session_cached || !st->ops->thread_safe)
		return -EAGAIN;
	return st->ops->session_cached(st->b, token_hash, now, username);
}

int store_session_delete(struct store *st, const char *token_hash)
{
	int r;

	enter(st);
	r = st->ops->session_delete(st->b, token_hash);
	leave(st);
	return r;
}

int store_index(struct store *st, const char *username, const char *ip, int port,
		const char *folder, const struct store_file *files, size_t nfiles, int64_t now)
{
	int r;

	enter(st);
	r = st->ops->index(st->b, username, ip, port, folder, files, nfiles, now);
	leave(st);
	return r;
}

int store_heartbeat(struct store *st, const char *username, int64_t now)
{
	int result, r = store_heartbeats(st, &username, 1, now, &result);

	return r < 0 ? r : result;
}

int store_heartbeats(struct store *st, const char *const *users, size_t n, int64_t now, int *result)
{
	int r;

	enter(st);
	r = st->ops->heartbeats(st->b, users, n, now, result);
	leave(st);
	return r;
}

int store_search_exact(struct store *st, const char *name, int64_t alive_since,
		       store_hit_cb cb, void *ctx)
{
	struct view *v = NULL;
	int r;

	enter(st);
	r = st->ops->view(st->b, &v);
	leave(st);
	/* The view has its own lock. */
	return r == 0 ? view_search_exact(v, name, alive_since, cb, ctx) : r;
}

int store_search_substring(struct store *st, const char *text, int64_t alive_since,
			   int64_t limit, int64_t offset, int64_t *total, bool *exact,
			   store_hit_cb cb, void *ctx)
{
	struct view *v = NULL;
	int r;

	enter(st);
	r = st->ops->view(st->b, &v);
	leave(st);
	return r == 0 ? view_search_substring(v, text, alive_since, limit, offset, total, exact, cb, ctx) : r;
}

int store_peers_online(struct store *st, int64_t alive_since, store_name_cb cb, void *ctx)
{
	int r;

	enter(st);
	r = st->ops->peers_online(st->b, alive_since, cb, ctx);
	leave(st);
	return r;
}

int store_ticket_create(struct store *st, const char *ticket_hash, const char *username,
			const char *peer, const char *file, int64_t expires_at)
{
	int r;

	enter(st);
	r = st->ops->ticket_create(st->b, ticket_hash, username, peer, file, expires_at);
	leave(st);
	return r;
}

int store_ticket_verify(struct store *st, const char *ticket_hash, const char *peer,
			int64_t now, char *username, char *file)
{
	int r;

	enter(st);
	r = st->ops->ticket_verify(st->b, ticket_hash, peer, now, username, file);
	leave(st);
	return r;
}

int store_sweep(struct store *st, int64_t now)
{
	int r;

	enter(st);
	r = st->ops->sweep(st->b, now);
	leave(st);
	return r;
}

int store_counts(struct store *st, int64_t alive_since, struct store_counts *out)
{
	int r;

	enter(st);
	r = st->ops->counts(st->b, alive_since, out);
	leave(st);
	return r;
}

int store_ping(struct store *st)
{
	/* Never waits for the lock (store_ops.ping). */
	return st->ops->ping(st->b);
}

int store_replicate(struct store *st, double max_staleness)
{
	return st->ops->replicate ? st->ops->replicate(st->b, max_staleness) : 0;
}

void store_replica_status(struct store *st, struct store_replica *out)
{
	memset(out, 0, sizeof(*out));
	if (st->ops->replica_status)
		st->ops->replica_status(st->b, out);
}
