/* SPDX-License-Identifier: MIT */
/* ptrmap.c — see ptrmap.h. */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "ptrmap.h"

static size_t home(const struct ptrmap *m, const void *key)
{
	/* Fibonacci hashing: heap pointers differ mostly in their middle
	 * bits, which the multiplication spreads to the top ones. */
	uint64_t h = (uint64_t)(uintptr_t)key * UINT64_C(0x9e3779b97f4a7c15);

	return (size_t)(h >> 32) & (m->cap - 1);
}

static size_t find(const struct ptrmap *m, const void *key)
{
	size_t i = home(m, key);

	while (m->slots[i].key && m->slots[i].key != key)
		i = (i + 1) & (m->cap - 1);
	return i;
}

static int grow(struct ptrmap *m)
{
	size_t cap = m->cap ? 2 * m->cap : 64;
	struct ptrmap old = *m;

	if (cap < m->cap)
		return -ENOMEM;
	m->slots = calloc(cap, sizeof(*m->slots));
	if (!m->slots) {
		*m = old;
		return -ENOMEM;
	}
	m->cap = cap;
	for (size_t i = 0; i < old.cap; i++)
		if (old.slots[i].key)
			m->slots[find(m, old.slots[i].key)] = old.slots[i];
	free(old.slots);
	return 0;
}

int ptrmap_put(struct ptrmap *m, const void *key, void *value)
{
	size_t i;

	if (!key)
		return -EINVAL;
	if (m->cap) {
		i = find(m, key);
		if (m->slots[i].key) {
			m->slots[i].value = value;
			return 0;
		}
	}
	if (2 * (m->n + 1) > m->cap && grow(m) < 0)
		return -ENOMEM;
	i = find(m, key);
	m->slots[i].key = key;
	m->slots[i].value = value;
	m->n++;
	return 0;
}

void *ptrmap_get(const struct ptrmap *m, const void *key)
{
	return m->cap && key ? m->slots[find(m, key)].value : NULL;
}

void *ptrmap_del(struct ptrmap *m, const void *key)
{
	size_t i, j, h;
	void *value;

	if (!m->cap || !key || !m->slots[i = find(m, key)].key)
		return NULL;
	value = m->slots[i].value;
	/* Backward shift: move up every later entry of the run whose home
	 * is not between the hole and its slot (cyclically). */
	for (j = (i + 1) & (m->cap - 1); m->slots[j].key; j = (j + 1) & (m->cap - 1)) {
		h = home(m, m->slots[j].key);
		if (((j - h) & (m->cap - 1)) >= ((j - i) & (m->cap - 1))) {
			m->slots[i] = m->slots[j];
			i = j;
		}
	}
	m->slots[i].key = NULL;
	m->slots[i].value = NULL;
	m->n--;
	return value;
}

void ptrmap_free(struct ptrmap *m)
{
	free(m->slots);
	m->slots = NULL;
	m->cap = m->n = 0;
}
