/* SPDX-License-Identifier: MIT */
/* Fuzz target: p2p-dird's REST API end to end — raw bytes as an HTTP
 * request to the real evhttp server and dispatch (api.c) over loopback,
 * with an in-memory database holding one user and one session. The text
 * TOKEN in the input is replaced by that session's token and TICKET by a
 * valid ticket, so the fuzzer reaches the authenticated handlers. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/http.h>

#include "crypto.h"
#include "dird.h"
#include "log.h"

static struct dird d;
static struct sockaddr_in addr;
static char token[SHA256_HEX_LEN + 1], ticket[SHA256_HEX_LEN + 1];

static int setup(void)
{
	struct evhttp_bound_socket *bound;
	socklen_t len = sizeof(addr);
	log_set_level(LOG_CRIT);
	dird_settings_defaults(&d.set);
	d.set.login_burst = 10000;
	d.base = event_base_new();
	if (!d.base || store_open(":memory:", &d.store) < 0 || api_init(&d) < 0)
		return -1;
	bound = evhttp_bind_socket_with_handle(d.http, "127.0.0.1", 0);
	if (!bound || getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&addr, &len) < 0)
		return -1;
	crypto_token(token);
	crypto_token(ticket);
	return 0;
}

/* Before each input: one user with a session, indexed, and a ticket for its
 * own file, whatever the previous input did (logout, re-index, ...). */
static void reset_state(void)
{
	static const struct store_file f = { "file1.txt", 3, "" };
	char th[SHA256_HEX_LEN + 1];

	store_user_create(d.store, "fuzz", "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7", 0);
	crypto_sha256_hex(token, SHA256_HEX_LEN, th);
	store_session_create(d.store, "fuzz", th, INT64_MAX / 2);
	store_index(d.store, "fuzz", "127.0.0.1", 50001, "", &f, 1, INT64_MAX / 4);
	crypto_sha256_hex(ticket, SHA256_HEX_LEN, th);
	store_ticket_create(d.store, th, "fuzz", "fuzz", "file1.txt", INT64_MAX / 2);
}

/* Replace every "TOKEN"/"TICKET" with the real value. */
static uint8_t *substitute(const uint8_t *data, size_t size, size_t *out_len)
{
	uint8_t *out = malloc(size * 13 + 1);
	size_t j = 0;

	if (!out)
		abort();
	for (size_t i = 0; i < size;) {
		if (size - i >= 6 && memcmp(data + i, "TICKET", 6) == 0) {
			memcpy(out + j, ticket, SHA256_HEX_LEN);
			j += SHA256_HEX_LEN;
			i += 6;
		} else if (size - i >= 5 && memcmp(data + i, "TOKEN", 5) == 0) {
			memcpy(out + j, token, SHA256_HEX_LEN);
			j += SHA256_HEX_LEN;
			i += 5;
		} else {
			out[j++] = data[i++];
		}
	}
	*out_len = j;
	return out;
}

struct client {
	int fd;
	bool done;
};

static void on_client(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	uint8_t buf[65536];
	ssize_t n;

	if (what & EV_TIMEOUT) {
		c->done = true;
		return;
	}
	while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
		if (getenv("FUZZ_REST_DEBUG")) /* show the answers when writing a corpus */
			fwrite(buf, 1, (size_t)n, stderr);
	if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
		c->done = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	struct timeval limit = { 2, 0 };
	struct client c = { 0 };
	struct event *ev;
	uint8_t *req;
	size_t len, sent = 0;

	if (!ready) {
		if (setup() < 0)
			abort();
		ready = true;
	}
	reset_state();
	req = substitute(data, size, &len);
	c.fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c.fd < 0 || connect(c.fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		if (c.fd >= 0)
			close(c.fd);
		free(req);
		return 0;
	}
	/* Loopback socket buffers hold far more than an input (libFuzzer's
	 * -max_len), so a blocking send completes before the server reads. */
	while (sent < len) {
		ssize_t n = send(c.fd, req + sent, len - sent, MSG_NOSIGNAL);

		if (n <= 0)
			break;
		sent += (size_t)n;
	}
	shutdown(c.fd, SHUT_WR);
	evutil_make_socket_nonblocking(c.fd);
	ev = event_new(d.base, c.fd, EV_READ | EV_PERSIST, on_client, &c);
	event_add(ev, &limit);
	while (!c.done)
		event_base_loop(d.base, EVLOOP_ONCE);
	event_free(ev);
	close(c.fd);
	/* Let the server notice the close and free the connection. */
	for (int i = 0; i < 3; i++)
		event_base_loop(d.base, EVLOOP_NONBLOCK);
	free(req);
	return 0;
}
