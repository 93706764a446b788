/* SPDX-License-Identifier: MIT */
/* settings.c — p2p-dird's configuration keys, defaults and checks (shared
 * by the daemon and the fuzz target of its REST API). */
#include "config.h"

#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/util.h>

#include "dird.h"
#include "log.h"

#define DEFAULT_DATABASE LOCALSTATEDIR "/lib/p2p/dird/dird.db"

#define KEY(name, type, field, min, max) { name, type, offsetof(struct dird_settings, field), min, max }
const struct conf_key dird_keys[] = {
	KEY("listen", CONF_STRING, listen, 0, 0),
	KEY("database", CONF_STRING, database, 0, 0),
	KEY("database_connections", CONF_INT, database_connections, 1, 256),
	KEY("workers", CONF_INT, workers, 0, 64),
	KEY("log_level", CONF_STRING, log_level, 0, 0),
	KEY("registration", CONF_BOOL, registration, 0, 0),
	KEY("ttl", CONF_INT, ttl, 5, 86400),
	KEY("session_lifetime", CONF_INT, session_lifetime, 60, 365LL * 86400),
	KEY("ticket_lifetime", CONF_INT, ticket_lifetime, 5, 86400),
	KEY("max_body", CONF_INT, max_body, 1024, 256LL << 20),
	KEY("max_files", CONF_INT, max_files, 1, 10000000),
	KEY("max_headers", CONF_INT, max_headers, 1024, 1 << 20),
	KEY("max_connections", CONF_INT, max_connections, 1, 100000),
	KEY("timeout", CONF_INT, timeout, 1, 3600),
	KEY("login_burst", CONF_INT, login_burst, 1, 10000),
	KEY("login_interval", CONF_INT, login_interval, 1, 3600),
	KEY("register_burst", CONF_INT, register_burst, 1, 1000000),
	KEY("register_interval", CONF_INT, register_interval, 1, 86400),
	KEY("trusted_proxies", CONF_STRLIST, trusted_proxies, 0, 0),
	KEY("proxy_protocol", CONF_BOOL, proxy_protocol, 0, 0),
	KEY("sweep_interval", CONF_INT, sweep_interval, 1, 3600),
	KEY("max_staleness", CONF_INT, max_staleness, 1, 60),
	KEY("tls_certificate", CONF_STRING, tls_certificate, 0, 0),
	KEY("tls_key", CONF_STRING, tls_key, 0, 0),
	{ NULL, 0, 0, 0, 0 },
};

void dird_settings_defaults(struct dird_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->listen = strdup("127.0.0.1:6970");
	s->database = strdup(DEFAULT_DATABASE);
	s->database_connections = 4;
	s->workers = 4;
	s->log_level = strdup("info");
	s->registration = true;
	s->ttl = 90;
	s->session_lifetime = 86400;
	s->ticket_lifetime = 60;
	s->max_body = 8 << 20;
	s->max_files = 100000;
	s->max_headers = 16384;
	s->max_connections = 1024;
	s->timeout = 30;
	s->login_burst = 10;
	s->login_interval = 6;
	s->register_burst = 100;
	s->register_interval = 36;
	s->sweep_interval = 60;
	s->max_staleness = 5;
}

int dird_settings_check(const struct dird_settings *s, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	if (!s->listen || evutil_parse_sockaddr_port(s->listen, (struct sockaddr *)&ss, &len) < 0 ||
	    (ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
				     : ((struct sockaddr_in6 *)&ss)->sin6_port) == 0) {
		snprintf(err, errlen, "listen: \"%s\" is not ADDR:PORT (e.g. 127.0.0.1:6970 or [::1]:6970)",
			 s->listen ? s->listen : "");
		return -EINVAL;
	}
	if (!s->database || !*s->database) {
		snprintf(err, errlen, "database: must name an SQLite file or a postgresql:// URI");
		return -EINVAL;
	}
	if (!s->log_level || log_level_from_name(s->log_level) < 0) {
		snprintf(err, errlen, "log_level: \"%s\" is not one of err, warning, notice, info, debug",
			 s->log_level ? s->log_level : "");
		return -EINVAL;
	}
	for (size_t i = 0; i < s->trusted_proxies.n; i++) {
		struct dird_cidr c;

		if (!dird_cidr_parse(s->trusted_proxies.v[i], &c)) {
			snprintf(err, errlen, "trusted_proxies: \"%s\" is not an address or ADDR/BITS block",
				 s->trusted_proxies.v[i]);
			return -EINVAL;
		}
	}
	if (s->proxy_protocol && !s->trusted_proxies.n) {
		snprintf(err, errlen, "proxy_protocol: list the proxies that send it in trusted_proxies");
		return -EINVAL;
	}
	if (s->proxy_protocol && s->tls_certificate) {
		snprintf(err, errlen, "proxy_protocol: not supported with tls_certificate; terminate TLS at the proxy");
		return -EINVAL;
	}
	/* The files themselves are read by main.c (tls_server_ctx_new), not here:
	 * this file is also built into the REST fuzz target, which has no libssl. */
	if (!s->tls_certificate != !s->tls_key) {
		snprintf(err, errlen, "%s: set tls_certificate and tls_key together (PEM files) to serve HTTPS",
			 s->tls_certificate ? "tls_key" : "tls_certificate");
		return -EINVAL;
	}
	return 0;
}


/* addr as 16 bytes, IPv4 mapped into IPv6 (::ffff:a.b.c.d). */
static bool addr_bytes(const char *s, unsigned char out[16])
{
	struct in_addr a4;

	if (inet_pton(AF_INET6, s, out) == 1)
		return true;
	if (inet_pton(AF_INET, s, &a4) != 1)
		return false;
	memset(out, 0, 10);
	out[10] = out[11] = 0xff;
	memcpy(out + 12, &a4, 4);
	return true;
}

bool dird_cidr_parse(const char *s, struct dird_cidr *out)
{
	const char *slash = strchr(s, '/');
	char addr[INET6_ADDRSTRLEN];
	bool v4;
	long bits;
	char *end;

	if ((size_t)(slash ? slash - s : (ptrdiff_t)strlen(s)) >= sizeof(addr))
		return false;
	snprintf(addr, sizeof(addr), "%.*s", (int)(slash ? slash - s : (ptrdiff_t)strlen(s)), s);
	if (!addr_bytes(addr, out->addr))
		return false;
	v4 = strchr(addr, ':') == NULL;
	out->bits = 128;
	if (slash) {
		if (slash[1] < '0' || slash[1] > '9')
			return false;
		errno = 0;
		bits = strtol(slash + 1, &end, 10);
		if (errno || *end || bits > (v4 ? 32 : 128))
			return false;
		out->bits = (int)bits + (v4 ? 96 : 0);
	}
	return true;
}

bool dird_cidr_match(const struct dird_cidr *v, size_t n, const char *addr)
{
	unsigned char a[16];

	if (!n || !addr_bytes(addr, a))
		return false;
	for (size_t i = 0; i < n; i++) {
		int full = v[i].bits / 8, rest = v[i].bits % 8;

		if (memcmp(a, v[i].addr, (size_t)full) != 0)
			continue;
		if (rest && ((a[full] ^ v[i].addr[full]) & (0xff << (8 - rest))))
			continue;
		return true;
	}
	return false;
}
