/* SPDX-License-Identifier: MIT */
/* conn.c — p2p-dird's client connections: how many are open (accept pauses
 * at max_connections) and who is at the other end of each request: the
 * socket's peer, the address a PROXY protocol header gave (proxyproto.c),
 * or the client a trusted proxy named in X-Forwarded-For.
 *
 * libevent 2.1's evhttp has no connection limit and no hook when a
 * connection opens, so a connection is counted from its first request until
 * evhttp closes it (its close callback). Connections that never send a
 * request are bounded by the idle timeout instead. Both lookups per request
 * are O(1) (ptrmap.h), whatever the number of open connections.
 * Loop thread only.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "dird.h"
#include "log.h"

static void opened(struct dird *d)
{
	d->connections++;
	if (d->connections >= d->set.max_connections && d->listener && !d->listener_paused) {
		/* Stop accepting: new clients wait in the kernel's backlog
		 * instead of being refused. */
		evconnlistener_disable(d->listener);
		d->listener_paused = true;
		log_warn("connection limit (%lld) reached; pausing accept", d->set.max_connections);
	}
}

static void closed(struct evhttp_connection *evcon, void *arg)
{
	struct dird *d = arg;

	ptrmap_del(&d->conns, evcon);
	d->connections--;
	if (d->listener_paused && d->connections < d->set.max_connections && !d->stopping) {
		evconnlistener_enable(d->listener);
		d->listener_paused = false;
	}
}

static void track(struct dird *d, struct evhttp_connection *evcon)
{
	if (!evcon || ptrmap_get(&d->conns, evcon))
		return;
	if (ptrmap_put(&d->conns, evcon, evcon) < 0)
		return; /* uncounted, not refused */
	evhttp_connection_set_closecb(evcon, closed, d);
	opened(d);
}

/* The request came through a trusted proxy: the client is the right-most
 * address of X-Forwarded-For (all its lines, in order) that is not itself
 * a trusted proxy; the ones left of it were written by whoever sent the
 * request and prove nothing. addr is left alone (the proxy's address) when
 * there is no header or that entry is not an address. */
static void forwarded_client(struct dird *d, struct evhttp_request *req, char *addr, size_t len)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	struct evkeyval *kv;
	struct evbuffer *all = evbuffer_new();
	char *list, *end, *p, *e;
	unsigned char buf[sizeof(struct in6_addr)];

	if (!all)
		return;
	TAILQ_FOREACH(kv, h, next)
		if (strcasecmp(kv->key, "X-Forwarded-For") == 0)
			evbuffer_add_printf(all, "%s%s", evbuffer_get_length(all) ? "," : "", kv->value);
	evbuffer_add(all, "", 1);
	list = (char *)evbuffer_pullup(all, -1);
	for (end = list ? list + strlen(list) : NULL; end && end > list;) {
		for (p = end; p > list && p[-1] != ','; p--)
			;
		e = end;
		end = p > list ? p - 1 : list;
		while (*p == ' ' || *p == '\t')
			p++;
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		*e = '\0';
		if (inet_pton(AF_INET, p, buf) != 1 && inet_pton(AF_INET6, p, buf) != 1) {
			log_debug("X-Forwarded-For from %s: \"%.64s\" is not an address; using %s", addr, p, addr);
			break;
		}
		snprintf(addr, len, "%s", p);
		if (!dird_cidr_match(d->proxies, d->nproxies, p))
			break;
	}
	evbuffer_free(all);
}

void conn_request(struct dird *d, struct evhttp_request *req, char *addr, size_t len)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	char *peer = NULL;
	ev_uint16_t port;

	track(d, evcon);
	if (evcon)
		evhttp_connection_get_peer(evcon, &peer, &port);
	snprintf(addr, len, "%s", peer ? peer : "?");
	if (d->set.proxy_protocol && evcon) {
		const char *client = proxyproto_client(d, evhttp_connection_get_bufferevent(evcon));

		if (client)
			snprintf(addr, len, "%s", client);
	}
	if (d->nproxies && dird_cidr_match(d->proxies, d->nproxies, addr))
		forwarded_client(d, req, addr, len);
}
