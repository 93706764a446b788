/* SPDX-License-Identifier: MIT */
/* tls.h — the OpenSSL (libssl) pieces dird and peerd share: a server
 * context from certificate and key files, a verifying client context, the
 * host check of one connection, and reading PEM files for gRPC.
 *
 * Nothing here exits or logs: errors come back as -errno with a message in
 * a caller buffer that names the file and the cause, so -n and SIGHUP can
 * report a bad file and keep the running configuration.
 */
#ifndef P2P_TLS_H
#define P2P_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/* A TLS server context (TLS 1.2 or later) serving the certificate chain in
 * cert_path with the private key in key_path; both PEM. The key must match
 * the certificate. Returns 0 and *out, or -errno with err filled in. */
int tls_server_ctx_new(const char *cert_path, const char *key_path, SSL_CTX **out, char *err, size_t errlen);

/* A TLS client context that verifies servers against the CA certificates in
 * ca_path (PEM), or the system's store when ca_path is NULL. Optional
 * cert_path/key_path give a client certificate. 0 or -errno with err. */
int tls_client_ctx_new(const char *ca_path, const char *cert_path, const char *key_path, SSL_CTX **out,
		       char *err, size_t errlen);

/* Prepare a client connection to host (a DNS name or an IP literal, with or
 * without [] for IPv6): SNI for names, and the certificate must name that
 * host (DNS) or address (IP). 0 or -EINVAL. */
int tls_client_set_host(SSL *ssl, const char *host);

/* Why a handshake failed, as text: the certificate check's verdict when the
 * peer's certificate was rejected, else OpenSSL's last error, else fallback. */
const char *tls_failure_reason(SSL *ssl, unsigned long ssl_error, const char *fallback);

/* Read a whole PEM file (at most 1 MiB) into a NUL-terminated string, after
 * checking it holds what is_key says (a private key, else certificates).
 * The caller frees *out (and should wipe a key). 0 or -errno with err. */
int tls_read_pem(const char *path, int is_key, char **out, char *err, size_t errlen);

#endif
