/* SPDX-License-Identifier: MIT */
/* share.c — the shared folder: which regular files are shared, their size
 * and SHA-256, and opening one safely. Every access is relative to the
 * folder's descriptor with O_NOFOLLOW, names are validated (no '/', no "..",
 * no NUL), and only regular files count, so nothing outside the folder can
 * be reached, not even through a symlink. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "file.h"
#include "log.h"
#include "peerd.h"

int block_list_copy(struct block_list *dst, const struct block_list *src)
{
	*dst = (struct block_list){ src->block_size, 0, NULL };
	if (src->n == 0)
		return 0;
	dst->sha = malloc(src->n * SHA256_BYTES);
	if (!dst->sha)
		return -ENOMEM;
	memcpy(dst->sha, src->sha, src->n * SHA256_BYTES);
	dst->n = src->n;
	return 0;
}

void block_list_free(struct block_list *b)
{
	free(b->sha);
	*b = (struct block_list){ 0, 0, NULL };
}

/* One cache line: "dev ino size mtime_ns sha256 block_size BLOCKS", BLOCKS
 * the hex of every block's SHA-256 run together ("-" for none). Lines of
 * the older five-field form are skipped, so those files are hashed again. */
static int cache_parse(const char *line, struct hash_entry *e)
{
	int at = 0;
	size_t len;
	const char *hex;

	memset(e, 0, sizeof(*e));
	if (sscanf(line, "%" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNd64 " %64s %" SCNu64 " %n", &e->dev, &e->ino,
		   &e->size, &e->mtime_ns, e->sha256, &e->blocks.block_size, &at) != 6 || at == 0 ||
	    !valid_sha256_hex(e->sha256) || e->blocks.block_size != BLOCK_SIZE)
		return -EINVAL;
	hex = line + at;
	len = strcspn(hex, " \n");
	if (len == 1 && hex[0] == '-')
		len = 0;
	if (len % (2 * SHA256_BYTES) != 0 || len / (2 * SHA256_BYTES) != (e->size + BLOCK_SIZE - 1) / BLOCK_SIZE)
		return -EINVAL;
	e->blocks.n = len / (2 * SHA256_BYTES);
	if (e->blocks.n && !(e->blocks.sha = malloc(e->blocks.n * SHA256_BYTES)))
		return -ENOMEM;
	if (!crypto_unhex(hex, len / 2, e->blocks.sha)) {
		block_list_free(&e->blocks);
		return -EINVAL;
	}
	return 0;
}

static void cache_load(struct share *sh)
{
	FILE *f = fopen(sh->cache_path, "re");
	struct hash_entry e, *grown;
	char *line = NULL;
	size_t cap = 0, linecap = 0;

	if (!f)
		return;
	while (getline(&line, &linecap, f) > 0) {
		if (cache_parse(line, &e) < 0)
			continue;
		if (sh->ncache == cap) {
			cap = cap ? 2 * cap : 256;
			grown = realloc(sh->cache, cap * sizeof(*grown));
			if (!grown) {
				block_list_free(&e.blocks);
				break;
			}
			sh->cache = grown;
		}
		sh->cache[sh->ncache++] = e;
	}
	free(line);
	fclose(f);
	log_debug("hash cache: %zu entries from %s", sh->ncache, sh->cache_path);
}

static void cache_free(struct hash_entry *entries, size_t n)
{
	for (size_t i = 0; i < n; i++)
		block_list_free(&entries[i].blocks);
	free(entries);
}

struct cache_out {
	const struct hash_entry *entries;
	size_t n;
};

static int cache_fill(FILE *f, void *arg)
{
	const struct cache_out *o = arg;
	const struct hash_entry *entries = o->entries;

	for (size_t i = 0; i < o->n; i++) {
		char hex[2 * SHA256_BYTES + 1];

		fprintf(f, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRId64 " %s %u ", entries[i].dev, entries[i].ino,
			entries[i].size, entries[i].mtime_ns, entries[i].sha256, BLOCK_SIZE);
		for (size_t b = 0; b < entries[i].blocks.n; b++) {
			crypto_hex(entries[i].blocks.sha + b * SHA256_BYTES, SHA256_BYTES, hex);
			fputs(hex, f);
		}
		fputs(entries[i].blocks.n ? "\n" : "-\n", f);
	}
	return 0; /* a failed write shows in the stream's error flag */
}

