/* share.c — the shared folder: which regular files are shared, their size
 * and SHA-256, and opening one safely. Every access is relative to the
 * folder's descriptor with O_NOFOLLOW, names are validated (no '/', no "..",
 * no NUL), and only regular files count, so nothing outside the folder can
 * be reached, not even through a symlink. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "log.h"
#include "peerd.h"

int share_open(struct share *sh, const char *folder)
{
	memset(sh, 0, sizeof(*sh));
	pthread_mutex_init(&sh->lock, NULL);
	sh->dirfd = open(folder, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (sh->dirfd < 0)
		return log_errno(LOG_ERR, errno, "cannot open the shared folder %s", folder);
	return 0;
}

void share_close(struct share *sh)
{
	if (sh->dirfd >= 0)
		close(sh->dirfd);
	free(sh->files);
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
	size_t n = 0, cap = 0;
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
		if (hash_fd(ffd, f.sha256, &f.size) < 0) {
			log_warn("cannot read %s; not shared", e->d_name);
			close(ffd);
			continue;
		}
		close(ffd);
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			grown = realloc(list, cap * sizeof(*list));
			if (!grown) {
				free(list);
				closedir(dir);
				return -ENOMEM;
			}
			list = grown;
		}
		list[n++] = f;
	}
	closedir(dir);
	if (n)
		qsort(list, n, sizeof(*list), by_name);
	pthread_mutex_lock(&sh->lock);
	free(sh->files);
	sh->files = list;
	sh->n = n;
	pthread_mutex_unlock(&sh->lock);
	log_info("sharing %zu file(s)", n);
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
