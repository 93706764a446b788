/* SPDX-License-Identifier: MIT */
/* store.h — the directory's storage, behind one narrow interface.
 *
 * store.c picks a backend by the database name and passes each call on:
 * store_sqlite.c keeps the directory in an SQLite file, store_pg.c on a
 * PostgreSQL server that several p2p-dird replicas share (its functions may
 * be called from several threads at once). Every function returns
 * 0 or a negative errno: -ENOENT (no such row), -EEXIST (unique name taken),
 * -EIO (the database failed; the engine's message has been logged),
 * -EAGAIN (the database cannot be reached, or this replica's view of it is
 * older than its max_staleness: try again later; the API answers 503).
 * A function that returns 0 after a write has committed it durably.
 *
 * Times are Unix seconds. Secrets (session tokens, tickets) are passed and
 * stored only as their SHA-256 in hex (64 characters).
 */
#ifndef P2P_DIRD_STORE_H
#define P2P_DIRD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "validate.h"

struct store;

struct store_file {
	const char *name;
	int64_t size;        /* -1: unknown (seed's list-of-names form) */
	const char *sha256;  /* NULL or "": unknown */
};

struct store_hit {
	const char *peer;
	const char *ip;
	int port;
	const char *folder;
	const char *name;
	int64_t size;        /* -1 when unknown */
	const char *sha256;  /* "" when unknown */
};

struct store_counts {
	int64_t users, sessions, peers_online, files_online;
};

typedef int (*store_hit_cb)(const struct store_hit *hit, void *ctx);
typedef int (*store_name_cb)(const char *name, int64_t a, int64_t b, void *ctx);

/* Open (creating if needed) and migrate the database: a "postgresql://" or
 * "postgres://" URI (libpq's form) selects PostgreSQL, anything else names
 * an SQLite file. */
int store_open(const char *database, struct store **out);
/* The same, keeping up to connections database connections so that callers
 * on that many threads are served at once (PostgreSQL; SQLite ignores it). */
int store_open_pool(const char *database, unsigned connections, struct store **out);
/* Whether database names a PostgreSQL server rather than an SQLite file. */
bool store_is_postgresql(const char *database);
/* database as it may be logged: a password in a URI shows as "***". */
void store_describe(const char *database, char *buf, size_t len);
void store_close(struct store *st);
/* Whether calls wait on a database server (PostgreSQL) rather than a local
 * file that answers in microseconds (SQLite). */
bool store_remote(const struct store *st);

/* A replica's state (PostgreSQL with store_replicate(); see replica.h). */
struct store_replica {
	bool replicated;            /* false: no change stream (SQLite, CLI) */
	bool connected;             /* the follower's connection is up */
	bool fresh;                 /* staleness <= max_staleness */
	double staleness;           /* s since the view was last known current */
	double max_staleness;
	int64_t seq;                /* last change applied */
	int64_t seq_seen;           /* newest change the database had */
	uint64_t applied, reloads;  /* changes applied, full loads */
	uint64_t follower_queries;  /* statements the follower sent */
	uint64_t queries;           /* statements sent for requests */
	uint64_t session_hits, session_misses;
	size_t names;               /* files in the view */
	size_t index_bytes, view_bytes;
};

/* Answer searches, online counts, sessions and tickets from an in-memory
 * view that follows the database's change stream, trusted for at most
 * max_staleness seconds (PostgreSQL: loads the view and starts its
 * follower on the first call, later calls change the bound; SQLite answers
 * searches from memory anyway and ignores it). 0 or a negative errno. */
int store_replicate(struct store *st, double max_staleness);
void store_replica_status(struct store *st, struct store_replica *out);


/* For a caller that must not wait (the event loop): take the lock that
 * serialises calls into a backend that is not thread-safe, or say it is
 * taken (false). While held, this thread's calls go straight in. A
 * thread-safe backend has no such lock: always true. */
bool store_try_hold(struct store *st);
void store_hold(struct store *st);
void store_release(struct store *st);

/* Users. hash is a crypt(5) string. A name is stored as given and found in
 * any ASCII case; creating one that differs from another only in case is
 * -EEXIST. */
int store_user_create(struct store *st, const char *username, const char *hash, int64_t now);
int store_user_hash(struct store *st, const char *username, char **hash_out);
int store_user_delete(struct store *st, const char *username);
/* cb(name, created, 0) for every user, sorted by name. */
int store_user_list(struct store *st, store_name_cb cb, void *ctx);

/* Sessions. */
int store_session_create(struct store *st, const char *username, const char *token_hash,
			 int64_t expires_at);
/* Finds an unexpired session; fills username (USERNAME_MAX + 1 bytes). */
int store_session_lookup(struct store *st, const char *token_hash, int64_t now,
			 char *username, int64_t *expires_at);
/* The same from a cache in memory, never waiting (callable on the event
 * loop): 0, or -EAGAIN when the answer would take a query or a wait. */
int store_session_cached(struct store *st, const char *token_hash, int64_t now, char *username);
/* Ends the session and takes the user's peer offline at once. */
int store_session_delete(struct store *st, const char *token_hash);

/* Replace the user's peer record and whole file list; marks it online. */
int store_index(struct store *st, const char *username, const char *ip, int port,
		const char *folder, const struct store_file *files, size_t nfiles, int64_t now);
/* -ENOENT if the user has not indexed yet. */
int store_heartbeat(struct store *st, const char *username, int64_t now);
/* The heartbeats of n users at once (one statement and one commit on
 * PostgreSQL; a user named twice is written once): 0 with result[i] 0, or
 * -ENOENT for a user who has not indexed yet; or a negative errno for all. */
int store_heartbeats(struct store *st, const char *const *users, size_t n, int64_t now, int *result);

/* Search among peers online and seen at or after alive_since. File names
 * compare in Unicode NFC (nfc.h), user names without ASCII case; names are
 * returned as they were stored. */
int store_search_exact(struct store *st, const char *name, int64_t alive_since,
		       store_hit_cb cb, void *ctx);
/* Case-insensitive (ASCII letters, after NFC) substring, matches in
 * indexing order.
 * total gets the number of matches ignoring limit/offset, counted up to
 * max(STORE_TOTAL_CAP, offset + limit); *exact is false when there are
 * more than that. */
#define STORE_TOTAL_CAP 1000
int store_search_substring(struct store *st, const char *text, int64_t alive_since,
			   int64_t limit, int64_t offset, int64_t *total, bool *exact,
			   store_hit_cb cb, void *ctx);
/* cb(peer, last_seen, nfiles) for every online peer seen since alive_since. */
int store_peers_online(struct store *st, int64_t alive_since, store_name_cb cb, void *ctx);

/* Tickets: permission for username to read file from peer. -ENOENT if the
 * peer is unknown. */
int store_ticket_create(struct store *st, const char *ticket_hash, const char *username,
			const char *peer, const char *file, int64_t expires_at);
/* Succeeds only if the ticket is unexpired and names peer; fills username
 * (USERNAME_MAX + 1) and file (FILENAME_MAX_BYTES + 1). */
int store_ticket_verify(struct store *st, const char *ticket_hash, const char *peer,
			int64_t now, char *username, char *file);

/* Delete expired sessions and tickets. */
int store_sweep(struct store *st, int64_t now);
int store_counts(struct store *st, int64_t alive_since, struct store_counts *out);
/* A cheap query proving the database answers; never waits for the lock of
 * store_try_hold (a long write in progress does not delay it). */
int store_ping(struct store *st);

#endif
