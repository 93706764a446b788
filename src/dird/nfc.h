/* SPDX-License-Identifier: MIT */
/* nfc.h — Unicode Normalization Form C for the names the directory
 * compares (file names; user names are ASCII, where NFC changes nothing).
 * A name and its NFD spelling (e + U+0301 for U+00E9) are the same name to
 * a reader, so every comparison and every index key is taken in NFC. */
#ifndef P2P_DIRD_NFC_H
#define P2P_DIRD_NFC_H

#include <stddef.h>

/* NFC may make a string up to three times longer (UAX #15). */
#define NFC_MAX_BYTES(n) (3 * (n))

/* The NFC form of the valid UTF-8 string s, NUL-terminated, into out of
 * outlen bytes. Returns its length, -E2BIG if it does not fit, -EINVAL if s
 * is not valid UTF-8, -ENOMEM. ASCII is copied as it is. */
long nfc(const char *s, char *out, size_t outlen);

#endif
