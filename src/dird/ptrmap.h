/* SPDX-License-Identifier: MIT */
/* ptrmap.h — a map from pointers to pointers in O(1): open addressing,
 * linear probing, deletion by backward shift (no tombstones), at most half
 * full. p2p-dird keys its connections by their libevent objects with it,
 * so that the work per request does not grow with the number of open
 * connections.
 *
 * A zeroed struct ptrmap is an empty map. Not thread-safe. */
#ifndef P2P_PTRMAP_H
#define P2P_PTRMAP_H

#include <stddef.h>

struct ptrmap_slot {
	const void *key; /* NULL: empty */
	void *value;
};

struct ptrmap {
	struct ptrmap_slot *slots;
	size_t cap; /* a power of two, or 0 */
	size_t n;
};

/* Adds or replaces key (not NULL). 0, or -ENOMEM (the map is unchanged). */
int ptrmap_put(struct ptrmap *m, const void *key, void *value);
/* The value, or NULL when key is absent. */
void *ptrmap_get(const struct ptrmap *m, const void *key);
/* Removes key; returns its value, or NULL when it was absent. */
void *ptrmap_del(struct ptrmap *m, const void *key);
void ptrmap_free(struct ptrmap *m);

#endif
