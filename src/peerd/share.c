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
#include <unistd.h>

#include <openssl/evp.h>

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

static int unhex(int c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
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
	for (size_t i = 0; i < len / 2; i++) {
		int hi = unhex(hex[2 * i]), lo = unhex(hex[2 * i + 1]);

		if (hi < 0 || lo < 0) {
			block_list_free(&e->blocks);
			return -EINVAL;
		}
		e->blocks.sha[i] = (unsigned char)(hi << 4 | lo);
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

/* Write the cache atomically (temporary file + rename). */
static void cache_save(struct share *sh, const struct hash_entry *entries, size_t n)
{
	char tmp[4200];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", sh->cache_path);
	f = fopen(tmp, "we");
	if (!f) {
		log_errno(LOG_WARNING, errno, "cannot write the hash cache %s", tmp);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		char hex[2 * SHA256_BYTES + 1];

		fprintf(f, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRId64 " %s %u ", entries[i].dev, entries[i].ino,
			entries[i].size, entries[i].mtime_ns, entries[i].sha256, BLOCK_SIZE);
		for (size_t b = 0; b < entries[i].blocks.n; b++) {
			crypto_hex(entries[i].blocks.sha + b * SHA256_BYTES, SHA256_BYTES, hex);
			fputs(hex, f);
		}
		fputs(entries[i].blocks.n ? "\n" : "-\n", f);
	}
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		fclose(f);
		unlink(tmp);
		return;
	}
	fclose(f);
	if (rename(tmp, sh->cache_path) < 0)
		unlink(tmp);
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
	free(sh->cache_path);
	pthread_mutex_destroy(&sh->lock);
}

int share_hash_fd(int fd, char out[SHA256_HEX_LEN + 1], uint64_t *size, struct block_list *blocks)
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

int share_scan(struct share *sh, const struct conf_strlist *allow)
{
	struct shared_file *list = NULL, *grown;
	struct hash_entry *seen = NULL;
	struct block_list bl = { 0, 0, NULL };
	size_t n = 0, cap = 0, hashed = 0;
	struct dirent *e;
	DIR *dir;
	int fd;

	fd = openat(sh->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(dir = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return log_errno(LOG_ERR, errno, "cannot read the shared folder");
	}
	while ((e = readdir(dir))) {
		struct stat st;
		struct shared_file f;
		int ffd;

		/* Hidden entries (".p2p-partial" among them) are never shared. */
		if (e->d_name[0] == '.' || !valid_filename(e->d_name, strlen(e->d_name)) ||
		    !allowed(allow, e->d_name))
			continue;
		ffd = openat(sh->dirfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
		if (ffd < 0)
			continue; /* a symlink (ELOOP), vanished, or unreadable */
		if (fstat(ffd, &st) < 0 || !S_ISREG(st.st_mode)) {
			close(ffd);
			continue;
		}
		memset(&f, 0, sizeof(f));
		strcpy(f.name, e->d_name);
		f.mtime = st.st_mtim.tv_sec;
		{
			const struct hash_entry *c = cache_find(sh, &st);

			if (c) {
				memcpy(f.sha256, c->sha256, sizeof(f.sha256));
				f.size = c->size;
				if (block_list_copy(&bl, &c->blocks) < 0) {
					close(ffd);
					continue;
				}
			} else if (share_hash_fd(ffd, f.sha256, &f.size, &bl) < 0 || f.size != (uint64_t)st.st_size) {
				/* unreadable, or changing while we read it: next scan */
				log_warn("cannot hash %s now; not shared", e->d_name);
				block_list_free(&bl);
				close(ffd);
				continue;
			} else {
				hashed++;
			}
		}
		close(ffd);
		if (n == cap) {
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
	}
	closedir(dir);
	if (n)
		qsort(list, n, sizeof(*list), by_name);
	pthread_mutex_lock(&sh->lock);
	for (size_t i = 0; i < sh->n; i++)
		block_list_free(&sh->files[i].blocks);
	free(sh->files);
	sh->files = list;
	sh->n = n;
	sh->hashed = hashed;
	pthread_mutex_unlock(&sh->lock);
	/* The cache keeps exactly what is shared now. */
	if (sh->cache_path && (hashed || n != sh->ncache))
		cache_save(sh, seen, n);
	cache_free(sh->cache, sh->ncache);
	sh->cache = seen;
	sh->ncache = n;
	log_info("sharing %zu file(s), %zu hashed, %zu from the cache", n, hashed, n - hashed);
	return (int)n;
oom:
	block_list_free(&bl);
	for (size_t i = 0; i < n; i++)
		block_list_free(&list[i].blocks);
	free(list);
	cache_free(seen, n);
	closedir(dir);
	return -ENOMEM;
}

/* Copies the shared file called name into out, with its block hashes
 * (malloc'ed) when blocks is set, without them otherwise. */
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
	struct hash_entry *grown = realloc(sh->cache, (sh->ncache + 1) * sizeof(*grown));

	if (!grown) {
		block_list_free(&e->blocks);
		return;
	}
	sh->cache = grown;
	sh->cache[sh->ncache++] = *e;
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
