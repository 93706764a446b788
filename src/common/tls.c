/* SPDX-License-Identifier: MIT */
/* tls.c — OpenSSL contexts and checks shared by dird and peerd (tls.h). */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls.h"

#define PEM_MAX_BYTES (1 << 20)

/* OpenSSL's most recent error as text, and clear its queue. */
static const char *openssl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	return r ? r : "unknown OpenSSL error";
}

/* The file must be readable by us: say so plainly before OpenSSL tries. */
static int check_readable(const char *what, const char *path, char *err, size_t errlen)
{
	FILE *f;

	if (!path || !*path) {
		snprintf(err, errlen, "no %s file given", what);
		return -EINVAL;
	}
	f = fopen(path, "re");
	if (!f) {
		int e = errno;

		snprintf(err, errlen, "cannot read the %s file %s: %s", what, path, strerror(e));
		return -e;
	}
	fclose(f);
	return 0;
}

static int load_pair(SSL_CTX *ctx, const char *cert_path, const char *key_path, char *err, size_t errlen)
{
	X509 *cert;
	int r;

	if ((r = check_readable("certificate", cert_path, err, errlen)) < 0 ||
	    (r = check_readable("key", key_path, err, errlen)) < 0)
		return r;
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
		snprintf(err, errlen, "%s: not a PEM certificate (%s)", cert_path, openssl_reason());
		return -EINVAL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1 &&
	    ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH) {
		snprintf(err, errlen, "%s: not a PEM private key (%s)", key_path, openssl_reason());
		return -EINVAL;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "the key in %s does not belong to the certificate in %s", key_path, cert_path);
		ERR_clear_error();
		return -EINVAL;
	}
	cert = SSL_CTX_get0_certificate(ctx);
	if (cert && X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0) {
		snprintf(err, errlen, "the certificate in %s has expired", cert_path);
		return -EINVAL;
	}
	return 0;
}

static SSL_CTX *ctx_new(const SSL_METHOD *method, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(method);

	if (!ctx) {
		snprintf(err, errlen, "cannot create a TLS context (%s)", openssl_reason());
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	return ctx;
}

int tls_server_ctx_new(const char *cert_path, const char *key_path, SSL_CTX **out, char *err, size_t errlen)
{
	SSL_CTX *ctx = ctx_new(TLS_server_method(), err, errlen);
	int r;

	*out = NULL;
	if (!ctx)
		return -ENOMEM;
	r = load_pair(ctx, cert_path, key_path, err, errlen);
	if (r < 0) {
		SSL_CTX_free(ctx);
		return r;
	}
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	*out = ctx;
	return 0;
}

int tls_client_ctx_new(const char *ca_path, const char *cert_path, const char *key_path, SSL_CTX **out,
		       char *err, size_t errlen)
{
	SSL_CTX *ctx = ctx_new(TLS_client_method(), err, errlen);
	int r = 0;

	*out = NULL;
	if (!ctx)
		return -ENOMEM;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (ca_path) {
		if ((r = check_readable("CA", ca_path, err, errlen)) < 0)
			goto fail;
		if (SSL_CTX_load_verify_locations(ctx, ca_path, NULL) != 1) {
			snprintf(err, errlen, "%s: no PEM CA certificate in it (%s)", ca_path, openssl_reason());
			r = -EINVAL;
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		snprintf(err, errlen, "cannot load the system's CA certificates (%s)", openssl_reason());
		r = -EIO;
		goto fail;
	}
	if (cert_path && (r = load_pair(ctx, cert_path, key_path, err, errlen)) < 0)
		goto fail;
	*out = ctx;
	return 0;
fail:
	SSL_CTX_free(ctx);
	return r;
}

int tls_client_set_host(SSL *ssl, const char *host)
{
	X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
	unsigned char addr[sizeof(struct in6_addr)];
	char name[256];
	size_t n = strlen(host);

	/* "[::1]" from a URL is the address ::1. */
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		host++;
		n -= 2;
	}
	if (n == 0 || n >= sizeof(name))
		return -EINVAL;
	memcpy(name, host, n);
	name[n] = '\0';
	if (inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1)
		return X509_VERIFY_PARAM_set1_ip_asc(param, name) == 1 ? 0 : -EINVAL;
	X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (X509_VERIFY_PARAM_set1_host(param, name, 0) != 1 || SSL_set_tlsext_host_name(ssl, name) != 1)
		return -EINVAL;
	return 0;
}

const char *tls_failure_reason(SSL *ssl, unsigned long ssl_error, const char *fallback)
{
	long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	const char *r;

	if (v != X509_V_OK)
		return X509_verify_cert_error_string(v);
	if (ssl_error && (r = ERR_reason_error_string(ssl_error)))
		return r;
	return fallback;
}

int tls_read_pem(const char *path, int is_key, char **out, char *err, size_t errlen)
{
	const char *what = is_key ? "key" : "certificate";
	FILE *f;
	char *buf = NULL;
	size_t n;
	BIO *bio = NULL;
	int r = -EINVAL;

	*out = NULL;
	if ((r = check_readable(what, path, err, errlen)) < 0)
		return r;
	f = fopen(path, "re");
	if (!f) {
		r = -errno;
		snprintf(err, errlen, "cannot read the %s file %s: %s", what, path, strerror(-r));
		return r;
	}
	buf = malloc(PEM_MAX_BYTES + 1);
	if (!buf) {
		fclose(f);
		snprintf(err, errlen, "out of memory reading %s", path);
		return -ENOMEM;
	}
	n = fread(buf, 1, PEM_MAX_BYTES + 1, f);
	fclose(f);
	r = -EINVAL;
	if (n > PEM_MAX_BYTES) {
		snprintf(err, errlen, "%s: larger than %d bytes; not a PEM %s", path, PEM_MAX_BYTES, what);
		goto fail;
	}
	buf[n] = '\0';
	bio = BIO_new_mem_buf(buf, (int)n);
	if (is_key) {
		EVP_PKEY *k = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;

		if (!k) {
			snprintf(err, errlen, "%s: not a PEM private key (%s)", path, openssl_reason());
			goto fail;
		}
		EVP_PKEY_free(k);
	} else {
		X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;

		if (!x) {
			snprintf(err, errlen, "%s: not a PEM certificate (%s)", path, openssl_reason());
			goto fail;
		}
		X509_free(x);
	}
	BIO_free(bio);
	*out = realloc(buf, n + 1); /* shrink; cannot fail in practice, keep buf if it does */
	if (!*out)
		*out = buf;
	return 0;
fail:
	BIO_free(bio);
	OPENSSL_cleanse(buf, n < PEM_MAX_BYTES ? n : PEM_MAX_BYTES);
	free(buf);
	return r;
}
