/* SPDX-License-Identifier: MIT */
/* view.c — the searchable view of the directory above both backends
 * (see view.h). */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "nameindex.h"
#include "nfc.h"
#include "validate.h"
#include "view.h"

#define PEER_ID_MAX (1 << 26)     /* nameindex's bound on peer ids */

struct vfile {
	uint32_t name;            /* offset in the peer's names */
	bool has_sha;
	uint8_t sha[SHA256_BYTES];
	int64_t size;
};

struct vpeer {
	char *user, *ip, *folder;
	int port;
	int64_t last_seen;
	bool online;
	char *names;
	size_t names_len, names_cap;
	struct vfile *files;
	uint32_t nfiles, files_cap;
};

/* What view_swap() exchanges whole. */
struct content {
	struct nameindex *ni;
	struct vpeer **peers;     /* by user id; NULL: none */
	size_t npeers;
	size_t nfiles;
	size_t bytes;             /* peers' own heap, roughly */
};

struct view {
	pthread_rwlock_t lock;
	struct content c;
};

static void peer_free(struct vpeer *p)
{
	if (!p)
		return;
	free(p->user);
	free(p->ip);
	free(p->folder);
	free(p->names);
	free(p->files);
	free(p);
}

static size_t peer_bytes(const struct vpeer *p)
{
	return sizeof(*p) + strlen(p->user) + strlen(p->ip) + strlen(p->folder) + 3 + p->names_cap +
	       p->files_cap * sizeof(struct vfile);
}

static void content_free(struct content *c)
{
	for (size_t i = 0; i < c->npeers; i++)
		peer_free(c->peers[i]);
	free(c->peers);
	nameindex_free(c->ni);
	memset(c, 0, sizeof(*c));
}

struct view *view_new(void)
{
	struct view *v = calloc(1, sizeof(*v));

	if (!v)
		return NULL;
	if (!(v->c.ni = nameindex_new())) {
		free(v);
		return NULL;
	}
	pthread_rwlock_init(&v->lock, NULL);
	return v;
}

void view_free(struct view *v)
{
	if (!v)
		return;
	content_free(&v->c);
	pthread_rwlock_destroy(&v->lock);
	free(v);
}

/* Appends a file to p (not to the name index). */
static int peer_add_file(struct vpeer *p, const char *name, int64_t size, const char *sha)
{
	size_t len = strlen(name) + 1;
	struct vfile *f;

	if (p->nfiles == p->files_cap) {
		uint32_t n = p->files_cap ? p->files_cap * 2 : 8;
		struct vfile *fv = realloc(p->files, n * sizeof(*fv));

		if (!fv)
			return -ENOMEM;
		p->files = fv;
		p->files_cap = n;
	}
	if (p->names_len + len > p->names_cap) {
		size_t n = p->names_cap ? p->names_cap : 256;
		char *s;

		while (n < p->names_len + len)
			n *= 2;
		if (n > UINT32_MAX || !(s = realloc(p->names, n)))
			return -ENOMEM;
		p->names = s;
		p->names_cap = n;
	}
	f = &p->files[p->nfiles++];
	memcpy(p->names + p->names_len, name, len);
	f->name = (uint32_t)p->names_len;
	p->names_len += len;
	f->size = size;
	/* Stored hashes are lowercase hex (valid_sha256_hex), or empty. */
	f->has_sha = sha && strlen(sha) == SHA256_HEX_LEN && crypto_unhex(sha, sizeof(f->sha), f->sha);
	return 0;
}

static struct vpeer *peer_new(const struct view_peer *vp)
{
	struct vpeer *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->user = strdup(vp->user);
	p->ip = strdup(vp->ip);
	p->folder = strdup(vp->folder ? vp->folder : "");
	p->port = vp->port;
	p->last_seen = vp->last_seen;
	p->online = vp->online;
	if (!p->user || !p->ip || !p->folder) {
		peer_free(p);
		return NULL;
	}
	return p;
}

static int reserve(struct content *c, int64_t id)
{
	size_t n;
	struct vpeer **pv;

	if (id <= 0 || id >= PEER_ID_MAX)
		return -ERANGE;
	if ((size_t)id < c->npeers)
		return 0;
	for (n = c->npeers ? c->npeers : 64; n <= (size_t)id; n *= 2)
		;
	pv = realloc(c->peers, n * sizeof(*pv));
	if (!pv)
		return -ENOMEM;
	memset(pv + c->npeers, 0, (n - c->npeers) * sizeof(*pv));
	c->peers = pv;
	c->npeers = n;
	return 0;
}

