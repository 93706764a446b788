/* SPDX-License-Identifier: MIT */
/* tls.c — the peer's TLS material: the client context for an https://
 * directory, and the gRPC credentials of its server and of its downloads.
 *
 * Everything is read once at start (and by -n): a bad file is an error
 * naming the key and the file, never a surprise at the first connection.
 * Without tls_certificate, gRPC runs in plain text both ways; with it, this
 * peer serves and downloads over TLS only, so a network is all TLS or all
 * plain. With tls_ca, both sides also require the other's certificate to
 * come from that CA (mutual TLS); without it, servers are checked against
 * gRPC's default roots and clients are not asked for a certificate.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc_security.h>
#include <openssl/crypto.h>

#include "log.h"
#include "peerd.h"
#include "tls.h"

static SSL_CTX *directory_ctx; /* NULL unless the directory is https:// */
static char *grpc_cert, *grpc_key, *grpc_ca; /* PEM text; NULL: plain gRPC */

static void free_pem(char **pem)
{
	if (*pem) {
		OPENSSL_cleanse(*pem, strlen(*pem));
		free(*pem);
		*pem = NULL;
	}
}

void peer_tls_free(void)
{
	SSL_CTX_free(directory_ctx);
	directory_ctx = NULL;
	free_pem(&grpc_cert);
	free_pem(&grpc_key);
	free_pem(&grpc_ca);
}

int peer_tls_setup(const struct peerd_settings *s, char *err, size_t errlen)
{
	char why[CONF_ERRLEN];
	int r = 0;

	if (strncmp(s->directory, "https://", 8) == 0 &&
	    (r = tls_client_ctx_new(s->directory_ca, NULL, NULL, &directory_ctx, why, sizeof(why))) < 0) {
		snprintf(err, errlen, "directory_ca: %s", why);
		goto fail;
	}
	if (!s->tls_certificate)
		return 0;
	if ((r = tls_read_pem(s->tls_certificate, 0, &grpc_cert, why, sizeof(why))) < 0) {
		snprintf(err, errlen, "tls_certificate: %s", why);
		goto fail;
	}
	if ((r = tls_read_pem(s->tls_key, 1, &grpc_key, why, sizeof(why))) < 0) {
		snprintf(err, errlen, "tls_key: %s", why);
		goto fail;
	}
	if (s->tls_ca && (r = tls_read_pem(s->tls_ca, 0, &grpc_ca, why, sizeof(why))) < 0) {
		snprintf(err, errlen, "tls_ca: %s", why);
		goto fail;
	}
	/* The same checks OpenSSL makes when serving: key matches, not expired. */
	{
		SSL_CTX *check;

		if ((r = tls_server_ctx_new(s->tls_certificate, s->tls_key, &check, why, sizeof(why))) < 0) {
			snprintf(err, errlen, "tls_certificate/tls_key: %s", why);
			goto fail;
		}
		SSL_CTX_free(check);
	}
	return 0;
fail:
	peer_tls_free();
	return r;
}

bool peer_tls_enabled(void)
{
	return grpc_cert != NULL;
}

struct ssl_ctx_st *peer_directory_tls(void)
{
	return directory_ctx;
}

grpc_server_credentials *peer_server_creds(void)
{
	grpc_ssl_pem_key_cert_pair pair = { grpc_key, grpc_cert };

	if (!grpc_cert)
		return grpc_insecure_server_credentials_create();
	return grpc_ssl_server_credentials_create_ex(grpc_ca, &pair, 1,
						     grpc_ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
							     : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
						     NULL);
}

grpc_channel_credentials *peer_client_creds(void)
{
	grpc_ssl_pem_key_cert_pair pair = { grpc_key, grpc_cert };

	if (!grpc_cert)
		return grpc_insecure_credentials_create();
	/* Our certificate doubles as the client certificate for mutual TLS. */
	return grpc_ssl_credentials_create(grpc_ca, &pair, NULL, NULL);
}