/* Write the cache atomically (file_write_atomic). */
static void cache_save(struct share *sh, const struct hash_entry *entries, size_t n)
{
	struct cache_out o = { entries, n };
	int e = file_write_atomic(sh->cache_path, cache_fill, &o, FILE_SYNC);

	if (e < 0)
		log_errno(LOG_WARNING, -e, "cannot write the hash cache %s", sh->cache_path);
}

static const struct hash_entry *cache_find(const struct share *sh, const struct stat *st)
{
	int64_t mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;

	for (size_t i = 0; i < sh->ncache; i++) {
		const struct hash_entry *e = &sh->cache[i];

		/* An entry without our block hashes (a download from an older
		 * peer) is no hit: Stat must be able to send them. */
		if (e->dev == (uint64_t)st->st_dev && e->ino == (uint64_t)st->st_ino &&
		    e->size == (uint64_t)st->st_size && e->mtime_ns == mtime_ns &&
		    e->blocks.block_size == BLOCK_SIZE && e->blocks.n == (e->size + BLOCK_SIZE - 1) / BLOCK_SIZE)
			return e;
	}
	return NULL;
}

int share_open(struct share *sh, const char *folder, const char *state_dir)
{
	memset(sh, 0, sizeof(*sh));
	pthread_mutex_init(&sh->lock, NULL);
	sh->dirfd = open(folder, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (sh->dirfd < 0)
		return log_errno(LOG_ERR, errno, "cannot open the shared folder %s", folder);
	if (state_dir) {
		if (mkdir(state_dir, 0700) < 0 && errno != EEXIST)
			log_errno(LOG_WARNING, errno, "cannot create the state directory %s; hashes are not cached",
				  state_dir);
		else if (asprintf(&sh->cache_path, "%s/hashes", state_dir) < 0)
			sh->cache_path = NULL;
		if (sh->cache_path)
			cache_load(sh);
	}
	return 0;
}

void share_close(struct share *sh)
{
	if (sh->dirfd >= 0)
		close(sh->dirfd);
	for (size_t i = 0; i < sh->n; i++)
		block_list_free(&sh->files[i].blocks);
	free(sh->files);
	cache_free(sh->cache, sh->ncache);
	cache_free(sh->remembered, sh->nremembered);
	free(sh->cache_path);
	pthread_mutex_destroy(&sh->lock);
}

/* The progress of one scan, for hash_fd. */
struct scan_state {
	const struct share_scan_opts *o;
	size_t files_done, files_todo;
	uint64_t bytes_done, bytes_todo, reported;
};

static bool scan_stopped(const struct scan_state *ss)
{
	return ss && ss->o && ss->o->stop && __atomic_load_n(ss->o->stop, __ATOMIC_RELAXED);
}

static void scan_progress(struct scan_state *ss)
{
	if (ss && ss->o && ss->o->progress)
		ss->o->progress(ss->o->arg, ss->files_done, ss->files_todo, ss->bytes_done, ss->bytes_todo);
}

static int hash_fd(int fd, char out[SHA256_HEX_LEN + 1], uint64_t *size, struct block_list *blocks,
		   struct scan_state *ss);

int share_hash_fd(int fd, char out[SHA256_HEX_LEN + 1], uint64_t *size, struct block_list *blocks)
{
	return hash_fd(fd, out, size, blocks, NULL);
}

static int hash_fd(int fd, char out[SHA256_HEX_LEN + 1], uint64_t *size, struct block_list *blocks,
		   struct scan_state *ss)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new(), *bctx = EVP_MD_CTX_new();
	unsigned char md[SHA256_BYTES], *buf = malloc(1 << 20), *grown;
	unsigned int mdlen = 0;
	uint64_t total = 0, in_block = 0;
	size_t cap = 0;
	ssize_t n;
	int r = 0;

	*blocks = (struct block_list){ BLOCK_SIZE, 0, NULL };
	if (!ctx || !bctx || !buf || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		r = -ENOMEM;
		goto out;
	}
	/* Never read across a block boundary, so each block hashes on its own. */
	while ((n = read(fd, buf, BLOCK_SIZE - in_block < (1 << 20) ? BLOCK_SIZE - in_block : (1 << 20))) > 0) {
		if (in_block == 0)
			EVP_DigestInit_ex(bctx, EVP_sha256(), NULL);
		EVP_DigestUpdate(ctx, buf, (size_t)n);
		EVP_DigestUpdate(bctx, buf, (size_t)n);
		total += (uint64_t)n;
		in_block += (uint64_t)n;
		if (ss) {
			ss->bytes_done += (uint64_t)n;
			if (ss->bytes_done - ss->reported >= (256u << 20)) {
				ss->reported = ss->bytes_done;
				scan_progress(ss);
			}
			if (scan_stopped(ss)) {
				r = -ECANCELED;
				goto out;
			}
		}
		if (in_block < BLOCK_SIZE)
			continue;
		if (blocks->n == cap) {
			cap = cap ? 2 * cap : 16;
			grown = realloc(blocks->sha, cap * SHA256_BYTES);
			if (!grown) {
				r = -ENOMEM;
				goto out;
			}
			blocks->sha = grown;
		}
		EVP_DigestFinal_ex(bctx, blocks->sha + blocks->n++ * SHA256_BYTES, &mdlen);
		in_block = 0;
	}
	if (n < 0) {
		r = -errno;
		goto out;
	}
	if (in_block) { /* the last, shorter block */
		if (blocks->n == cap && !(grown = realloc(blocks->sha, (cap + 1) * SHA256_BYTES))) {
			r = -ENOMEM;
			goto out;
		} else if (blocks->n == cap) {
			blocks->sha = grown;
		}
		EVP_DigestFinal_ex(bctx, blocks->sha + blocks->n++ * SHA256_BYTES, &mdlen);
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	crypto_hex(md, SHA256_BYTES, out);
	*size = total;
out:
	if (r < 0)
		block_list_free(blocks);
	free(buf);
	EVP_MD_CTX_free(ctx);
	EVP_MD_CTX_free(bctx);
	return r;
}

static bool allowed(const struct conf_strlist *allow, const char *name)
{
	if (!allow || allow->n == 0)
		return true;
	for (size_t i = 0; i < allow->n; i++)
		if (strcmp(allow->v[i], name) == 0)
			return true;
	return false;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct shared_file *)a)->name, ((const struct shared_file *)b)->name);
}

