/* SPDX-License-Identifier: MIT */
/* ranges.c — the download's range table (ranges.h). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "ranges.h"

int ranges_init(struct ranges *r, uint64_t size, uint64_t block_size)
{
	r->size = size;
	r->block_size = block_size ? block_size : 1;
	r->n = (size_t)((size + r->block_size - 1) / r->block_size);
	r->done = 0;
	r->state = calloc(r->n ? r->n : 1, 1);
	r->failed = calloc(r->n ? r->n : 1, sizeof(*r->failed));
	if (!r->state || !r->failed) {
		ranges_free(r);
		return -ENOMEM;
	}
	return 0;
}

void ranges_free(struct ranges *r)
{
	free(r->state);
	free(r->failed);
	r->state = NULL;
	r->failed = NULL;
	r->n = r->done = 0;
}

void ranges_span(const struct ranges *r, size_t i, uint64_t *offset, uint64_t *length)
{
	*offset = (uint64_t)i * r->block_size;
	*length = r->size - *offset < r->block_size ? r->size - *offset : r->block_size;
}

long ranges_take(struct ranges *r, unsigned source)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->state[i] == RANGE_TODO && !(r->failed[i] & (1u << source))) {
			r->state[i] = RANGE_ACTIVE;
			return (long)i;
		}
	return -1;
}

void ranges_finish(struct ranges *r, size_t i, bool ok, unsigned source)
{
	if (i >= r->n || r->state[i] != RANGE_ACTIVE)
		return;
	if (ok) {
		r->state[i] = RANGE_DONE;
		r->done++;
	} else {
		r->state[i] = RANGE_TODO;
		r->failed[i] |= 1u << source;
	}
}

void ranges_mark_done(struct ranges *r, size_t i)
{
	if (i < r->n && r->state[i] != RANGE_DONE) {
		r->state[i] = RANGE_DONE;
		r->done++;
	}
}

bool ranges_stuck(const struct ranges *r, uint32_t alive)
{
	for (size_t i = 0; i < r->n; i++) {
		if (r->state[i] == RANGE_ACTIVE)
			return false;
		if (r->state[i] == RANGE_TODO && (alive & ~r->failed[i]))
			return false;
	}
	return r->done < r->n;
}
