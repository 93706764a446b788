/* SPDX-License-Identifier: MIT */
/* nameindex.c — in-memory trigram index of file names (see nameindex.h). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nameindex.h"
#include "nfc.h"

#define DEAD UINT32_MAX
#define NAME_MAX_BYTES 255
/* A key: a name in NFC with ASCII letters folded. */
#define KEY_MAX_BYTES NFC_MAX_BYTES(NAME_MAX_BYTES)
/* Peer ids index an array; the directory's user ids are small and dense. */
#define PEER_MAX (1u << 26)
/* Rebuild once dead slots outnumber live ones and there are this many. */
#ifndef NAMEINDEX_COMPACT_MIN
#define NAMEINDEX_COMPACT_MIN 65536
#endif

/* Slots holding one trigram, ascending, as varint deltas of slot + 1. */
struct postings {
	uint8_t *buf;
	uint32_t len, cap;
	uint32_t last;          /* slot + 1 of the last entry; 0: none */
	uint32_t n;
};

struct peer_slots {
	uint32_t *v;
	uint32_t n, cap;
};

struct nameindex {
	uint32_t *slot_peer;    /* DEAD once forgotten */
	int64_t *slot_rowid;
	uint32_t *slot_name;    /* offset of the folded name in arena */
	uint32_t *slot_next;    /* next slot + 1 with the same name hash; 0: end */
	size_t nslots, slot_cap, dead;

	char *arena;
	size_t arena_len, arena_cap;

	/* Open addressing: trigram key (never 0) -> index into lists. */
	uint32_t *keys, *vals;
	size_t hcap, hn;
	struct postings *lists;
	size_t nlists, lists_cap;

	struct peer_slots *peers;
	size_t npeers;

	/* Whole folded names: bucket -> first slot + 1 (0: empty). */
	uint32_t *buckets;
	size_t nbuckets;
};

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
	size_t n = *cap ? *cap : 16;
	void *q;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	q = realloc(*p, n * size);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

