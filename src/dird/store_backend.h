/* SPDX-License-Identifier: MIT */
/* store_backend.h — what a storage backend gives store.c: one table of
 * functions with the meaning store.h documents. Each backend defines its
 * own struct store_backend; store.c only passes the pointer through. */
#ifndef P2P_DIRD_STORE_BACKEND_H
#define P2P_DIRD_STORE_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

struct store_backend;
struct view;

struct store_ops {
	const char *name;
	/* May its functions run on several threads at once? store.c
	 * serialises the calls into a backend that says no. */
	bool thread_safe;
	/* Do its calls wait on another machine or process (a server)? */
	bool remote;
	/* connections: how many database connections to keep at most (a
	 * backend that has a single one ignores it). */
	int (*open)(const char *database, unsigned connections, struct store_backend **out);
	void (*close)(struct store_backend *b);
	int (*user_create)(struct store_backend *b, const char *username, const char *hash, int64_t now);
	int (*user_hash)(struct store_backend *b, const char *username, char **hash_out);
	int (*user_delete)(struct store_backend *b, const char *username);
	int (*user_list)(struct store_backend *b, store_name_cb cb, void *ctx);
	int (*session_create)(struct store_backend *b, const char *username, const char *token_hash,
			      int64_t expires_at);
	int (*session_lookup)(struct store_backend *b, const char *token_hash, int64_t now,
			      char *username, int64_t *expires_at);
	/* NULL, or answers from a cache without waiting (store.h). */
	int (*session_cached)(struct store_backend *b, const char *token_hash, int64_t now, char *username);
	int (*session_delete)(struct store_backend *b, const char *token_hash);
	int (*index)(struct store_backend *b, const char *username, const char *ip, int port,
		     const char *folder, const struct store_file *files, size_t nfiles, int64_t now);
	int (*heartbeats)(struct store_backend *b, const char *const *users, size_t n, int64_t now,
			  int *result);
	/* The view (view.h) that answers searches: 0 and *out, or -EAGAIN
	 * when it is too stale to use. */
	int (*view)(struct store_backend *b, struct view **out);
	int (*peers_online)(struct store_backend *b, int64_t alive_since, store_name_cb cb, void *ctx);
	int (*ticket_create)(struct store_backend *b, const char *ticket_hash, const char *username,
			     const char *peer, const char *file, int64_t expires_at);
	int (*ticket_verify)(struct store_backend *b, const char *ticket_hash, const char *peer,
			     int64_t now, char *username, char *file);
	int (*sweep)(struct store_backend *b, int64_t now);
	int (*counts)(struct store_backend *b, int64_t alive_since, struct store_counts *out);
	/* Called without store.c's lock, from any thread: a backend that is
	 * not thread-safe serialises it itself, apart from its other calls. */
	int (*ping)(struct store_backend *b);
	/* NULL when the backend has no change stream to follow. */
	int (*replicate)(struct store_backend *b, double max_staleness);
	void (*replica_status)(struct store_backend *b, struct store_replica *out);
};

/* PostgreSQL advisory lock keys ("p2p" and a number), one per job that must
 * not run on two replicas at once (store_pg.c, migrate.c). */
#define STORE_PG_LOCK_MIGRATE INT64_C(0x7032700000000001)
#define STORE_PG_LOCK_SWEEP INT64_C(0x7032700000000002)

extern const struct store_ops store_sqlite_ops;
#ifdef HAVE_POSTGRESQL
extern const struct store_ops store_pg_ops;
#endif

#endif
