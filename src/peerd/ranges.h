/* SPDX-License-Identifier: MIT */
/* ranges.h — which ranges (blocks) of a download are done, being fetched,
 * or still to fetch, and which sources failed which range. Not locked: the
 * download holds its own lock around every call. */
#ifndef P2P_PEERD_RANGES_H
#define P2P_PEERD_RANGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum range_state { RANGE_TODO, RANGE_ACTIVE, RANGE_DONE };

struct ranges {
	uint64_t size, block_size;
	size_t n, done;
	unsigned char *state;   /* enum range_state per range */
	uint32_t *failed;       /* per range: bit s set when source s delivered it wrong */
};

/* size bytes in ranges of block_size (> 0). 0 or -ENOMEM. */
int ranges_init(struct ranges *r, uint64_t size, uint64_t block_size);
void ranges_free(struct ranges *r);
/* Offset and length of range i. */
void ranges_span(const struct ranges *r, size_t i, uint64_t *offset, uint64_t *length);
/* Claim the lowest range still to fetch that source (0..31) has not failed
 * (lowest first, so the whole-file hash can follow close behind); marks it
 * active. Returns its index, or -1 when there is none for this source. */
long ranges_take(struct ranges *r, unsigned source);
/* Range i (active) arrived and verified (ok), or not (it goes back to be
 * fetched, never again from source). */
void ranges_finish(struct ranges *r, size_t i, bool ok, unsigned source);
/* Mark range i done (verified on disk at resume). */
void ranges_mark_done(struct ranges *r, size_t i);
/* No range is active, and none remains that some source in `alive` (a
 * bitmask) could still deliver. */
bool ranges_stuck(const struct ranges *r, uint32_t alive);

#endif