static char fold(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* The key of a name (1..255 bytes of UTF-8) into key; its length, or
 * -EINVAL, -ENOMEM. NFC first: folding first would let "A" + U+030A
 * compose to U+00E5 while the name "\u00C5" stays U+00C5. */
static long make_key(const char *name, char key[KEY_MAX_BYTES + 1])
{
	size_t len = strlen(name);
	long n;

	if (len == 0 || len > NAME_MAX_BYTES)
		return -EINVAL;
	n = nfc(name, key, KEY_MAX_BYTES + 1);
	if (n < 0)
		return n == -ENOMEM ? -ENOMEM : -EINVAL;
	for (long i = 0; i < n; i++)
		key[i] = fold(key[i]);
	return n;
}

/* FNV-1a of a folded name. */
static uint32_t name_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* Keeps at least one bucket per slot, rechaining every slot on growth. */
static int buckets_reserve(struct nameindex *ni, size_t nslots)
{
	size_t n = ni->nbuckets ? ni->nbuckets : 1024;
	uint32_t *b;

	if (nslots <= ni->nbuckets)
		return 0;
	while (n < nslots)
		n *= 2;
	b = calloc(n, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (size_t s = 0; s < ni->nslots; s++) {
		uint32_t h = name_hash(ni->arena + ni->slot_name[s]) & (uint32_t)(n - 1);

		ni->slot_next[s] = b[h];
		b[h] = (uint32_t)s + 1;
	}
	free(ni->buckets);
	ni->buckets = b;
	ni->nbuckets = n;
	return 0;
}

static uint32_t trigram(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;

	return ((uint32_t)u[0] << 16 | (uint32_t)u[1] << 8 | u[2]) + 1;
}

static size_t hash_slot(const struct nameindex *ni, uint32_t key)
{
	return (size_t)((key * 2654435761u) & (uint32_t)(ni->hcap - 1));
}

static struct postings *lookup(const struct nameindex *ni, uint32_t key)
{
	if (!ni->hcap)
		return NULL;
	for (size_t i = hash_slot(ni, key);; i = (i + 1) & (ni->hcap - 1)) {
		if (ni->keys[i] == key)
			return &ni->lists[ni->vals[i]];
		if (ni->keys[i] == 0)
			return NULL;
	}
}

static int hash_grow(struct nameindex *ni)
{
	size_t ncap = ni->hcap ? ni->hcap * 2 : 1024;
	uint32_t *keys = calloc(ncap, sizeof(*keys)), *vals = malloc(ncap * sizeof(*vals));

	if (!keys || !vals) {
		free(keys);
		free(vals);
		return -ENOMEM;
	}
	for (size_t i = 0; i < ni->hcap; i++) {
		size_t j;

		if (!ni->keys[i])
			continue;
		for (j = (size_t)((ni->keys[i] * 2654435761u) & (uint32_t)(ncap - 1)); keys[j];
		     j = (j + 1) & (ncap - 1))
			;
		keys[j] = ni->keys[i];
		vals[j] = ni->vals[i];
	}
	free(ni->keys);
	free(ni->vals);
	ni->keys = keys;
	ni->vals = vals;
	ni->hcap = ncap;
	return 0;
}

static struct postings *lookup_or_add(struct nameindex *ni, uint32_t key)
{
	struct postings *p = lookup(ni, key);
	size_t i;

	if (p)
		return p;
	if ((ni->hn + 1) * 2 > ni->hcap && hash_grow(ni) < 0)
		return NULL;
	if (grow((void **)&ni->lists, &ni->lists_cap, ni->nlists + 1, sizeof(*ni->lists)) < 0)
		return NULL;
	for (i = hash_slot(ni, key); ni->keys[i]; i = (i + 1) & (ni->hcap - 1))
		;
	ni->keys[i] = key;
	ni->vals[i] = (uint32_t)ni->nlists;
	ni->hn++;
	p = &ni->lists[ni->nlists++];
	memset(p, 0, sizeof(*p));
	return p;
}

static int postings_append(struct postings *p, uint32_t slot)
{
	uint32_t v = slot + 1, d;

	if (p->last == v)
		return 0;       /* the trigram occurs twice in this name */
	if (p->cap - p->len < 5) {
		uint32_t ncap = p->cap ? p->cap * 2 : 8;
		uint8_t *b = realloc(p->buf, ncap);

		if (!b)
			return -ENOMEM;
		p->buf = b;
		p->cap = ncap;
	}
	for (d = v - p->last; d >= 0x80; d >>= 7)
		p->buf[p->len++] = (uint8_t)(d | 0x80);
	p->buf[p->len++] = (uint8_t)d;
	p->last = v;
	p->n++;
	return 0;
}

struct nameindex *nameindex_new(void)
{
	return calloc(1, sizeof(struct nameindex));
}

static void release(struct nameindex *ni)
{
	for (size_t i = 0; i < ni->nlists; i++)
		free(ni->lists[i].buf);
	for (size_t i = 0; i < ni->npeers; i++)
		free(ni->peers[i].v);
	free(ni->lists);
	free(ni->peers);
	free(ni->keys);
	free(ni->vals);
	free(ni->arena);
	free(ni->slot_peer);
	free(ni->slot_rowid);
	free(ni->slot_name);
	free(ni->slot_next);
	free(ni->buckets);
}

void nameindex_free(struct nameindex *ni)
{
	if (!ni)
		return;
	release(ni);
	free(ni);
}

static int peer_add_slot(struct nameindex *ni, uint32_t peer, uint32_t slot)
{
	struct peer_slots *ps;

	if (peer >= ni->npeers) {
		size_t n = ni->npeers ? ni->npeers : 64;
		struct peer_slots *v;

		while (n <= peer)
			n *= 2;
		v = realloc(ni->peers, n * sizeof(*v));
		if (!v)
			return -ENOMEM;
		memset(v + ni->npeers, 0, (n - ni->npeers) * sizeof(*v));
		ni->peers = v;
		ni->npeers = n;
	}
	ps = &ni->peers[peer];
	if (ps->n == ps->cap) {
		uint32_t ncap = ps->cap ? ps->cap * 2 : 16;
		uint32_t *v = realloc(ps->v, ncap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		ps->v = v;
		ps->cap = ncap;
	}
	ps->v[ps->n++] = slot;
	return 0;
}

/* Adds a slot for key (len bytes, from make_key). */
static int add_key(struct nameindex *ni, uint32_t peer, int64_t rowid, const char *key, size_t len)
{
	size_t cap;
	uint32_t slot;
	char *folded;

	if (peer >= PEER_MAX || ni->nslots >= DEAD - 1)
		return -EINVAL;
	cap = ni->slot_cap;
	if (grow((void **)&ni->slot_peer, &cap, ni->nslots + 1, sizeof(uint32_t)) < 0)
		return -ENOMEM;
	cap = ni->slot_cap;
	if (grow((void **)&ni->slot_rowid, &cap, ni->nslots + 1, sizeof(int64_t)) < 0)
		return -ENOMEM;
	cap = ni->slot_cap;
	if (grow((void **)&ni->slot_name, &cap, ni->nslots + 1, sizeof(uint32_t)) < 0)
		return -ENOMEM;
	cap = ni->slot_cap;
	if (grow((void **)&ni->slot_next, &cap, ni->nslots + 1, sizeof(uint32_t)) < 0)
		return -ENOMEM;
	ni->slot_cap = cap;
	if (buckets_reserve(ni, ni->nslots + 1) < 0)
		return -ENOMEM;
	if (ni->arena_len + len + 1 > UINT32_MAX ||
	    grow((void **)&ni->arena, &ni->arena_cap, ni->arena_len + len + 1, 1) < 0)
		return -ENOMEM;

	slot = (uint32_t)ni->nslots;
	folded = ni->arena + ni->arena_len;
	memcpy(folded, key, len + 1);
	ni->slot_name[slot] = (uint32_t)ni->arena_len;
	ni->slot_rowid[slot] = rowid;
	ni->slot_peer[slot] = DEAD;
	ni->arena_len += len + 1;
	ni->nslots++;
	ni->dead++;
	{
		uint32_t h = name_hash(folded) & (uint32_t)(ni->nbuckets - 1);

		ni->slot_next[slot] = ni->buckets[h];
		ni->buckets[h] = slot + 1;
	}

	/* The slot stays dead (never matched) until it is complete. */
	for (size_t i = 0; i + 3 <= len; i++) {
		struct postings *p = lookup_or_add(ni, trigram(folded + i));

		if (!p || postings_append(p, slot) < 0)
			return -ENOMEM;
	}
	if (peer_add_slot(ni, peer, slot) < 0)
		return -ENOMEM;
	ni->slot_peer[slot] = peer;
	ni->dead--;
	return 0;
}

int nameindex_add(struct nameindex *ni, uint32_t peer, int64_t rowid, const char *name)
{
	char key[KEY_MAX_BYTES + 1];
	long len = make_key(name, key);

	return len < 0 ? (int)len : add_key(ni, peer, rowid, key, (size_t)len);
}

/* Renumbers the live slots into a fresh index; on failure the old stays. */
static void compact(struct nameindex *ni)
{
	struct nameindex fresh = { 0 };

	for (size_t s = 0; s < ni->nslots; s++) {
		if (ni->slot_peer[s] == DEAD)
			continue;
		const char *key = ni->arena + ni->slot_name[s];

		if (add_key(&fresh, ni->slot_peer[s], ni->slot_rowid[s], key, strlen(key)) < 0) {
			release(&fresh);
			return;
		}
	}
	release(ni);
	*ni = fresh;
}

void nameindex_drop_peer(struct nameindex *ni, uint32_t peer)
{
	struct peer_slots *ps;

	if (peer >= ni->npeers)
		return;
	ps = &ni->peers[peer];
	for (uint32_t i = 0; i < ps->n; i++)
		ni->slot_peer[ps->v[i]] = DEAD;
	ni->dead += ps->n;
	ps->n = 0;
	if (ni->dead >= NAMEINDEX_COMPACT_MIN && ni->dead > ni->nslots - ni->dead)
		compact(ni);
}

size_t nameindex_peer_files(const struct nameindex *ni, uint32_t peer)
{
	return peer < ni->npeers ? ni->peers[peer].n : 0;
}

size_t nameindex_size(const struct nameindex *ni)
{
	return ni->nslots - ni->dead;
}

size_t nameindex_memory(const struct nameindex *ni)
{
	size_t m = ni->slot_cap * (3 * sizeof(uint32_t) + sizeof(int64_t)) + ni->arena_cap +
		   ni->nbuckets * sizeof(uint32_t) +
		   ni->hcap * 2 * sizeof(uint32_t) + ni->lists_cap * sizeof(struct postings) +
		   ni->npeers * sizeof(struct peer_slots);

	for (size_t i = 0; i < ni->nlists; i++)
		m += ni->lists[i].cap;
	for (size_t i = 0; i < ni->npeers; i++)
		m += ni->peers[i].cap * sizeof(uint32_t);
	return m;
}

struct scan {
	const struct nameindex *ni;
	const struct nameindex_query *q;
	struct nameindex_result *res;
	const char *text;
	int64_t stop;           /* count this many, then look for one more */
};

/* Returns true when the scan can stop. */
static bool visit(struct scan *sc, uint32_t slot)
{
	const struct nameindex *ni = sc->ni;
	uint32_t peer = ni->slot_peer[slot];

	if (peer == DEAD || !sc->q->alive(peer, sc->q->alive_ctx) ||
	    !strstr(ni->arena + ni->slot_name[slot], sc->text))
		return false;
	if (sc->res->total == sc->stop) {
		sc->res->exact = false;
		return true;
	}
	sc->res->total++;
	if (sc->res->total > sc->q->offset && (int64_t)sc->res->n < sc->q->limit)
		sc->res->rowids[sc->res->n++] = ni->slot_rowid[slot];
	return false;
}

int nameindex_search(struct nameindex *ni, const struct nameindex_query *q,
		     struct nameindex_result *res)
{
	char text[KEY_MAX_BYTES + 1];
	long klen;
	size_t len;
	struct postings *best = NULL;
	struct scan sc = { .ni = ni, .q = q, .res = res, .text = text };

	res->n = 0;
	res->total = 0;
	res->exact = true;
	if (q->limit < 0 || q->offset < 0)
		return -EINVAL;
	klen = make_key(q->text, text);
	if (klen < 0)
		return (int)klen;
	len = (size_t)klen;
	sc.stop = q->offset + q->limit > q->cap ? q->offset + q->limit : q->cap;

	/* The rarest trigram of the query bounds the candidates. */
	for (size_t i = 0; i + 3 <= len; i++) {
		struct postings *p = lookup(ni, trigram(text + i));

		if (!p)
			return 0;
		if (!best || p->n < best->n)
			best = p;
	}
	if (!best) {
		for (uint32_t s = 0; s < ni->nslots; s++)
			if (visit(&sc, s))
				break;
		return 0;
	}
	for (uint32_t pos = 0, v = 0; pos < best->len;) {
		uint32_t d = 0;

		for (int shift = 0;; shift += 7) {
			uint8_t b = best->buf[pos++];

			d |= (uint32_t)(b & 0x7f) << shift;
			if (!(b & 0x80))
				break;
		}
		v += d;
		if (visit(&sc, v - 1))
			break;
	}
	return 0;
}

int nameindex_exact(struct nameindex *ni, const char *name, nameindex_alive_fn alive,
		    void *alive_ctx, int64_t **rowids, size_t *n)
{
	char folded[KEY_MAX_BYTES + 1];
	long klen = make_key(name, folded);
	size_t cap = 0, k = 0;
	int64_t *out = NULL;
	uint32_t *chain;

	*rowids = NULL;
	*n = 0;
	if (klen < 0)
		return (int)klen;
	if (!ni->nbuckets)
		return 0;
	chain = &ni->buckets[name_hash(folded) & (uint32_t)(ni->nbuckets - 1)];
	/* Chains run newest first; collect, then reverse into insertion order. */
	for (uint32_t s = *chain; s; s = ni->slot_next[s - 1]) {
		uint32_t slot = s - 1, peer = ni->slot_peer[slot];

		if (peer == DEAD || strcmp(ni->arena + ni->slot_name[slot], folded) != 0 ||
		    !alive(peer, alive_ctx))
			continue;
		if (grow((void **)&out, &cap, k + 1, sizeof(*out)) < 0) {
			free(out);
			return -ENOMEM;
		}
		out[k++] = ni->slot_rowid[slot];
	}
	for (size_t i = 0; i < k / 2; i++) {
		int64_t t = out[i];

		out[i] = out[k - 1 - i];
		out[k - 1 - i] = t;
	}
	*rowids = out;
	*n = k;
	return 0;
}
