/* SPDX-License-Identifier: MIT */
/* nameindex.h — an in-memory trigram index of shared file names for
 * case-insensitive substring search.
 *
 * Each file is a slot (peer, database row id, name folded to lower case).
 * Every distinct byte trigram of a folded name has a posting list of the
 * slots holding it, kept as delta-encoded varints (about one byte per
 * entry). A query walks the shortest posting list among its trigrams and
 * confirms each candidate with strstr(), so the answer is exact. A peer's
 * files are replaced as a whole (re-index) or dropped; the dead slots are
 * reclaimed by rebuilding once they outnumber the live ones.
 *
 * A hash of the whole folded names answers exact lookups the same way.
 *
 * Names are compared in Unicode NFC (nfc.h): an NFD spelling finds the NFC
 * one and the reverse. Case folding covers ASCII letters only (applied after
 * NFC); other characters must match exactly.
 * Not thread-safe: the caller serialises access.
 */
#ifndef P2P_DIRD_NAMEINDEX_H
#define P2P_DIRD_NAMEINDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nameindex;

/* Decides whether a peer's files count (online and alive). */
typedef bool (*nameindex_alive_fn)(uint32_t peer, void *ctx);

struct nameindex_query {
	const char *text;          /* UTF-8, 1..255 bytes */
	int64_t offset, limit;     /* the page wanted */
	int64_t cap;               /* stop counting after this many matches */
	nameindex_alive_fn alive;
	void *alive_ctx;
};

struct nameindex_result {
	int64_t *rowids;           /* caller's array of at least limit entries */
	size_t n;                  /* rows of the page found */
	int64_t total;             /* matches counted, at most max(cap, offset + limit) */
	bool exact;                /* false: there are more than total */
};

struct nameindex *nameindex_new(void);
void nameindex_free(struct nameindex *ni);

/* Adds one file; 0, -EINVAL (not 1..255 bytes of UTF-8) or -ENOMEM (the
 * index is then unchanged). */
int nameindex_add(struct nameindex *ni, uint32_t peer, int64_t rowid, const char *name);
/* Forgets every file of peer. */
void nameindex_drop_peer(struct nameindex *ni, uint32_t peer);
/* Live files of peer. */
size_t nameindex_peer_files(const struct nameindex *ni, uint32_t peer);
size_t nameindex_size(const struct nameindex *ni);
/* Heap bytes held, for the benchmark and metrics. */
size_t nameindex_memory(const struct nameindex *ni);

/* Matches in insertion order; 0 or -ENOMEM. */
int nameindex_search(struct nameindex *ni, const struct nameindex_query *q,
		     struct nameindex_result *res);

/* Row ids of the live files of alive peers whose name equals name but for
 * ASCII case and normalisation, in insertion order, into a malloc'ed *rowids (caller frees);
 * 0 or -ENOMEM. */
int nameindex_exact(struct nameindex *ni, const char *name, nameindex_alive_fn alive,
		    void *alive_ctx, int64_t **rowids, size_t *n);

#endif
