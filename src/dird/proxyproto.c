/* SPDX-License-Identifier: MIT */
/* proxyproto.c — the PROXY protocol (haproxy's, version 1 text and
 * version 2 binary) in front of p2p-dird's HTTP, so that per-address limits
 * behind a TCP balancer see the client.
 *
 * With proxy_protocol on, evhttp gets each connection through a filtering
 * bufferevent (bufferevent_filter_new) whose input filter first reads the
 * header, records the client's address and drops it; the rest of the
 * stream passes through untouched. A connection that is not from one of
 * trusted_proxies, or whose header is malformed, is closed. api.c asks
 * proxyproto_client() for a request's client by its bufferevent.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "dird.h"
#include "log.h"

#define V1_MAX 107          /* the longest version 1 line, CRLF included */
#define V2_MAX_TLVS 512     /* bytes of TLVs after the addresses we accept */

static const unsigned char v2_sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

struct proxyproto_conn {
	struct dird *d;
	struct bufferevent *bev, *under;
	bool done;               /* header read */
	char client[INET6_ADDRSTRLEN];
};

/* The socket's peer as text into out; false if unknown. */
static bool socket_peer(struct bufferevent *under, char *out, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	evutil_socket_t fd = bufferevent_getfd(under);

	if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
		return false;
	if (ss.ss_family == AF_INET)
		return inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)len) != NULL;
	if (ss.ss_family == AF_INET6)
		return inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)len) != NULL;
	return false;
}

/* "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" or "PROXY UNKNOWN ...\r\n".
 * 1: need more, 0: done, -1: malformed. */
static int parse_v1(struct proxyproto_conn *pc, struct evbuffer *src)
{
	char line[V1_MAX + 1], *save = NULL, *proto, *addr;
	unsigned char buf[sizeof(struct in6_addr)];
	struct evbuffer_ptr eol;
	size_t n;

	eol = evbuffer_search(src, "\r\n", 2, NULL);
	if (eol.pos < 0)
		return evbuffer_get_length(src) >= V1_MAX ? -1 : 1;
	n = (size_t)eol.pos;
	if (n + 2 > V1_MAX)
		return -1;
	evbuffer_remove(src, line, n + 2);
	line[n] = '\0';
	if (strncmp(line, "PROXY ", 6) != 0)
		return -1;
	proto = strtok_r(line + 6, " ", &save);
	if (!proto)
		return -1;
	if (strcmp(proto, "UNKNOWN") == 0)
		return 0; /* the proxy's own connection: keep its address */
	addr = strtok_r(NULL, " ", &save);
	if (!addr || !(strcmp(proto, "TCP4") == 0 ? inet_pton(AF_INET, addr, buf) == 1
			: strcmp(proto, "TCP6") == 0 && inet_pton(AF_INET6, addr, buf) == 1))
		return -1;
	snprintf(pc->client, sizeof(pc->client), "%s", addr);
	return 0;
}

/* 12-byte signature, version/command, family, length, addresses. */
static int parse_v2(struct proxyproto_conn *pc, struct evbuffer *src)
{
	unsigned char h[16 + 36];
	size_t len;

	if (evbuffer_copyout(src, h, 16) < 16)
		return 1;
	len = (size_t)h[14] << 8 | h[15];
	if ((h[12] & 0xf0) != 0x20 || len > 36 + V2_MAX_TLVS)
		return -1;
	if (evbuffer_get_length(src) < 16 + len)
		return 1;
	evbuffer_copyout(src, h, 16 + (len < 36 ? len : 36));
	evbuffer_drain(src, 16 + len);
	if ((h[12] & 0x0f) == 0x0)
		return 0; /* LOCAL: the proxy's own connection (health checks) */
	if ((h[12] & 0x0f) != 0x1)
		return -1;
	switch (h[13] & 0xf0) {
	case 0x10: /* AF_INET */
		if (len < 12)
			return -1;
		inet_ntop(AF_INET, h + 16, pc->client, sizeof(pc->client));
		return 0;
	case 0x20: /* AF_INET6 */
		if (len < 36)
			return -1;
		inet_ntop(AF_INET6, h + 16, pc->client, sizeof(pc->client));
		return 0;
	default:   /* UNSPEC, UNIX: keep the proxy's address */
		return 0;
	}
}

/* libevent 2.1 does not act on BEV_ERROR from a filter: shut the socket
 * down, so that evhttp reads the end and closes the connection. */
static enum bufferevent_filter_result refuse(struct proxyproto_conn *pc)
{
	evutil_socket_t fd = bufferevent_getfd(pc->under);

	if (fd >= 0)
		shutdown(fd, SHUT_RDWR);
	return BEV_ERROR;
}

static enum bufferevent_filter_result input_filter(struct evbuffer *src, struct evbuffer *dst,
						  ev_ssize_t limit, enum bufferevent_flush_mode mode, void *ctx)
{
	struct proxyproto_conn *pc = ctx;
	unsigned char sig[12];
	size_t have;
	int r;

	(void)limit;
	(void)mode;
	if (!pc->done) {
		if (!pc->client[0]) {
			if (!socket_peer(pc->under, pc->client, sizeof(pc->client)) ||
			    !dird_cidr_match(pc->d->proxies, pc->d->nproxies, pc->client)) {
				log_notice("PROXY protocol: connection from %s, not one of trusted_proxies; closed",
					   pc->client[0] ? pc->client : "?");
				return refuse(pc);
			}
		}
		have = evbuffer_get_length(src);
		if (have > sizeof(sig))
			have = sizeof(sig);
		evbuffer_copyout(src, sig, have);
		if (have >= 6 && memcmp(sig, "PROXY ", 6) == 0)
			r = parse_v1(pc, src);
		else if (have == sizeof(sig) && memcmp(sig, v2_sig, sizeof(sig)) == 0)
			r = parse_v2(pc, src);
		else if (memcmp(sig, v2_sig, have) == 0 || memcmp(sig, "PROXY ", have < 6 ? have : 6) == 0)
			r = 1; /* a prefix of either */
		else
			r = -1;
		if (r > 0)
			return BEV_NEED_MORE;
		if (r < 0) {
			log_notice("PROXY protocol: no valid header from %s; closed", pc->client);
			return refuse(pc);
		}
		pc->done = true;
	}
	evbuffer_add_buffer(dst, src);
	return BEV_OK;
}

static void conn_free(void *ctx)
{
	struct proxyproto_conn *pc = ctx;

	if (ptrmap_get(&pc->d->pp, pc->bev) == pc)
		ptrmap_del(&pc->d->pp, pc->bev);
	free(pc);
}

struct bufferevent *proxyproto_bufferevent(struct event_base *base, struct dird *d)
{
	struct proxyproto_conn *pc = calloc(1, sizeof(*pc));

	if (!pc)
		return NULL;
	pc->d = d;
	pc->under = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!pc->under) {
		free(pc);
		return NULL;
	}
	pc->bev = bufferevent_filter_new(pc->under, input_filter, NULL, BEV_OPT_CLOSE_ON_FREE, conn_free, pc);
	if (!pc->bev) {
		bufferevent_free(pc->under);
		free(pc);
		return NULL;
	}
	if (ptrmap_put(&d->pp, pc->bev, pc) < 0) {
		bufferevent_free(pc->bev); /* frees pc (conn_free) */
		return NULL;
	}
	return pc->bev;
}

const char *proxyproto_client(struct dird *d, struct bufferevent *bev)
{
	struct proxyproto_conn *pc = ptrmap_get(&d->pp, bev);

	return pc && pc->done && pc->client[0] ? pc->client : NULL;
}
