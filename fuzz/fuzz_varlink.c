/* SPDX-License-Identifier: MIT */
/* Fuzz target: the varlink control-socket protocol (src/common/varlink.h).
 * The first byte picks what the rest is fed to:
 *
 *   0  a server's receive buffer: varlink_frame_find() splits it into
 *      messages, each parsed with varlink_call_parse() and routed with
 *      varlink_service_dispatch() as p2p-peerd does;
 *   1  the same with varlink_reply_parse(), as p2pctl does;
 *   2  the bytes a server sends to the blocking client: they go through a
 *      real UNIX socket into varlink_receive() until the peer hangs up.
 *
 * Invariants checked (abort on breach): a frame ends at the first NUL; a
 * parsed call or reply has a qualified name and an object as parameters,
 * and formatting it again gives a message that parses to the same thing;
 * a oneway call is never answered, any other answer parses as a reply. */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "varlink.h"
#include "varlink_service.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_frame(const uint8_t *buf, size_t len, int r, size_t msg_len)
{
	if (r == 1 && (msg_len >= len || buf[msg_len] != 0 || memchr(buf, 0, msg_len)))
		abort();
	if (r == 0 && (len > VARLINK_MESSAGE_MAX || (len && memchr(buf, 0, len))))
		abort();
	if (r < 0 && (r != -EMSGSIZE || len <= VARLINK_MESSAGE_MAX))
		abort();
}

/* A parsed call formats to a message that parses to the same call. */
static void roundtrip_call(const struct varlink_call *c)
{
	struct varlink_call again;
	enum varlink_fault fault;
	unsigned flags = (c->more ? VARLINK_CALL_MORE : 0) | (c->oneway ? VARLINK_CALL_ONEWAY : 0) |
			 (c->upgrade ? VARLINK_CALL_UPGRADE : 0);
	char *out;
	size_t len;
	int r;

	if (!c->method || !varlink_valid_qualified_name(c->method) ||
	    !json_object_is_type(c->parameters, json_type_object) || (c->more && c->oneway))
		abort();
	r = varlink_call_format(c->method, c->parameters, flags, &out, &len);
	if (r == -EMSGSIZE)
		return; /* re-escaping can grow a message past the limit */
	if (r < 0 || len == 0 || out[len - 1] != '\0')
		abort();
	if (varlink_call_parse(out, len - 1, &again, &fault) < 0 || strcmp(again.method, c->method) != 0 ||
	    again.more != c->more || again.oneway != c->oneway || again.upgrade != c->upgrade ||
	    !json_object_equal(again.parameters, c->parameters))
		abort();
	varlink_call_free(&again);
	free(out);
}

static void roundtrip_reply(const struct varlink_reply *rep)
{
	struct varlink_reply again;
	enum varlink_fault fault;
	char *out;
	size_t len;
	int r;

	if (!json_object_is_type(rep->parameters, json_type_object) ||
	    (rep->error && !varlink_valid_qualified_name(rep->error)))
		abort();
	if (rep->error)
		r = varlink_error_format(rep->error, rep->parameters, &out, &len);
	else
		r = varlink_reply_format(rep->parameters, rep->continues, &out, &len);
	if (r == -EMSGSIZE)
		return;
	if (r < 0 || len == 0 || out[len - 1] != '\0')
		abort();
	if (varlink_reply_parse(out, len - 1, &again, &fault) < 0 || !again.error != !rep->error ||
	    (rep->error && strcmp(again.error, rep->error) != 0) ||
	    (!rep->error && again.continues != rep->continues) ||
	    !json_object_equal(again.parameters, rep->parameters))
		abort();
	varlink_reply_free(&again);
	free(out);
}

