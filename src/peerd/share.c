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

/* The cache file: one line per file, "dev ino size mtime_ns sha256". */
static void cache_load(struct share *sh)
{
	FILE *f = fopen(sh->cache_path, "re");
	struct hash_entry e, *grown;
	size_t cap = 0;

	if (!f)
		return;
	while (fscanf(f, "%" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNd64 " %64s\n",
		      &e.dev, &e.ino, &e.size, &e.mtime_ns, e.sha256) == 5) {
		if (!valid_sha256_hex(e.sha256))
			continue;
		if (sh->ncache == cap) {
			cap = cap ? 2 * cap : 256;
			grown = realloc(sh->cache, cap * sizeof(*grown));
			if (!grown)
				break;
			sh->cache = grown;
		}
		sh->cache[sh->ncache++] = e;
	}
	fclose(f);
	log_debug("hash cache: %zu entries from %s", sh->ncache, sh->cache_path);
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
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRId64 " %s\n", entries[i].dev, entries[i].ino,
			entries[i].size, entries[i].mtime_ns, entries[i].sha256);
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

		if (e->dev == (uint64_t)st->st_dev && e->ino == (uint64_t)st->st_ino &&
		    e->size == (uint64_t)st->st_size && e->mtime_ns == mtime_ns)
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
	free(sh->files);
	free(sh->cache);
	free(sh->cache_path);
	pthread_mutex_destroy(&sh->lock);
}

static int hash_fd(int fd, char out[SHA256_HEX_LEN + 1], uint64_t *size)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char md[SHA256_BYTES], *buf = malloc(1 << 20);
	unsigned int mdlen = 0;
	uint64_t total = 0;
	ssize_t n;
	int r = 0;

	if (!ctx || !buf || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		r = -ENOMEM;
		goto out;
	}
	while ((n = read(fd, buf, 1 << 20)) > 0) {
		EVP_DigestUpdate(ctx, buf, (size_t)n);
		total += (uint64_t)n;
	}
	if (n < 0) {
		r = -errno;
		goto out;
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	crypto_hex(md, SHA256_BYTES, out);
	*size = total;
out:
	free(buf);
	EVP_MD_CTX_free(ctx);
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
			} else if (hash_fd(ffd, f.sha256, &f.size) < 0 || f.size != (uint64_t)st.st_size) {
				/* unreadable, or changing while we read it: next scan */
				log_warn("cannot hash %s now; not shared", e->d_name);
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
			gs = grown ? realloc(seen, cap * sizeof(*seen)) : NULL;
			if (!grown || !gs) {
				free(grown ? grown : list);
				free(gs ? gs : seen);
				closedir(dir);
				return -ENOMEM;
			}
			list = grown;
			seen = gs;
		}
		seen[n] = (struct hash_entry){ (uint64_t)st.st_dev, (uint64_t)st.st_ino, f.size,
					       (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec, "" };
		memcpy(seen[n].sha256, f.sha256, sizeof(f.sha256));
		list[n++] = f;
	}
	closedir(dir);
	if (n)
		qsort(list, n, sizeof(*list), by_name);
	pthread_mutex_lock(&sh->lock);
	free(sh->files);
	sh->files = list;
	sh->n = n;
	sh->hashed = hashed;
	pthread_mutex_unlock(&sh->lock);
	/* The cache keeps exactly what is shared now. */
	if (sh->cache_path && (hashed || n != sh->ncache))
		cache_save(sh, seen, n);
	free(sh->cache);
	sh->cache = seen;
	sh->ncache = n;
	log_info("sharing %zu file(s), %zu hashed, %zu from the cache", n, hashed, n - hashed);
	return (int)n;
}

int share_find(struct share *sh, const char *name, struct shared_file *out)
{
	struct shared_file key, *f;
	int r = -ENOENT;

	if (!valid_filename(name, strlen(name)))
		return -EINVAL;
	snprintf(key.name, sizeof(key.name), "%s", name);
	pthread_mutex_lock(&sh->lock);
	f = sh->n ? bsearch(&key, sh->files, sh->n, sizeof(*sh->files), by_name) : NULL;
	if (f) {
		*out = *f;
		r = 0;
	}
	pthread_mutex_unlock(&sh->lock);
	return r;
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

void share_remember(struct share *sh, const struct hash_entry *e)
{
	struct hash_entry *grown = realloc(sh->cache, (sh->ncache + 1) * sizeof(*grown));

	if (!grown)
		return;
	sh->cache = grown;
	sh->cache[sh->ncache++] = *e;
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