static double scan_clock(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Share a copy of list (sorted by name, with its block hashes). */
static int publish(struct share *sh, const struct shared_file *list, size_t n, size_t hashed)
{
	struct shared_file *copy = n ? calloc(n, sizeof(*copy)) : NULL, *old;
	size_t oldn;

	if (n && !copy)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		copy[i] = list[i];
		if (block_list_copy(&copy[i].blocks, &list[i].blocks) < 0) {
			for (size_t j = 0; j < i; j++)
				block_list_free(&copy[j].blocks);
			free(copy);
			return -ENOMEM;
		}
	}
	if (n)
		qsort(copy, n, sizeof(*copy), by_name);
	pthread_mutex_lock(&sh->lock);
	old = sh->files;
	oldn = sh->n;
	sh->files = copy;
	sh->n = n;
	sh->hashed = hashed;
	pthread_mutex_unlock(&sh->lock);
	for (size_t i = 0; i < oldn; i++)
		block_list_free(&old[i].blocks);
	free(old);
	return 0;
}

/* Hashes of verified downloads, remembered meanwhile, join the cache. */
static void cache_take_remembered(struct share *sh)
{
	struct hash_entry *r, *grown;
	size_t n;

	pthread_mutex_lock(&sh->lock);
	r = sh->remembered;
	n = sh->nremembered;
	sh->remembered = NULL;
	sh->nremembered = 0;
	pthread_mutex_unlock(&sh->lock);
	if (!n)
		return;
	grown = realloc(sh->cache, (sh->ncache + n) * sizeof(*grown));
	if (!grown) {
		cache_free(r, n);
		return;
	}
	memcpy(grown + sh->ncache, r, n * sizeof(*r));
	sh->cache = grown;
	sh->ncache += n;
	free(r);
}

struct todo {
	char name[FILENAME_MAX_BYTES + 1];
	uint64_t size;
};

int share_scan(struct share *sh, const struct conf_strlist *allow)
{
	return share_scan_ex(sh, allow, NULL);
}