/* What the server side does with a call: answer it here or run a method. */
static void dispatch_call(const struct varlink_call *c)
{
	static const struct varlink_interface ifaces[] = { { "io.p2p.Peer", VARLINK_IDL_IO_P2P_PEER } };
	static const struct varlink_service svc = {
		.vendor = "p2p", .product = "fuzz", .version = "0", .url = "https://example.invalid/",
		.interfaces = ifaces, .n_interfaces = 1,
	};
	bool known = !strcmp(c->method, "io.p2p.Peer.Status");
	struct varlink_reply rep;
	enum varlink_fault fault;
	char *out;
	size_t len;
	int r = varlink_service_dispatch(&svc, c, known ? 0 : VARLINK_METHOD_UNKNOWN, &out, &len);

	if (r < 0)
		return; /* ENOMEM */
	if ((r == 1 && (out || !known || c->upgrade)) || (r == 0 && !out != c->oneway))
		abort();
	if (out) {
		if (len == 0 || out[len - 1] != '\0' || varlink_reply_parse(out, len - 1, &rep, &fault) < 0)
			abort();
		varlink_reply_free(&rep);
		free(out);
	}
}

/* Split buf into messages the way a server drains its input buffer. */
static void feed_buffer(const uint8_t *buf, size_t len, bool calls)
{
	for (;;) {
		enum varlink_fault fault;
		size_t msg_len = 0;
		int r = varlink_frame_find(len ? buf : NULL, len, &msg_len);

		check_frame(buf, len, r, msg_len);
		if (r != 1)
			return;
		if (calls) {
			struct varlink_call c;

			r = varlink_call_parse((const char *)buf, msg_len, &c, &fault);
			if ((r == 0) != (fault == VARLINK_FAULT_NONE) || !varlink_fault_str(fault))
				abort();
			if (r == 0) {
				roundtrip_call(&c);
				dispatch_call(&c);
				varlink_call_free(&c);
			}
		} else {
			struct varlink_reply rep;

			r = varlink_reply_parse((const char *)buf, msg_len, &rep, &fault);
			if ((r == 0) != (fault == VARLINK_FAULT_NONE) || !varlink_fault_str(fault))
				abort();
			if (r == 0) {
				roundtrip_reply(&rep);
				varlink_reply_free(&rep);
			}
		}
		buf += msg_len + 1;
		len -= msg_len + 1;
	}
}

static char sock_dir[] = "/tmp/fuzz-varlink-XXXXXX";
static char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

static void remove_socket(void)
{
	unlink(sock_path);
	rmdir(sock_dir);
}

/* The client side: a listening socket made once, a connection per input. */
static void feed_client(const uint8_t *buf, size_t len)
{
	static int listener = -1;
	struct varlink_conn *conn;
	int server, r;

	if (listener < 0) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		if (!mkdtemp(sock_dir))
			abort();
		snprintf(sock_path, sizeof(sock_path), "%s/s", sock_dir);
		memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
		listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (listener < 0 || bind(listener, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    listen(listener, 4) < 0)
			abort();
		atexit(remove_socket);
	}
	if (varlink_connect(sock_path, 1000, &conn) < 0)
		abort();
	server = accept(listener, NULL, NULL);
	if (server < 0)
		abort();
	/* The whole input fits the socket buffer (inputs are at most 64 KiB
	 * and UNIX stream buffers hold more); then the server hangs up. */
	for (size_t off = 0; off < len;) {
		ssize_t n = write(server, buf + off, len - off);

		if (n <= 0)
			abort();
		off += (size_t)n;
	}
	close(server);
	for (;;) {
		struct varlink_reply rep;
		enum varlink_fault fault;

		r = varlink_receive(conn, 1000, &rep, &fault);
		if (r == 0) {
			roundtrip_reply(&rep);
			varlink_reply_free(&rep);
			continue;
		}
		/* A bad message is reported and the stream goes on after it;
		 * the end of the input shows as a hang-up, never as a timeout. */
		if (r == -EBADMSG || r == -EILSEQ)
			continue;
		if (r != -ECONNRESET && r != -EMSGSIZE)
			abort();
		break;
	}
	varlink_close(conn);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 3) {
	case 0:
		feed_buffer(data + 1, size - 1, true);
		break;
	case 1:
		feed_buffer(data + 1, size - 1, false);
		break;
	default:
		if (size - 1 <= 65536)
			feed_client(data + 1, size - 1);
		break;
	}
	return 0;
}
