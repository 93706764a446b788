/* SPDX-License-Identifier: MIT */
/* validate.h — strict checks for names that arrive from outside.
 *
 * These are the exact rules of DESIGN.md; every daemon and the CLI use them so
 * that a name accepted in one place is accepted everywhere.
 */
#ifndef P2P_VALIDATE_H
#define P2P_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>

#define USERNAME_MAX 64
#define FILENAME_MAX_BYTES 255

/* [A-Za-z0-9_.-]{1,64}, NUL-terminated. */
bool valid_username(const char *s);

/* 1..255 bytes of valid UTF-8, no '/', no NUL, not "." or "..".
 * len is the byte length (a NUL inside s makes it invalid). */
bool valid_filename(const char *s, size_t len);

/* Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing
 * above U+10FFFF. */
bool valid_utf8(const char *s, size_t len);

/* 64 lowercase hex digits. */
bool valid_sha256_hex(const char *s);

#endif
