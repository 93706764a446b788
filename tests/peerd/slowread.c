/* SPDX-License-Identifier: MIT */
/* slowread.c — an LD_PRELOAD shim for tests: a slow disk on demand.
 *
 * While the file named by SLOWREAD_FLAG exists, pread() of a file whose
 * path ends in "/slow.bin" first sleeps SLOWREAD_MS milliseconds (default
 * 3000), as a dying disk or a stalled network filesystem would, and
 * preadv2() with RWF_NOWAIT fails with EAGAIN, as it does when the bytes
 * are not in the page cache. Everything else goes straight to the C library.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static int slow(int fd)
{
	const char *flag = getenv("SLOWREAD_FLAG");
	char link[64], path[4096];
	ssize_t n;

	if (!flag || access(flag, F_OK) != 0)
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n < 9)
		return 0;
	path[n] = '\0';
	if (strcmp(path + n - 9, "/slow.bin") != 0)
		return 0;
	return 1;
}

static void maybe_sleep(int fd)
{
	const char *ms = getenv("SLOWREAD_MS");
	struct timespec ts;
	long v;

	if (!slow(fd))
		return;
	v = ms ? strtol(ms, NULL, 10) : 3000;
	ts.tv_sec = v / 1000;
	ts.tv_nsec = (v % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0)
		;
}

ssize_t pread(int fd, void *buf, size_t count, off_t offset)
{
	static ssize_t (*real)(int, void *, size_t, off_t);

	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "pread");
	maybe_sleep(fd);
	return real(fd, buf, count, offset);
}

ssize_t pread64(int fd, void *buf, size_t count, off64_t offset)
{
	static ssize_t (*real)(int, void *, size_t, off64_t);

	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "pread64");
	maybe_sleep(fd);
	return real(fd, buf, count, offset);
}

ssize_t preadv2(int fd, const struct iovec *iov, int iovcnt, off_t offset, int flags)
{
	static ssize_t (*real)(int, const struct iovec *, int, off_t, int);

	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "preadv2");
	if ((flags & RWF_NOWAIT) && slow(fd)) {
		errno = EAGAIN;
		return -1;
	}
	maybe_sleep(fd);
	return real(fd, iov, iovcnt, offset, flags);
}