static struct vpeer *peer_at(const struct content *c, int64_t id)
{
	return id > 0 && (size_t)id < c->npeers ? c->peers[id] : NULL;
}

static void drop(struct content *c, int64_t id)
{
	struct vpeer *p = peer_at(c, id);

	if (!p)
		return;
	nameindex_drop_peer(c->ni, (uint32_t)id);
	c->nfiles -= p->nfiles;
	c->bytes -= peer_bytes(p);
	peer_free(p);
	c->peers[id] = NULL;
}

int view_put_peer(struct view *v, int64_t id, const struct view_peer *vp,
		  const struct store_file *files, size_t nfiles)
{
	struct vpeer *p;
	int r = 0;

	if (id <= 0 || id >= PEER_ID_MAX)
		return -ERANGE;
	/* Built outside the lock; only the index update holds it. */
	if (!(p = peer_new(vp)))
		return -ENOMEM;
	for (size_t i = 0; r == 0 && i < nfiles; i++)
		r = peer_add_file(p, files[i].name, files[i].size, files[i].sha256);
	if (r < 0) {
		peer_free(p);
		return r;
	}
	pthread_rwlock_wrlock(&v->lock);
	r = reserve(&v->c, id);
	if (r == 0) {
		drop(&v->c, id);
		v->c.peers[id] = p;
		v->c.nfiles += p->nfiles;
		v->c.bytes += peer_bytes(p);
		for (uint32_t i = 0; r == 0 && i < p->nfiles; i++)
			r = nameindex_add(v->c.ni, (uint32_t)id, id << 32 | i, p->names + p->files[i].name);
	} else {
		peer_free(p);
	}
	pthread_rwlock_unlock(&v->lock);
	return r;
}

int view_add_file(struct view *v, int64_t id, const char *name, int64_t size, const char *sha256)
{
	struct vpeer *p;
	size_t before;
	int r = -ENOENT;

	pthread_rwlock_wrlock(&v->lock);
	if ((p = peer_at(&v->c, id))) {
		before = peer_bytes(p);
		r = peer_add_file(p, name, size, sha256);
		if (r == 0)
			r = nameindex_add(v->c.ni, (uint32_t)id, id << 32 | (p->nfiles - 1), name);
		if (r == 0)
			v->c.nfiles++;
		v->c.bytes += peer_bytes(p) - before;
	}
	pthread_rwlock_unlock(&v->lock);
	return r;
}

void view_peer_state(struct view *v, int64_t id, int64_t last_seen, bool online)
{
	struct vpeer *p;

	pthread_rwlock_wrlock(&v->lock);
	if ((p = peer_at(&v->c, id))) {
		if (last_seen > p->last_seen)
			p->last_seen = last_seen;
		p->online = online;
	}
	pthread_rwlock_unlock(&v->lock);
}

void view_drop_peer(struct view *v, int64_t id)
{
	pthread_rwlock_wrlock(&v->lock);
	drop(&v->c, id);
	pthread_rwlock_unlock(&v->lock);
}

void view_retain(struct view *v, bool (*keep)(int64_t id, void *ctx), void *ctx)
{
	pthread_rwlock_wrlock(&v->lock);
	for (size_t id = 1; id < v->c.npeers; id++)
		if (v->c.peers[id] && !keep((int64_t)id, ctx))
			drop(&v->c, (int64_t)id);
	pthread_rwlock_unlock(&v->lock);
}

void view_swap(struct view *live, struct view *fresh)
{
	struct content old;

	pthread_rwlock_wrlock(&live->lock);
	old = live->c;
	live->c = fresh->c;
	pthread_rwlock_unlock(&live->lock);
	fresh->c = old;
	view_free(fresh);
}

/* ---- answers --------------------------------------------------------------- */

struct alive_ctx {
	const struct content *c;
	int64_t since;
};

static bool alive(uint32_t id, void *ctx)
{
	const struct alive_ctx *a = ctx;
	const struct vpeer *p = peer_at(a->c, id);

	return p && p->online && p->last_seen >= a->since;
}

