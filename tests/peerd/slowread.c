/* SPDX-License-Identifier: MIT */
/* slowread.c — an LD_PRELOAD shim for tests: a slow disk on demand.
 *
 * While the file named by SLOWREAD_FLAG exists, pread() of a file whose
 * path ends in "/slow.bin" first sleeps SLOWREAD_MS milliseconds (default
 * 3000), as a dying disk or a stalled network filesystem would. Everything
 * else goes straight to the C library.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void maybe_sleep(int fd)
{
	const char *flag = getenv("SLOWREAD_FLAG"), *ms = getenv("SLOWREAD_MS");
	char link[64], path[4096];
	struct timespec ts;
	ssize_t n;
	long v;

	if (!flag || access(flag, F_OK) != 0)
		return;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n < 9)
		return;
	path[n] = '\0';
	if (strcmp(path + n - 9, "/slow.bin") != 0)
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
