/* SPDX-License-Identifier: MIT */
/* nfc.c — NFC through utf8proc (see nfc.h). */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "nfc.h"

long nfc(const char *s, char *out, size_t outlen)
{
	utf8proc_uint8_t *mapped = NULL;
	utf8proc_ssize_t n;
	size_t len = 0;
	bool ascii = true;

	for (; s[len]; len++)
		if ((unsigned char)s[len] >= 0x80)
			ascii = false;
	if (ascii) {
		/* Every ASCII string is in NFC: the common case costs a copy. */
		if (len >= outlen)
			return -E2BIG;
		memcpy(out, s, len + 1);
		return (long)len;
	}
	n = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &mapped,
			 UTF8PROC_STABLE | UTF8PROC_COMPOSE);
	if (n < 0)
		return n == UTF8PROC_ERROR_NOMEM ? -ENOMEM : -EINVAL;
	if ((size_t)n >= outlen) {
		free(mapped);
		return -E2BIG;
	}
	memcpy(out, mapped, (size_t)n + 1);
	free(mapped);
	return (long)n;
}
