/* SPDX-License-Identifier: MIT */
/* replay.c — runs a fuzz target over corpus files without libFuzzer, so the
 * committed corpus is replayed by every `make check` with any compiler.
 * Prints TAP: one test case per file. Arguments: files or directories. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char **paths;
static size_t npaths;

static int add_path(const char *p)
{
	char **n = realloc(paths, (npaths + 1) * sizeof(*paths));

	if (!n || !(n[npaths] = strdup(p)))
		return -ENOMEM;
	paths = n;
	npaths++;
	return 0;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int collect(const char *arg)
{
	struct stat st;
	DIR *d;
	struct dirent *e;
	char buf[4096];

	if (stat(arg, &st) < 0) {
		fprintf(stderr, "replay: %s: %s\n", arg, strerror(errno));
		return -errno;
	}
	if (!S_ISDIR(st.st_mode))
		return add_path(arg);
	d = opendir(arg);
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(buf, sizeof(buf), "%s/%s", arg, e->d_name);
		if (add_path(buf) < 0) {
			closedir(d);
			return -ENOMEM;
		}
	}
	closedir(d);
	return 0;
}

int main(int argc, char **argv)
{
	/* With no arguments, replay $srcdir/fuzz/corpus/NAME for a program
	 * called fuzz_NAME (how `make check` runs it). */
	if (argc < 2) {
		const char *base = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
		const char *srcdir = getenv("P2P_SRCDIR");
		char dir[4096];

		if (strncmp(base, "fuzz_", 5) != 0 || !srcdir) {
			fprintf(stderr, "usage: %s CORPUS_FILE_OR_DIR...\n", argv[0]);
			return 2;
		}
		snprintf(dir, sizeof(dir), "%s/fuzz/corpus/%s", srcdir, base + 5);
		if (collect(dir) < 0)
			return 1;
	}
	for (int i = 1; i < argc; i++)
		if (collect(argv[i]) < 0)
			return 1;
	if (npaths == 0) {
		fprintf(stderr, "replay: no corpus files\n");
		return 1;
	}
	qsort(paths, npaths, sizeof(*paths), cmp);
	printf("1..%zu\n", npaths);
	for (size_t i = 0; i < npaths; i++) {
		FILE *f = fopen(paths[i], "rb");
		uint8_t *buf = NULL;
		size_t len = 0, cap = 0, n;

		if (!f) {
			printf("not ok %zu - %s: %s\n", i + 1, paths[i], strerror(errno));
			continue;
		}
		do {
			if (len == cap) {
				uint8_t *nb = realloc(buf, cap = cap ? 2 * cap : 4096);
				if (!nb)
					abort();
				buf = nb;
			}
			n = fread(buf + len, 1, cap - len, f);
			len += n;
		} while (n > 0);
		fclose(f);
		/* A crash or sanitizer report kills the process: the TAP plan then
		 * fails the test. */
		LLVMFuzzerTestOneInput(buf, len);
		printf("ok %zu - %s\n", i + 1, strrchr(paths[i], '/') ? strrchr(paths[i], '/') + 1 : paths[i]);
		fflush(stdout);
		free(buf);
		free(paths[i]);
	}
	free(paths);
	return 0;
}
