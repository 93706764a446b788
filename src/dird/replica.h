/* SPDX-License-Identifier: MIT */
/* replica.h — follows a PostgreSQL directory's change stream into a
 * p2p-dird replica's view (view.h), and caches sessions and tickets.
 *
 * Every write that changes what a search or a session check answers
 * (index, heartbeat, logout, user deletion) appends a row to table
 * `changes` in its own transaction, numbered by a one-row counter that the
 * transaction updates last (so numbers follow commit order, without gaps),
 * and NOTIFYs channel p2p_changes. A follower thread per replica, on its
 * own libpq connection, LISTENs there, reads the new rows in order and
 * applies them to the view (view.h: peers, their files, the name index)
 * through the calls store_sqlite.c makes in-process. It reloads the whole
 * view at start, after a gap (rows pruned before it read them) and when the
 * database was replaced, building the new view aside and swapping it in.
 * Searches and the online counts are then answered from the view without a
 * query (store.c); sessions and tickets are checked through a cache that
 * the stream invalidates (logout, user deletion).
 *
 * Staleness: the view is known current as of the start of the follower's
 * last complete read (it reads at least every poll interval, even when
 * nothing is notified). Past max_staleness seconds the view is not used
 * (replica_fresh() is false): searches fail with -EAGAIN (the API answers
 * 503) and sessions go to the database.
 *
 * All functions are thread-safe.
 */
#ifndef P2P_DIRD_REPLICA_H
#define P2P_DIRD_REPLICA_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

struct replica;

/* Loads the view over a connection of its own (conninfo: libpq's) and
 * starts the follower; 0 or a negative errno (logged). */
int replica_start(const char *conninfo, double max_staleness, struct replica **out);
void replica_stop(struct replica *r);
void replica_set_max_staleness(struct replica *r, double seconds);
double replica_max_staleness(struct replica *r);
/* Waits (at most ms) until change seq is in the view: a write answered by
 * this replica is then seen by the next request to it. */
void replica_wait(struct replica *r, int64_t seq, int ms);

/* The view the follower keeps (the same one for the replica's life), and
 * whether it is within max_staleness. */
struct view *replica_view(struct replica *r);
bool replica_fresh(struct replica *r);

/* The caches. get: 0 and the entry, -ENOENT when not cached (or the view
 * is too stale to trust); *gen then tells put() whether an invalidation
 * came in between (it then caches nothing). */
int replica_session_get(struct replica *r, const char *token_hash, int64_t now, char *username,
			int64_t *expires_at, uint64_t *gen);
/* The same from the cache alone, without waiting (for the event loop):
 * 0, or -EAGAIN when not cached or a notification is not applied yet. */
int replica_session_peek(struct replica *r, const char *token_hash, int64_t now, char *username);
void replica_session_put(struct replica *r, const char *token_hash, int64_t user_id, const char *username,
			 int64_t expires_at, uint64_t gen);
int replica_ticket_get(struct replica *r, const char *ticket_hash, const char *peer, int64_t now,
		       char *username, char *file, uint64_t *gen);
void replica_ticket_put(struct replica *r, const char *ticket_hash, int64_t user_id, int64_t peer_id,
			const char *username, const char *peer, const char *file, int64_t expires_at,
			uint64_t gen);

void replica_status(struct replica *r, struct store_replica *out);

#endif