int share_scan_ex(struct share *sh, const struct conf_strlist *allow, const struct share_scan_opts *o)
{
	struct shared_file *list = NULL;
	struct hash_entry *seen = NULL;
	struct todo *todo = NULL;
	struct block_list bl = { 0, 0, NULL };
	size_t n = 0, cap = 0, ntodo = 0, todocap = 0, hashed = 0;
	struct scan_state ss = { .o = o };
	bool cache_only = o && o->cache_only;
	double published = 0;
	struct dirent *e;
	DIR *dir;
	int fd, r = 0;

	cache_take_remembered(sh);
	fd = openat(sh->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(dir = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return log_errno(LOG_ERR, errno, "cannot read the shared folder");
	}
	/* Pass 1: what the cache knows is shared at once; the rest waits for
	 * its hash (a file being hashed is not shared yet). */
	for (size_t pass = 1; pass <= 2; pass++) {
		size_t next = 0;

		for (;;) {
			struct stat st;
			struct shared_file f;
			const struct hash_entry *c;
			const char *name;
			int ffd;

			if (pass == 1) {
				if (!(e = readdir(dir)))
					break;
				name = e->d_name;
				/* Hidden entries (".p2p-partial" among them) are never shared. */
				if (name[0] == '.' || !valid_filename(name, strlen(name)) || !allowed(allow, name))
					continue;
			} else {
				if (next == ntodo)
					break;
				name = todo[next++].name;
				if (scan_stopped(&ss)) {
					r = -ECANCELED;
					goto fail;
				}
			}
			ffd = openat(sh->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
			if (ffd < 0)
				continue; /* a symlink (ELOOP), vanished, or unreadable */
			if (fstat(ffd, &st) < 0 || !S_ISREG(st.st_mode)) {
				close(ffd);
				continue;
			}
			memset(&f, 0, sizeof(f));
			snprintf(f.name, sizeof(f.name), "%s", name);
			f.mtime = st.st_mtim.tv_sec;
			c = cache_find(sh, &st);
			if (c) {
				memcpy(f.sha256, c->sha256, sizeof(f.sha256));
				f.size = c->size;
				if (block_list_copy(&bl, &c->blocks) < 0) {
					close(ffd);
					continue;
				}
			} else if (pass == 1) {
				close(ffd);
				if (cache_only)
					continue;
				if (ntodo == todocap) {
					struct todo *g = realloc(todo, (todocap = todocap ? 2 * todocap : 16) * sizeof(*g));

					if (!g)
						goto oom;
					todo = g;
				}
				todo[ntodo].size = (uint64_t)st.st_size;
				snprintf(todo[ntodo++].name, sizeof(todo[0].name), "%s", name);
				ss.files_todo++;
				ss.bytes_todo += (uint64_t)st.st_size;
				continue;
			} else {
				r = hash_fd(ffd, f.sha256, &f.size, &bl, &ss);
				ss.files_done++;
				if (r == -ECANCELED) {
					close(ffd);
					goto fail;
				}
				r = 0;
				if (r < 0 || f.size != (uint64_t)st.st_size || !f.sha256[0]) {
					/* unreadable, or changing while we read it: next scan */
					log_warn("cannot hash %s now; not shared", name);
					block_list_free(&bl);
					close(ffd);
					continue;
				}
				hashed++;
			}
			close(ffd);
			if (n == cap) {
				struct shared_file *grown;
				struct hash_entry *gs;

				cap = cap ? 2 * cap : 64;
				grown = realloc(list, cap * sizeof(*list));
				if (grown)
					list = grown;
				gs = grown ? realloc(seen, cap * sizeof(*seen)) : NULL;
				if (gs)
					seen = gs;
				if (!grown || !gs)
					goto oom;
			}
			if (block_list_copy(&f.blocks, &bl) < 0)
				goto oom;
			seen[n] = (struct hash_entry){ (uint64_t)st.st_dev, (uint64_t)st.st_ino, f.size,
						       (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec, "", bl };
			bl = (struct block_list){ 0, 0, NULL };
			memcpy(seen[n].sha256, f.sha256, sizeof(f.sha256));
			list[n++] = f;
			/* Share each newly hashed file soon, not after the whole scan:
			 * at least once a second, and before a big file. */
			if (pass == 2 && next < ntodo &&
			    (scan_clock() - published >= 1.0 || todo[next].size >= (64u << 20))) {
				publish(sh, list, n, hashed);
				published = scan_clock();
				scan_progress(&ss);
			}
		}
		if (pass == 1) {
			closedir(dir);
			dir = NULL;
			if (ntodo && publish(sh, list, n, 0) < 0)
				goto oom;
			published = scan_clock();
			scan_progress(&ss);
		}
	}
	if (publish(sh, list, n, hashed) < 0)
		goto oom;
	for (size_t i = 0; i < n; i++)
		block_list_free(&list[i].blocks);
	free(list);
	free(todo);
	if (cache_only) {
		cache_free(seen, n);
	} else {
		/* The cache keeps exactly what is shared now. */
		if (sh->cache_path && (hashed || n != sh->ncache))
			cache_save(sh, seen, n);
		cache_free(sh->cache, sh->ncache);
		sh->cache = seen;
		sh->ncache = n;
	}
	log_info("sharing %zu file(s), %zu hashed, %zu from the cache", n, hashed, n - hashed);
	return (int)n;
oom:
	r = -ENOMEM;
fail:
	block_list_free(&bl);
	for (size_t i = 0; i < n; i++)
		block_list_free(&list[i].blocks);
	free(list);
	free(todo);
	cache_free(seen, n);
	if (dir)
		closedir(dir);
	return r;
}

void share_totals(struct share *sh, size_t *files, uint64_t *bytes)
{
	pthread_mutex_lock(&sh->lock);
	*files = sh->n;
	*bytes = 0;
	for (size_t i = 0; i < sh->n; i++)
		*bytes += sh->files[i].size;
	pthread_mutex_unlock(&sh->lock);
}

struct json_object *share_list_json(struct share *sh)
{
	struct json_object *arr = json_object_new_array();

	pthread_mutex_lock(&sh->lock);
	for (size_t i = 0; arr && i < sh->n; i++) {
		struct json_object *f = json_object_new_object();

		json_object_object_add(f, "name", json_object_new_string(sh->files[i].name));
		json_object_object_add(f, "size", json_object_new_int64((int64_t)sh->files[i].size));
		json_object_object_add(f, "sha256", json_object_new_string(sh->files[i].sha256));
		json_object_object_add(f, "mtime", json_object_new_int64(sh->files[i].mtime));
		json_object_array_add(arr, f);
	}
	pthread_mutex_unlock(&sh->lock);
	return arr;
}

static int share_get(struct share *sh, const char *name, struct shared_file *out, bool blocks)
{
	struct shared_file key, *f;
	int r = -ENOENT;

	out->blocks = (struct block_list){ 0, 0, NULL };
	if (!valid_filename(name, strlen(name)))
		return -EINVAL;
	snprintf(key.name, sizeof(key.name), "%s", name);
	pthread_mutex_lock(&sh->lock);
	f = sh->n ? bsearch(&key, sh->files, sh->n, sizeof(*sh->files), by_name) : NULL;
	if (f) {
		*out = *f;
		out->blocks = (struct block_list){ 0, 0, NULL };
		r = blocks ? block_list_copy(&out->blocks, &f->blocks) : 0;
	}
	pthread_mutex_unlock(&sh->lock);
	return r;
}

int share_find(struct share *sh, const char *name, struct shared_file *out)
{
	return share_get(sh, name, out, false);
}

int share_stat(struct share *sh, const char *name, struct shared_file *out)
{
	return share_get(sh, name, out, true);
}

int share_open_file(struct share *sh, const char *name, int *fd_out, uint64_t *size_out)
{
	struct shared_file f;
	struct stat st;
	int r = share_find(sh, name, &f), fd;

	if (r < 0)
		return r;
	fd = openat(sh->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return errno == ELOOP ? -ENOENT : -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -ENOENT;
	}
	*fd_out = fd;
	*size_out = (uint64_t)st.st_size;
	return 0;
}

void share_remember(struct share *sh, struct hash_entry *e)
{
	struct hash_entry *grown;

	/* The next scan (maybe running on a worker now) takes it into the cache. */
	pthread_mutex_lock(&sh->lock);
	grown = realloc(sh->remembered, (sh->nremembered + 1) * sizeof(*grown));
	if (grown) {
		sh->remembered = grown;
		sh->remembered[sh->nremembered++] = *e;
	} else {
		block_list_free(&e->blocks);
	}
	pthread_mutex_unlock(&sh->lock);
	e->blocks = (struct block_list){ 0, 0, NULL };
}

struct json_object *share_to_json(struct share *sh)
{
	struct json_object *arr = json_object_new_array();

	pthread_mutex_lock(&sh->lock);
	for (size_t i = 0; arr && i < sh->n; i++) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "name", json_object_new_string(sh->files[i].name));
		json_object_object_add(o, "size", json_object_new_int64((int64_t)sh->files[i].size));
		json_object_object_add(o, "sha256", json_object_new_string(sh->files[i].sha256));
		json_object_array_add(arr, o);
	}
	pthread_mutex_unlock(&sh->lock);
	return arr;
}
