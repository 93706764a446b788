/* dirclient.c — blocking calls to the directory's REST API over libevent's
 * HTTP client. Each call runs its own small event base, so the gRPC threads
 * and the main loop can all call it without sharing libevent state.
 *
 * An https:// directory is reached over TLS (libevent's OpenSSL
 * bufferevents) and its certificate must chain to directory_ca (or the
 * system's CAs) and name the URL's host: its DNS name, or its IP address. */
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "log.h"
#include "peerd.h"
#include "tls.h"

struct answer {
	int status;
	struct json_object *json;
};

static void on_done(struct evhttp_request *req, void *arg)
{
	struct answer *a = arg;
	struct evbuffer *in;
	size_t len;

	if (!req) {
		a->status = 0;
		return;
	}
	a->status = evhttp_request_get_response_code(req);
	in = evhttp_request_get_input_buffer(req);
	len = evbuffer_get_length(in);
	if (len > 0 && len < (64u << 20)) {
		struct json_tokener *tok = json_tokener_new();

		if (tok) {
			a->json = json_tokener_parse_ex(tok, (const char *)evbuffer_pullup(in, -1), (int)len);
			json_tokener_free(tok);
		}
	}
}

int dir_call(const char *base_url, const char *method, const char *path, const char *token,
	     struct json_object *body, struct json_object **reply, int timeout_s)
{
	struct evhttp_uri *uri = evhttp_uri_parse(base_url);
	struct event_base *base = NULL;
	struct evhttp_connection *conn = NULL;
	struct evhttp_request *req;
	struct bufferevent *bev = NULL;
	SSL *ssl = NULL;
	const char *scheme;
	bool https;
	struct answer a = { .status = 0 };
	struct evkeyvalq *h;
	const char *host;
	char auth[SHA256_HEX_LEN + 16], hostport[300];
	int port;

	if (reply)
		*reply = NULL;
	if (!uri || !(host = evhttp_uri_get_host(uri)) || !(scheme = evhttp_uri_get_scheme(uri))) {
		log_err("directory URL \"%s\" is not http[s]://HOST:PORT", base_url);
		goto out;
	}
	https = strcmp(scheme, "https") == 0;
	port = evhttp_uri_get_port(uri);
	if (port < 0)
		port = https ? 443 : 80;
	base = event_base_new();
	if (!base)
		goto out;
	if (https) {
		if (!peer_directory_tls() || !(ssl = SSL_new(peer_directory_tls())) ||
		    tls_client_set_host(ssl, host) < 0) {
			log_err("cannot set up TLS for the directory %s", base_url);
			SSL_free(ssl);
			ssl = NULL;
			goto out;
		}
		/* The bufferevent owns ssl from here; the connection owns bev. */
		bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
						     BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		if (!bev) {
			SSL_free(ssl);
			ssl = NULL;
			goto out;
		}
		conn = evhttp_connection_base_bufferevent_new(base, NULL, bev, host, (unsigned short)port);
		if (!conn) {
			bufferevent_free(bev);
			ssl = NULL;
			goto out;
		}
	} else {
		conn = evhttp_connection_base_new(base, NULL, host, (unsigned short)port);
		if (!conn)
			goto out;
	}
	evhttp_connection_set_timeout(conn, timeout_s);
	req = evhttp_request_new(on_done, &a);
	if (!req)
		goto out;
	h = evhttp_request_get_output_headers(req);
	snprintf(hostport, sizeof(hostport), "%s:%d", host, port);
	evhttp_add_header(h, "Host", hostport);
	evhttp_add_header(h, "Connection", "close");
	if (token && *token) {
		snprintf(auth, sizeof(auth), "Bearer %s", token);
		evhttp_add_header(h, "Authorization", auth);
	}
	if (body) {
		const char *text = json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN);

		evhttp_add_header(h, "Content-Type", "application/json");
		evbuffer_add(evhttp_request_get_output_buffer(req), text, strlen(text));
	}
	if (evhttp_make_request(conn, req, strcmp(method, "GET") ? EVHTTP_REQ_POST : EVHTTP_REQ_GET, path) < 0)
		goto out;
	{
		/* The connect has started. TLS sends headers and body as separate
		 * records; with Nagle the body waits for the server's delayed ACK
		 * (40 ms a POST, measured). */
		evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(conn));
		int one = 1;

		if (fd >= 0)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	event_base_dispatch(base);
	if (ssl && a.status == 0) {
		unsigned long e = bufferevent_get_openssl_error(bev);
		const char *why = tls_failure_reason(ssl, e, NULL);

		/* A refused or unreachable connection has no TLS reason: callers say so. */
		if (SSL_get_verify_result(ssl) != X509_V_OK)
			log_err("the directory %s presented a certificate that is refused: %s "
				"(check directory_ca and the host in the URL)", base_url, why);
		else if (why)
			log_err("TLS with the directory %s failed: %s", base_url, why);
		while (bufferevent_get_openssl_error(bev))
			;
	}
out:
	if (conn)
		evhttp_connection_free(conn);
	if (base)
		event_base_free(base);
	if (uri)
		evhttp_uri_free(uri);
	if (reply)
		*reply = a.json;
	else
		json_object_put(a.json);
	return a.status;
}
