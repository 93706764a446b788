/* SPDX-License-Identifier: MIT */
/* crypto.h — the few cryptographic helpers dird and peerd share, on top of
 * getrandom(2) and OpenSSL libcrypto. */
#ifndef P2P_CRYPTO_H
#define P2P_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHA256_BYTES 32
#define SHA256_HEX_LEN 64 /* without the NUL */

/* Fill buf with n bytes from the kernel CSPRNG (getrandom, retried on EINTR;
 * OpenSSL's RAND_bytes if getrandom is unavailable). 0 or -errno. */
int crypto_random(void *buf, size_t n);

/* Lowercase hex of n bytes into out (2n+1 bytes). */
void crypto_hex(const uint8_t *in, size_t n, char *out);
/* The n bytes that 2n lowercase hex digits stand for; false (out partly
 * written) at any other character. */
bool crypto_unhex(const char *hex, size_t n, uint8_t *out);

/* SHA-256 of a buffer as lowercase hex (out: SHA256_HEX_LEN + 1 bytes). */
void crypto_sha256_hex(const void *data, size_t n, char out[SHA256_HEX_LEN + 1]);

/* A new random 256-bit token as 64 hex characters (out: 65 bytes). 0 or -errno. */
int crypto_token(char out[SHA256_HEX_LEN + 1]);

/* Constant-time equality of two equal-length buffers (CRYPTO_memcmp). */
bool crypto_equal(const void *a, const void *b, size_t n);

#endif
