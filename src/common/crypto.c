/* SPDX-License-Identifier: MIT */
/* crypto.c — see crypto.h. */
#include "config.h"

#include <errno.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "crypto.h"

int crypto_random(void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n > 0) {
		ssize_t r = getrandom(p, n, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOSYS && n <= INT32_MAX && RAND_bytes(p, (int)n) == 1)
				return 0;
			return -errno;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

void crypto_hex(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static int digit(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

bool crypto_unhex(const char *hex, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i++) {
		int hi = digit(hex[2 * i]), lo = hi < 0 ? -1 : digit(hex[2 * i + 1]);

		if (lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

void crypto_sha256_hex(const void *data, size_t n, char out[SHA256_HEX_LEN + 1])
{
	uint8_t md[SHA256_BYTES];
	unsigned int len = 0;

	EVP_Digest(data, n, md, &len, EVP_sha256(), NULL);
	crypto_hex(md, SHA256_BYTES, out);
}

int crypto_token(char out[SHA256_HEX_LEN + 1])
{
	uint8_t raw[32];
	int r = crypto_random(raw, sizeof(raw));

	if (r < 0)
		return r;
	crypto_hex(raw, sizeof(raw), out);
	OPENSSL_cleanse(raw, sizeof(raw));
	return 0;
}

bool crypto_equal(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}
