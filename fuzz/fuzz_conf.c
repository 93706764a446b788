/* SPDX-License-Identifier: MIT */
/* Fuzz target: the JSON config loader (src/common/conf.c) with a key table
 * of every type, fed through a real file so conf_load_file's own parsing
 * (line counting, trailing text, UTF-8 checks) is covered. */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"

struct settings {
	char *s;
	long long i;
	bool b;
	struct conf_strlist l;
};

static const struct conf_key keys[] = {
	{ "username", CONF_STRING, offsetof(struct settings, s), 0, 0 },
	{ "port", CONF_INT, offsetof(struct settings, i), 1, 65535 },
	{ "verbose", CONF_BOOL, offsetof(struct settings, b), 0, 0 },
	{ "files", CONF_STRLIST, offsetof(struct settings, l), 0, 0 },
	{ NULL, 0, 0, 0, 0 },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	struct settings st = { 0 }, copy;
	char path[64], err[CONF_ERRLEN];

	if (fd < 0) {
		log_set_level(LOG_CRIT); /* unknown-key warnings would flood */
		fd = memfd_create("fuzz-conf", 0);
		if (fd < 0)
			return 0;
	}
	if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		return 0;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (conf_load_file(keys, &st, path, err, sizeof(err)) == 0 &&
	    conf_copy(keys, &copy, &st) == 0)
		conf_free(keys, &copy);
	conf_free(keys, &st);
	return 0;
}
