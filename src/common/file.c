/* SPDX-License-Identifier: MIT */
/* file.c — see file.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "file.h"

/* fsync PATH's directory, so that the rename itself is on disk. */
static int sync_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = NULL;
	int fd, e = 0;

	if (!slash)
		fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	else if (slash == path)
		fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	else if (!(dir = strndup(path, (size_t)(slash - path))))
		return -ENOMEM;
	else
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (fd < 0)
		return -errno;
	/* EINVAL: a file system that cannot sync a directory (nothing to do). */
	if (fsync(fd) < 0 && errno != EINVAL)
		e = -errno;
	close(fd);
	return e;
}

int file_write_atomic(const char *path, int (*fill)(FILE *f, void *arg), void *arg, int flags)
{
	char *tmp;
	FILE *f;
	int fd, e;

	if (asprintf(&tmp, "%s.tmp", path) < 0)
		return -ENOMEM;
	/* A leftover of a crash (or anything else by that name, a symlink
	 * too) goes first: the new file is always our own, fresh one. */
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
	if (fd < 0) {
		e = -errno;
		free(tmp);
		return e;
	}
	if (!(f = fdopen(fd, "w"))) {
		e = -errno;
		close(fd);
		goto fail;
	}
	errno = 0;
	e = fill(f, arg);
	if (e == 0 && (fflush(f) != 0 || ferror(f)))
		e = errno ? -errno : -EIO;
	if (e == 0 && (flags & FILE_SYNC) && fsync(fileno(f)) != 0)
		e = -errno;
	if (fclose(f) != 0 && e == 0)
		e = errno ? -errno : -EIO;
	if (e == 0 && rename(tmp, path) < 0)
		e = -errno;
	if (e < 0)
		goto fail;
	free(tmp);
	return flags & FILE_SYNC ? sync_dir(path) : 0;
fail:
	unlink(tmp);
	free(tmp);
	return e;
}
