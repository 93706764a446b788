/* SPDX-License-Identifier: MIT */
/* auth.c — password hashing with yescrypt through libcrypt (crypt(5)). */
#include "config.h"

#include <crypt.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "dird.h"
#include "log.h"

#define PASSWORD_MAX 1024

int auth_hash_password(const char *password, char **hash_out)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd;
	const char *h;

	if (strlen(password) > PASSWORD_MAX)
		return -EINVAL;
	/* "$y$": yescrypt, libcrypt's default cost; salt from the kernel. */
	if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)))
		return log_errno(LOG_ERR, errno, "crypt_gensalt_rn");
	cd = calloc(1, sizeof(*cd));
	if (!cd)
		return -ENOMEM;
	h = crypt_rn(password, salt, cd, sizeof(*cd));
	if (!h || h[0] == '*') {
		free(cd);
		return log_errno(LOG_ERR, errno ? errno : EIO, "crypt_rn");
	}
	*hash_out = strdup(h);
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return *hash_out ? 0 : -ENOMEM;
}

bool auth_check_password(const char *password, const char *hash)
{
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	const char *h;
	bool ok = false;

	if (!cd)
		return false;
	h = crypt_rn(password, hash, cd, sizeof(*cd));
	if (h && h[0] != '*' && strlen(h) == strlen(hash))
		ok = crypto_equal(h, hash, strlen(hash));
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return ok;
}

void auth_burn_time(const char *password)
{
	/* A fixed yescrypt setting with libcrypt's default cost. */
	static const char dummy[] = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7";

	(void)auth_check_password(password, dummy);
}
