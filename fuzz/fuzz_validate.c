/* SPDX-License-Identifier: MIT */
/* Fuzz target: the name validators. Beyond not crashing, checks invariants:
 * an accepted file name has no '/' or NUL and is valid UTF-8; an accepted
 * user name is accepted as a file name too. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	char *z;

	if (valid_filename(s, size) &&
	    (memchr(s, '/', size) || memchr(s, 0, size) || !valid_utf8(s, size)))
		abort();
	z = malloc(size + 1);
	if (!z)
		abort();
	memcpy(z, data, size);
	z[size] = '\0';
	if (valid_username(z) && strcmp(z, ".") && strcmp(z, "..") && !valid_filename(z, strlen(z)))
		abort();
	(void)valid_sha256_hex(z);
	free(z);
	return 0;
}