static int emit(const struct content *c, int64_t rowid, store_hit_cb cb, void *ctx)
{
	const struct vpeer *p = c->peers[rowid >> 32];
	const struct vfile *f = &p->files[(uint32_t)rowid];
	char sha[SHA256_HEX_LEN + 1] = "";
	struct store_hit h = {
		.peer = p->user, .ip = p->ip, .port = p->port, .folder = p->folder,
		.name = p->names + f->name, .size = f->size, .sha256 = sha,
	};

	if (f->has_sha)
		crypto_hex(f->sha, sizeof(f->sha), sha);
	return cb(&h, ctx);
}

static int by_peer_name(const void *a, const void *b, void *arg)
{
	const struct content *c = arg;
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	int d = strcmp(c->peers[x >> 32]->user, c->peers[y >> 32]->user);

	return d ? d : (x > y) - (x < y);
}

int view_search_exact(struct view *v, const char *name, int64_t alive_since, store_hit_cb cb, void *ctx)
{
	char key[NFC_MAX_BYTES(FILENAME_MAX_BYTES) + 1], stored[NFC_MAX_BYTES(FILENAME_MAX_BYTES) + 1];
	struct alive_ctx a = { .c = &v->c, .since = alive_since };
	int64_t *ids;
	size_t n, k = 0;
	int rc;

	/* Names compare in NFC (nfc.h). */
	if (nfc(name, key, sizeof(key)) < 0)
		return -EINVAL;
	pthread_rwlock_rdlock(&v->lock);
	rc = nameindex_exact(v->c.ni, key, alive, &a, &ids, &n);
	if (rc < 0) {
		pthread_rwlock_unlock(&v->lock);
		return rc;
	}
	/* The index folds case; an exact search does not. */
	for (size_t i = 0; i < n; i++) {
		const struct vpeer *p = v->c.peers[ids[i] >> 32];
		const char *fname = p->names + p->files[(uint32_t)ids[i]].name;

		if (strcmp(fname, key) == 0 ||
		    (nfc(fname, stored, sizeof(stored)) >= 0 && strcmp(stored, key) == 0))
			ids[k++] = ids[i];
	}
	if (k > 1)
		qsort_r(ids, k, sizeof(*ids), by_peer_name, &v->c);
	for (size_t i = 0; rc == 0 && i < k; i++)
		rc = emit(&v->c, ids[i], cb, ctx);
	pthread_rwlock_unlock(&v->lock);
	free(ids);
	return rc;
}

int view_search_substring(struct view *v, const char *text, int64_t alive_since, int64_t limit,
			  int64_t offset, int64_t *total, bool *exact, store_hit_cb cb, void *ctx)
{
	int64_t stack[64], *ids = limit <= 64 ? stack : malloc((size_t)limit * sizeof(*ids));
	struct alive_ctx a = { .c = &v->c, .since = alive_since };
	struct nameindex_query q = {
		.text = text, .offset = offset, .limit = limit, .cap = STORE_TOTAL_CAP,
		.alive = alive, .alive_ctx = &a,
	};
	struct nameindex_result res = { .rowids = ids };
	int rc;

	if (!ids)
		return -ENOMEM;
	pthread_rwlock_rdlock(&v->lock);
	rc = nameindex_search(v->c.ni, &q, &res);
	if (rc == 0) {
		*total = res.total;
		*exact = res.exact;
		for (size_t i = 0; rc == 0 && i < res.n; i++)
			rc = emit(&v->c, ids[i], cb, ctx);
	}
	pthread_rwlock_unlock(&v->lock);
	if (ids != stack)
		free(ids);
	return rc;
}

void view_counts(struct view *v, int64_t alive_since, int64_t *peers, int64_t *files)
{
	struct alive_ctx a = { .c = &v->c, .since = alive_since };

	*peers = *files = 0;
	pthread_rwlock_rdlock(&v->lock);
	for (size_t id = 0; id < v->c.npeers; id++)
		if (alive((uint32_t)id, &a)) {
			(*peers)++;
			*files += v->c.peers[id]->nfiles;
		}
	pthread_rwlock_unlock(&v->lock);
}

void view_sizes(struct view *v, size_t *files, size_t *index_bytes, size_t *view_bytes)
{
	pthread_rwlock_rdlock(&v->lock);
	*files = v->c.nfiles;
	*index_bytes = nameindex_memory(v->c.ni);
	*view_bytes = v->c.bytes + v->c.npeers * sizeof(*v->c.peers);
	pthread_rwlock_unlock(&v->lock);
}
