/* SPDX-License-Identifier: MIT */
/* view.h — the directory's searchable view, one layer above the storage
 * backends: peers (user name, address, last_seen, online), their files
 * (name, size, sha256) and a name index over the files (nameindex.h).
 *
 * Both backends feed it through the same calls, after a change has
 * committed: store_sqlite.c in-process, store_pg.c through the follower of
 * its change stream (replica.c). store.c answers every search and the
 * online counts from it, without a query. A (re)load builds a new view
 * aside and view_swap() puts it in place at once: a reader sees the old
 * view or the new one, never a half-built or empty one.
 *
 * A peer's files are replaced as a whole (re-index) or dropped with it; its
 * liveness (online, last_seen) changes alone. A peer counts in searches
 * when online and last_seen >= the caller's alive_since.
 *
 * Thread-safe: a read-write lock inside; writers block readers only while
 * they change the index in memory (no I/O under it).
 */
#ifndef P2P_DIRD_VIEW_H
#define P2P_DIRD_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct view;

struct view_peer {
	const char *user, *ip, *folder;
	int port;
	int64_t last_seen;
	bool online;
};

struct view *view_new(void);
void view_free(struct view *v);

/* Puts peer id (a user id, 1..2^26) with exactly these files in the view,
 * replacing what it had. 0, -ERANGE (id), -EINVAL (a name the index
 * refuses) or -ENOMEM; on failure the view may hold the peer with part of
 * its files: reload it. */
int view_put_peer(struct view *v, int64_t id, const struct view_peer *p,
		  const struct store_file *files, size_t nfiles);
/* Appends one file to peer id (a load, in file order); -ENOENT without
 * such a peer. */
int view_add_file(struct view *v, int64_t id, const char *name, int64_t size, const char *sha256);
/* Liveness: last_seen only moves forward (changes may arrive after a
 * reread that already had a later one). */
void view_peer_state(struct view *v, int64_t id, int64_t last_seen, bool online);
void view_drop_peer(struct view *v, int64_t id);
/* Drops every peer for which keep(id, ctx) is false. */
void view_retain(struct view *v, bool (*keep)(int64_t id, void *ctx), void *ctx);
/* live takes fresh's content in one step; fresh is freed. */
void view_swap(struct view *live, struct view *fresh);

/* Searches among live peers, as store.h's store_search_exact and
 * store_search_substring say (names compared in NFC). */
int view_search_exact(struct view *v, const char *name, int64_t alive_since, store_hit_cb cb, void *ctx);
int view_search_substring(struct view *v, const char *text, int64_t alive_since, int64_t limit,
			  int64_t offset, int64_t *total, bool *exact, store_hit_cb cb, void *ctx);
/* Live peers and their files. */
void view_counts(struct view *v, int64_t alive_since, int64_t *peers, int64_t *files);
/* Files held; heap bytes of the name index and of the rest. */
void view_sizes(struct view *v, size_t *files, size_t *index_bytes, size_t *view_bytes);

#endif
