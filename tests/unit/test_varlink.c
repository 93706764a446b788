/* SPDX-License-Identifier: MIT */
/* Unit tests for src/common/varlink.c: framing, strict parsing, formatting,
 * and the client over a socketpair-like UNIX socket. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "varlink.h"
#include "varlink_service.h"

static void test_frame_basic(void **state)
{
	size_t n = 99;

	assert_int_equal(varlink_frame_find("", 0, &n), 0);
	assert_int_equal(varlink_frame_find(NULL, 0, &n), 0);
	assert_int_equal(varlink_frame_find("{\"a\":1}", 7, &n), 0); /* no NUL yet */
	assert_int_equal(varlink_frame_find("{}\0", 3, &n), 1);
	assert_int_equal(n, 2);
	assert_int_equal(varlink_frame_find("\0", 1, &n), 1);
	assert_int_equal(n, 0);
}

/* Several messages in one buffer come out one by one, in order. */
static void test_frame_several(void **state)
{
	const char buf[] = "{\"parameters\":{}}\0{\"a\":1}\0{\"par";
	size_t len = sizeof(buf) - 1, off = 0, n;
	int count = 0;

	while (varlink_frame_find(buf + off, len - off, &n) == 1) {
		count++;
		if (count == 1)
			assert_int_equal(n, strlen("{\"parameters\":{}}"));
		if (count == 2)
			assert_memory_equal(buf + off, "{\"a\":1}", n);
		off += n + 1;
	}
	assert_int_equal(count, 2);
	assert_string_equal(buf + off, "{\"par"); /* the partial third waits */
}

/* A message split across reads is found only once its NUL arrives, whatever
 * the split. */
static void test_frame_split(void **state)
{
	const char msg[] = "{\"method\":\"io.p2p.Peer.Status\"}";
	size_t total = sizeof(msg); /* with the NUL */

	for (size_t cut = 0; cut < total; cut++) {
		size_t n;

		assert_int_equal(varlink_frame_find(msg, cut, &n), 0);
	}
	{
		size_t n;

		assert_int_equal(varlink_frame_find(msg, total, &n), 1);
		assert_int_equal(n, total - 1);
	}
}

static void test_frame_oversize(void **state)
{
	size_t big = VARLINK_MESSAGE_MAX + 2, n;
	char *buf = malloc(big);

	assert_non_null(buf);
	memset(buf, ' ', big);
	/* exactly the limit without NUL: still waiting */
	assert_int_equal(varlink_frame_find(buf, VARLINK_MESSAGE_MAX, &n), 0);
	/* one byte over and no NUL: too large */
	assert_int_equal(varlink_frame_find(buf, VARLINK_MESSAGE_MAX + 1, &n), -EMSGSIZE);
	/* the largest allowed message with its NUL is fine */
	buf[VARLINK_MESSAGE_MAX] = '\0';
	assert_int_equal(varlink_frame_find(buf, big, &n), 1);
	assert_int_equal(n, VARLINK_MESSAGE_MAX);
	/* a NUL after the limit does not count */
	buf[VARLINK_MESSAGE_MAX] = ' ';
	buf[VARLINK_MESSAGE_MAX + 1] = '\0';
	assert_int_equal(varlink_frame_find(buf, big, &n), -EMSGSIZE);
	free(buf);
}

static int call(const char *s, struct varlink_call *c, enum varlink_fault *f)
{
	return varlink_call_parse(s, strlen(s), c, f);
}

static void test_call_good(void **state)
{
	struct varlink_call c;
	enum varlink_fault f;
	struct json_object *u;

	assert_int_equal(call("{\"method\":\"io.p2p.Peer.Login\",\"parameters\":{\"username\":\"bob\"}}", &c, &f), 0);
	assert_int_equal(f, VARLINK_FAULT_NONE);
	assert_string_equal(c.method, "io.p2p.Peer.Login");
	assert_true(json_object_object_get_ex(c.parameters, "username", &u));
	assert_string_equal(json_object_get_string(u), "bob");
	assert_false(c.more);
	assert_false(c.oneway);
	varlink_call_free(&c);

	/* no parameters reads as {}; more; unknown keys ignored; whitespace */
	assert_int_equal(call(" {\"method\":\"io.p2p.Peer.Download\",\"more\":true,\"x\":[1]}\n", &c, &f), 0);
	assert_true(c.more);
	assert_non_null(c.parameters);
	assert_int_equal(json_object_object_length(c.parameters), 0);
	varlink_call_free(&c);

	assert_int_equal(call("{\"method\":\"org.varlink.service.GetInfo\",\"oneway\":true,\"more\":false}", &c, &f), 0);
	assert_true(c.oneway);
	assert_false(c.upgrade);
	varlink_call_free(&c);

	/* "parameters": null (what Go's library sends) reads as {}; upgrade */
	assert_int_equal(call("{\"method\":\"io.p2p.Peer.Status\",\"parameters\":null,\"upgrade\":true}", &c, &f), 0);
	assert_true(json_object_is_type(c.parameters, json_type_object));
	assert_int_equal(json_object_object_length(c.parameters), 0);
	assert_true(c.upgrade);
	varlink_call_free(&c);
	varlink_call_free(NULL);
}

static void expect_call_fault(const char *s, int err, enum varlink_fault want)
{
	struct varlink_call c;
	enum varlink_fault f;

	assert_int_equal(call(s, &c, &f), err);
	assert_int_equal(f, want);
	assert_null(c.root);
	assert_null(c.method);
}

static void test_call_bad(void **state)
{
	expect_call_fault("", -EBADMSG, VARLINK_FAULT_JSON);
	expect_call_fault("garbage", -EBADMSG, VARLINK_FAULT_JSON);
	expect_call_fault("{\"method\":", -EBADMSG, VARLINK_FAULT_JSON);
	expect_call_fault("{\"method\":\"a.B\"} {}", -EBADMSG, VARLINK_FAULT_JSON);
	expect_call_fault("{'method':'a.B'}", -EBADMSG, VARLINK_FAULT_JSON);
	expect_call_fault("[1,2]", -EBADMSG, VARLINK_FAULT_NOT_OBJECT);
	expect_call_fault("\"io.p2p.Peer.Login\"", -EBADMSG, VARLINK_FAULT_NOT_OBJECT);
	expect_call_fault("42", -EBADMSG, VARLINK_FAULT_NOT_OBJECT);
	expect_call_fault("{}", -EBADMSG, VARLINK_FAULT_METHOD_MISSING);
	expect_call_fault("{\"parameters\":{}}", -EBADMSG, VARLINK_FAULT_METHOD_MISSING);
	expect_call_fault("{\"method\":7}", -EBADMSG, VARLINK_FAULT_METHOD_TYPE);
	expect_call_fault("{\"method\":null}", -EBADMSG, VARLINK_FAULT_METHOD_TYPE);
	expect_call_fault("{\"method\":\"Login\"}", -EBADMSG, VARLINK_FAULT_METHOD_NAME);
	expect_call_fault("{\"method\":\"io.p2p.Peer.login\"}", -EBADMSG, VARLINK_FAULT_METHOD_NAME);
	expect_call_fault("{\"method\":\"io.p2p.Peer.\"}", -EBADMSG, VARLINK_FAULT_METHOD_NAME);
	expect_call_fault("{\"method\":\".Login\"}", -EBADMSG, VARLINK_FAULT_METHOD_NAME);
	expect_call_fault("{\"method\":\"io..Peer.Login\"}", -EBADMSG, VARLINK_FAULT_METHOD_NAME);
	expect_call_fault("{\"method\":\"io.p2p.Peer.Log in\"}", -EBADMSG, VARLINK_FAULT_METHOD_NAME);
	expect_call_fault("{\"method\":\"io.p2p\\u0000.Peer.Login\"}", -EBADMSG, VARLINK_FAULT_METHOD_NAME);
	expect_call_fault("{\"method\":\"io.p2p.Peer.Login\",\"parameters\":[]}", -EBADMSG, VARLINK_FAULT_PARAMETERS);
	expect_call_fault("{\"method\":\"io.p2p.Peer.Login\",\"parameters\":\"x\"}", -EBADMSG, VARLINK_FAULT_PARAMETERS);
	expect_call_fault("{\"method\":\"io.p2p.Peer.Login\",\"more\":1}", -EBADMSG, VARLINK_FAULT_MORE);
	expect_call_fault("{\"method\":\"io.p2p.Peer.Login\",\"more\":\"true\"}", -EBADMSG, VARLINK_FAULT_MORE);
	expect_call_fault("{\"method\":\"io.p2p.Peer.Login\",\"oneway\":null}", -EBADMSG, VARLINK_FAULT_ONEWAY);
	expect_call_fault("{\"method\":\"io.p2p.Peer.Login\",\"upgrade\":\"yes\"}", -EBADMSG, VARLINK_FAULT_UPGRADE);
	expect_call_fault("{\"method\":\"io.p2p.Peer.Login\",\"more\":true,\"oneway\":true}", -EBADMSG,
			  VARLINK_FAULT_MORE_ONEWAY);
	/* invalid UTF-8: a lone continuation byte, an overlong '/', a surrogate */
	expect_call_fault("{\"method\":\"a.B\",\"parameters\":{\"x\":\"\x80\"}}", -EILSEQ, VARLINK_FAULT_UTF8);
	expect_call_fault("{\"method\":\"a.B\",\"parameters\":{\"x\":\"\xc0\xaf\"}}", -EILSEQ, VARLINK_FAULT_UTF8);
	expect_call_fault("{\"method\":\"a.B\",\"parameters\":{\"x\":\"\xed\xa0\x80\"}}", -EILSEQ, VARLINK_FAULT_UTF8);
}

static void test_call_nul_and_size(void **state)
{
	struct varlink_call c;
	enum varlink_fault f;
	const char with_nul[] = "{\"method\":\"a.B\"}\0{}";
	char *big;
	size_t n = VARLINK_MESSAGE_MAX + 1;

	assert_int_equal(varlink_call_parse(with_nul, sizeof(with_nul) - 1, &c, &f), -EBADMSG);
	assert_int_equal(f, VARLINK_FAULT_JSON);
	/* not NUL-terminated input is fine: only len bytes are read */
	assert_int_equal(varlink_call_parse(with_nul, strlen(with_nul), &c, &f), 0);
	varlink_call_free(&c);

	big = malloc(n);
	assert_non_null(big);
	memset(big, ' ', n);
	assert_int_equal(varlink_call_parse(big, n, &c, &f), -EMSGSIZE);
	assert_int_equal(f, VARLINK_FAULT_TOO_LARGE);
	free(big);

	/* deep nesting is refused, not a stack overflow */
	{
		char deep[2000];
		size_t i, k = 0;

		k += (size_t)sprintf(deep, "{\"method\":\"a.B\",\"parameters\":{\"x\":");
		for (i = 0; i < 500; i++)
			deep[k++] = '[';
		for (i = 0; i < 500; i++)
			deep[k++] = ']';
		deep[k++] = '}';
		deep[k++] = '}';
		assert_int_equal(varlink_call_parse(deep, k, &c, &f), -EBADMSG);
		assert_int_equal(f, VARLINK_FAULT_JSON);
	}
}

static int reply(const char *s, struct varlink_reply *r, enum varlink_fault *f)
{
	return varlink_reply_parse(s, strlen(s), r, f);
}

static void test_reply(void **state)
{
	struct varlink_reply r;
	enum varlink_fault f;

	assert_int_equal(reply("{\"parameters\":{\"indexed\":3}}", &r, &f), 0);
	assert_null(r.error);
	assert_false(r.continues);
	assert_int_equal(json_object_object_length(r.parameters), 1);
	varlink_reply_free(&r);

	assert_int_equal(reply("{\"continues\":true,\"parameters\":{}}", &r, &f), 0);
	assert_true(r.continues);
	varlink_reply_free(&r);

	assert_int_equal(reply("{\"error\":\"io.p2p.Peer.NotLoggedIn\"}", &r, &f), 0);
	assert_string_equal(r.error, "io.p2p.Peer.NotLoggedIn");
	assert_non_null(r.parameters);
	varlink_reply_free(&r);

	assert_int_equal(reply("{\"error\":5}", &r, &f), -EBADMSG);
	assert_int_equal(f, VARLINK_FAULT_ERROR_TYPE);
	assert_int_equal(reply("{\"error\":\"oops\"}", &r, &f), -EBADMSG);
	assert_int_equal(f, VARLINK_FAULT_ERROR_NAME);
	assert_int_equal(reply("{\"continues\":\"yes\"}", &r, &f), -EBADMSG);
	assert_int_equal(f, VARLINK_FAULT_CONTINUES);
	assert_int_equal(reply("{\"parameters\":1}", &r, &f), -EBADMSG);
	assert_int_equal(f, VARLINK_FAULT_PARAMETERS);
	assert_int_equal(reply("[]", &r, &f), -EBADMSG);
	assert_int_equal(f, VARLINK_FAULT_NOT_OBJECT);
}

static void test_format(void **state)
{
	struct json_object *p = json_object_new_object();
	struct varlink_call c;
	struct varlink_reply r;
	enum varlink_fault f;
	char *out;
	size_t len;

	json_object_object_add(p, "path", json_object_new_string("/a/b"));
	assert_int_equal(varlink_call_format("io.p2p.Peer.Download", p, VARLINK_CALL_MORE, &out, &len), 0);
	assert_int_equal(out[len - 1], '\0');
	assert_int_equal(strlen(out), len - 1);
	assert_null(strstr(out, "\\/")); /* no escaped slashes */
	assert_int_equal(varlink_call_parse(out, len - 1, &c, &f), 0);
	assert_string_equal(c.method, "io.p2p.Peer.Download");
	assert_true(c.more);
	varlink_call_free(&c);
	free(out);

	assert_int_equal(varlink_call_format("Download", p, 0, &out, &len), -EINVAL);
	assert_null(out);
	assert_int_equal(varlink_call_format("a.B", p, VARLINK_CALL_MORE | VARLINK_CALL_ONEWAY, &out, &len), -EINVAL);

	assert_int_equal(varlink_reply_format(p, true, &out, &len), 0);
	assert_int_equal(varlink_reply_parse(out, len - 1, &r, &f), 0);
	assert_true(r.continues);
	assert_null(r.error);
	varlink_reply_free(&r);
	free(out);

	assert_int_equal(varlink_reply_format(NULL, false, &out, &len), 0);
	assert_string_equal(out, "{\"parameters\":{}}");
	free(out);

	assert_int_equal(varlink_error_format("io.p2p.Peer.NotFound", p, &out, &len), 0);
	assert_int_equal(varlink_reply_parse(out, len - 1, &r, &f), 0);
	assert_string_equal(r.error, "io.p2p.Peer.NotFound");
	varlink_reply_free(&r);
	free(out);
	assert_int_equal(varlink_error_format("not a name", NULL, &out, &len), -EINVAL);

	/* a reply that would exceed the limit is refused */
	{
		size_t n = VARLINK_MESSAGE_MAX;
		char *s = malloc(n + 1);

		memset(s, 'x', n);
		s[n] = '\0';
		json_object_object_add(p, "big", json_object_new_string(s));
		assert_int_equal(varlink_reply_format(p, false, &out, &len), -EMSGSIZE);
		assert_null(out);
		free(s);
	}
	json_object_put(p);
}

/* The client against a listening socket driven by the test itself. */
static void test_client(void **state)
{
	char dir[] = "/tmp/varlink-test-XXXXXX", path[128];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct varlink_conn *conn;
	struct varlink_reply r;
	enum varlink_fault f;
	char buf[256];
	int lfd, sfd;
	ssize_t n;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/s.sock", dir);

	assert_int_equal(varlink_connect(path, 1000, &conn), -ENOENT);

	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	strcpy(sa.sun_path, path);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(varlink_connect(path, 1000, &conn), -ECONNREFUSED);
	assert_int_equal(listen(lfd, 4), 0);
	assert_int_equal(varlink_connect(path, 1000, &conn), 0);
	sfd = accept(lfd, NULL, NULL);
	assert_true(sfd >= 0);

	assert_int_equal(varlink_send_call(conn, "io.p2p.Peer.Status", NULL, 0, 1000), 0);
	n = read(sfd, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(buf[n - 1], '\0');
	assert_string_equal(buf, "{\"method\":\"io.p2p.Peer.Status\",\"parameters\":{}}");

	/* nothing sent yet: times out */
	assert_int_equal(varlink_receive(conn, 50, &r, &f), -ETIMEDOUT);

	/* two replies and half of a third in one write, then the rest */
	{
		const char two[] = "{\"continues\":true,\"parameters\":{\"n\":1}}\0"
				   "{\"parameters\":{\"n\":2}}\0{\"error\":\"io.p2p.Pe";
		const char rest[] = "er.NotFound\",\"parameters\":{}}";

		assert_int_equal(write(sfd, two, sizeof(two) - 1), (ssize_t)sizeof(two) - 1);
		assert_int_equal(varlink_receive(conn, 1000, &r, &f), 0);
		assert_true(r.continues);
		varlink_reply_free(&r);
		assert_int_equal(varlink_receive(conn, 1000, &r, &f), 0);
		assert_false(r.continues);
		varlink_reply_free(&r);
		assert_int_equal(varlink_receive(conn, 50, &r, &f), -ETIMEDOUT);
		assert_int_equal(write(sfd, rest, sizeof(rest)), (ssize_t)sizeof(rest));
		assert_int_equal(varlink_receive(conn, 1000, &r, &f), 0);
		assert_string_equal(r.error, "io.p2p.Peer.NotFound");
		varlink_reply_free(&r);
	}

	/* garbage is a protocol fault, then the connection is still usable */
	assert_int_equal(write(sfd, "nonsense", 9), 9);
	assert_int_equal(varlink_receive(conn, 1000, &r, &f), -EBADMSG);
	assert_int_equal(f, VARLINK_FAULT_JSON);

	/* an oversize message without NUL */
	{
		char *big = malloc(VARLINK_MESSAGE_MAX + 1);
		size_t off = 0;

		memset(big, ' ', VARLINK_MESSAGE_MAX + 1);
		/* write from a child so the test does not block on a full socket */
		if (fork() == 0) {
			while (off < VARLINK_MESSAGE_MAX + 1) {
				n = write(sfd, big + off, VARLINK_MESSAGE_MAX + 1 - off);
				if (n <= 0)
					break;
				off += (size_t)n;
			}
			free(big);
			_exit(0);
		}
		assert_int_equal(varlink_receive(conn, 5000, &r, &f), -EMSGSIZE);
		assert_int_equal(f, VARLINK_FAULT_TOO_LARGE);
		free(big);
		while (wait(NULL) > 0)
			;
	}
	varlink_close(conn);

	/* the server closing is reported as such */
	assert_int_equal(varlink_connect(path, 1000, &conn), 0);
	close(sfd);
	sfd = accept(lfd, NULL, NULL);
	close(sfd);
	assert_int_equal(varlink_receive(conn, 1000, &r, &f), -ECONNRESET);
	varlink_close(conn);
	varlink_close(NULL);

	close(lfd);
	unlink(path);
	rmdir(dir);

	{
		char longpath[200];

		memset(longpath, 'a', sizeof(longpath) - 1);
		longpath[sizeof(longpath) - 1] = '\0';
		assert_int_equal(varlink_connect(longpath, 100, &conn), -ENAMETOOLONG);
	}
}

static void test_names_and_faults(void **state)
{
	assert_true(varlink_valid_qualified_name("io.p2p.Peer.Login"));
	assert_true(varlink_valid_qualified_name("org.varlink.service.MethodNotFound"));
	assert_true(varlink_valid_qualified_name("a-b.C"));
	assert_false(varlink_valid_qualified_name("a-.C"));
	assert_false(varlink_valid_qualified_name("-a.C"));
	assert_false(varlink_valid_qualified_name("1a.C"));
	assert_false(varlink_valid_qualified_name("a.C-d"));
	assert_false(varlink_valid_qualified_name("a."));
	assert_false(varlink_valid_qualified_name(NULL));
	assert_false(varlink_valid_qualified_name(""));
	for (int i = VARLINK_FAULT_NONE; i <= VARLINK_FAULT_ERROR_NAME; i++)
		for (int j = VARLINK_FAULT_NONE; j < i; j++)
			assert_string_not_equal(varlink_fault_str(i), varlink_fault_str(j));
}

/* ---- varlink_service ---------------------------------------------------- */

static const struct varlink_interface test_ifaces[] = {
	{ "io.p2p.Peer", "# x\ninterface io.p2p.Peer\nmethod Status() -> ()\n  method  Planned (a: int) -> ()\n"
			 "# method Comment() -> ()\nerror Status ()\n" },
};
static const struct varlink_service test_service = {
	.vendor = "v", .product = "p", .version = "1.2", .url = "https://example.invalid/",
	.interfaces = test_ifaces, .n_interfaces = 1,
};

/* Dispatch msg; returns what varlink_service_dispatch() did and, in *reply,
 * the parsed answer (root NULL when none). */
static int dispatch(const char *msg, int flags, struct varlink_reply *reply)
{
	struct varlink_call c;
	enum varlink_fault f;
	char *out;
	size_t len;
	int r;

	memset(reply, 0, sizeof(*reply));
	assert_int_equal(call(msg, &c, &f), 0);
	r = varlink_service_dispatch(&test_service, &c, flags, &out, &len);
	varlink_call_free(&c);
	if (out) {
		assert_int_equal(r, 0);
		assert_int_equal(out[len - 1], '\0');
		assert_int_equal(varlink_reply_parse(out, len - 1, reply, &f), 0);
		free(out);
	}
	return r;
}

static const char *string_param(struct varlink_reply *r, const char *key)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(r->parameters, key, &v));
	return json_object_get_string(v);
}

static void test_service_introspection(void **state)
{
	struct varlink_reply r;
	struct json_object *v;

	assert_int_equal(dispatch("{\"method\":\"org.varlink.service.GetInfo\"}", VARLINK_METHOD_UNKNOWN, &r), 0);
	assert_null(r.error);
	assert_string_equal(string_param(&r, "vendor"), "v");
	assert_string_equal(string_param(&r, "product"), "p");
	assert_string_equal(string_param(&r, "version"), "1.2");
	assert_string_equal(string_param(&r, "url"), "https://example.invalid/");
	assert_true(json_object_object_get_ex(r.parameters, "interfaces", &v));
	assert_int_equal(json_object_array_length(v), 2);
	assert_string_equal(json_object_get_string(json_object_array_get_idx(v, 0)), "org.varlink.service");
	assert_string_equal(json_object_get_string(json_object_array_get_idx(v, 1)), "io.p2p.Peer");
	varlink_reply_free(&r);

	/* more: one reply, no "continues" */
	assert_int_equal(dispatch("{\"method\":\"org.varlink.service.GetInfo\",\"more\":true,\"parameters\":null}",
				  VARLINK_METHOD_UNKNOWN, &r), 0);
	assert_null(r.error);
	assert_false(r.continues);
	varlink_reply_free(&r);

	assert_int_equal(dispatch("{\"method\":\"org.varlink.service.GetInterfaceDescription\","
				  "\"parameters\":{\"interface\":\"io.p2p.Peer\"}}", VARLINK_METHOD_UNKNOWN, &r), 0);
	assert_null(r.error);
	assert_string_equal(string_param(&r, "description"), test_ifaces[0].description);
	varlink_reply_free(&r);

	assert_int_equal(dispatch("{\"method\":\"org.varlink.service.GetInterfaceDescription\","
				  "\"parameters\":{\"interface\":\"org.varlink.service\"}}", VARLINK_METHOD_UNKNOWN, &r), 0);
	assert_string_equal(string_param(&r, "description"), VARLINK_IDL_ORG_VARLINK_SERVICE);
	assert_non_null(strstr(VARLINK_IDL_ORG_VARLINK_SERVICE, "\ninterface org.varlink.service\n"));
	varlink_reply_free(&r);
	assert_non_null(strstr(VARLINK_IDL_IO_P2P_PEER, "\ninterface io.p2p.Peer\n"));

	assert_int_equal(dispatch("{\"method\":\"org.varlink.service.GetInterfaceDescription\","
				  "\"parameters\":{\"interface\":\"io.p2p.Other\"}}", VARLINK_METHOD_UNKNOWN, &r), 0);
	assert_string_equal(r.error, "org.varlink.service.InterfaceNotFound");
	assert_string_equal(string_param(&r, "interface"), "io.p2p.Other");
	varlink_reply_free(&r);

	for (int i = 0; i < 3; i++) {
		static const char *const bad[] = { "{}", "{\"interface\":5}", "{\"interface\":null}" };
		char msg[200];

		snprintf(msg, sizeof(msg), "{\"method\":\"org.varlink.service.GetInterfaceDescription\",\"parameters\":%s}",
			 bad[i]);
		assert_int_equal(dispatch(msg, VARLINK_METHOD_UNKNOWN, &r), 0);
		assert_string_equal(r.error, "org.varlink.service.InvalidParameter");
		assert_string_equal(string_param(&r, "parameter"), "interface");
		varlink_reply_free(&r);
	}
}

static void test_service_flags(void **state)
{
	struct varlink_reply r;

	/* a known method runs, also oneway and with more */
	assert_int_equal(dispatch("{\"method\":\"io.p2p.Peer.Status\"}", 0, &r), 1);
	assert_null(r.root);
	assert_int_equal(dispatch("{\"method\":\"io.p2p.Peer.Status\",\"oneway\":true}", 0, &r), 1);
	assert_int_equal(dispatch("{\"method\":\"io.p2p.Peer.Status\",\"more\":true}", 0, &r), 1);

	/* unknown: MethodNotFound, or MethodNotImplemented when the IDL has it */
	assert_int_equal(dispatch("{\"method\":\"io.p2p.Peer.Frob\"}", VARLINK_METHOD_UNKNOWN, &r), 0);
	assert_string_equal(r.error, "org.varlink.service.MethodNotFound");
	assert_string_equal(string_param(&r, "method"), "io.p2p.Peer.Frob");
	varlink_reply_free(&r);
	assert_int_equal(dispatch("{\"method\":\"io.p2p.Peer.Comment\"}", VARLINK_METHOD_UNKNOWN, &r), 0);
	assert_string_equal(r.error, "org.varlink.service.MethodNotFound");
	varlink_reply_free(&r);
	assert_int_equal(dispatch("{\"method\":\"org.varlink.service.Frob\"}", VARLINK_METHOD_UNKNOWN, &r), 0);
	assert_string_equal(r.error, "org.varlink.service.MethodNotFound");
	varlink_reply_free(&r);
	assert_int_equal(dispatch("{\"method\":\"io.p2p.Peer.Planned\"}", VARLINK_METHOD_UNKNOWN, &r), 0);
	assert_string_equal(r.error, "org.varlink.service.MethodNotImplemented");
	assert_string_equal(string_param(&r, "method"), "io.p2p.Peer.Planned");
	varlink_reply_free(&r);

	/* oneway is never answered, not even with an error */
	assert_int_equal(dispatch("{\"method\":\"io.p2p.Peer.Frob\",\"oneway\":true}", VARLINK_METHOD_UNKNOWN, &r), 0);
	assert_null(r.root);
	assert_int_equal(dispatch("{\"method\":\"org.varlink.service.GetInfo\",\"oneway\":true}",
				  VARLINK_METHOD_UNKNOWN, &r), 0);
	assert_null(r.root);
	assert_int_equal(dispatch("{\"method\":\"io.p2p.Peer.Status\",\"oneway\":true,\"upgrade\":true}", 0, &r), 0);
	assert_null(r.root);

	/* upgrade is refused, for every method */
	assert_int_equal(dispatch("{\"method\":\"io.p2p.Peer.Status\",\"upgrade\":true}", 0, &r), 0);
	assert_string_equal(r.error, "org.varlink.service.InvalidParameter");
	assert_string_equal(string_param(&r, "parameter"), "upgrade");
	varlink_reply_free(&r);
	assert_int_equal(dispatch("{\"method\":\"org.varlink.service.GetInfo\",\"upgrade\":true}",
				  VARLINK_METHOD_UNKNOWN, &r), 0);
	assert_string_equal(r.error, "org.varlink.service.InvalidParameter");
	varlink_reply_free(&r);
	assert_int_equal(dispatch("{\"method\":\"io.p2p.Peer.Status\",\"upgrade\":false}", 0, &r), 1);

	/* parameters are checked against the method's input in the IDL */
	assert_int_equal(dispatch("{\"method\":\"io.p2p.Peer.Status\",\"parameters\":{\"x\":1}}", 0, &r), 0);
	assert_string_equal(r.error, "org.varlink.service.InvalidParameter");
	assert_string_equal(string_param(&r, "parameter"), "x");
	varlink_reply_free(&r);
	assert_int_equal(dispatch("{\"method\":\"io.p2p.Peer.Status\",\"parameters\":{\"x\":1},\"oneway\":true}", 0,
				  &r), 0);
	assert_null(r.root);
	assert_int_equal(dispatch("{\"method\":\"org.varlink.service.GetInfo\",\"parameters\":{\"x\":1}}",
				  VARLINK_METHOD_UNKNOWN, &r), 0);
	assert_string_equal(r.error, "org.varlink.service.InvalidParameter");
	assert_string_equal(string_param(&r, "parameter"), "x");
	varlink_reply_free(&r);

	/* a method that requires more */
	assert_int_equal(dispatch("{\"method\":\"io.p2p.Peer.Status\"}", VARLINK_METHOD_REQUIRES_MORE, &r), 0);
	assert_string_equal(r.error, "org.varlink.service.ExpectedMore");
	varlink_reply_free(&r);
	assert_int_equal(dispatch("{\"method\":\"io.p2p.Peer.Status\",\"more\":true}", VARLINK_METHOD_REQUIRES_MORE, &r), 1);
}

static void test_idl_declares_method(void **state)
{
	const char *idl = "interface a.B\nmethod One() -> ()\n\tmethod Two (x: int) -> ()\nmethod Three\n"
			  "# method Four() -> ()\ntype Five ()\nmethod Onex() -> ()";

	assert_true(varlink_idl_declares_method(idl, "One"));
	assert_true(varlink_idl_declares_method(idl, "Two"));
	assert_true(varlink_idl_declares_method(idl, "Onex"));
	assert_false(varlink_idl_declares_method(idl, "Three"));
	assert_false(varlink_idl_declares_method(idl, "Four"));
	assert_false(varlink_idl_declares_method(idl, "Five"));
	assert_false(varlink_idl_declares_method(idl, "On"));
	/* every method p2p-peerd serves is in the compiled-in file */
	for (int i = 0; i < 10; i++) {
		static const char *const m[] = { "Register", "Login", "Logout", "Index", "Search", "Status",
						 "ListShared", "Transfers", "Cancel", "Download" };

		assert_true(varlink_idl_declares_method(VARLINK_IDL_IO_P2P_PEER, m[i]));
	}
	assert_true(varlink_idl_declares_method(VARLINK_IDL_ORG_VARLINK_SERVICE, "GetInfo"));
	assert_true(varlink_idl_declares_method(VARLINK_IDL_ORG_VARLINK_SERVICE, "GetInterfaceDescription"));
}

/* Parameters against a method's input in an IDL. */
static const char check_idl[] =
	"# test\ninterface a.b\n"
	"type Kind (small, big)\n"
	"type Node (name: string, kind: ?Kind, next: ?Node)\n"
	"# method Commented(x: int) -> ()\n"
	"method All(\n  b: bool, # a comment\n  i: int, f: float, s: string, o: object,\n"
	"  ns: ?string, a: []int, m: [string]?string, k: Kind,\n"
	"  node: ?Node, inline: ?(x: int, e: (one, two)), an: ?[]?int\n) -> (r: int)\n"
	"method None() -> ()\n"
	"method Broken(x: int -> ()\n"
	"method Broken2(x: nosuch) -> ()\n";

static int check_params(const char *member, const char *json, char *bad)
{
	struct json_object *o = json_tokener_parse(json);
	int r;

	assert_non_null(o);
	r = varlink_idl_check_parameters(check_idl, member, o, bad, 64);
	json_object_put(o);
	return r;
}

#define ALL_OK "\"b\":true,\"i\":-3,\"f\":1.5,\"s\":\"x\",\"o\":{\"q\":[1]},\"a\":[1,2],\"m\":{\"x\":\"y\",\"z\":null},\"k\":\"big\""

static void expect_bad(const char *extra_or_replaced, const char *want)
{
	char bad[64], json[1024];

	snprintf(json, sizeof(json), "{%s}", extra_or_replaced);
	assert_int_equal(check_params("All", json, bad), -EINVAL);
	assert_string_equal(bad, want);
}

static void test_idl_check_parameters(void **state)
{
	char bad[64];

	assert_int_equal(check_params("All", "{" ALL_OK "}", bad), 0);
	assert_string_equal(bad, "");
	assert_int_equal(check_params("All", "{" ALL_OK ",\"f\":2,\"ns\":null,\"an\":[1,null],"
				      "\"node\":{\"name\":\"n\",\"next\":{\"name\":\"m\",\"kind\":\"small\"}},"
				      "\"inline\":{\"x\":1,\"e\":\"two\"}}", bad), 0);
	assert_int_equal(check_params("None", "{}", bad), 0);

	/* each wrong or missing field is named */
	expect_bad("\"i\":-3,\"f\":1.5,\"s\":\"x\",\"o\":{},\"a\":[],\"m\":{},\"k\":\"big\"", "b");
	expect_bad("\"b\":1,\"i\":-3,\"f\":1.5,\"s\":\"x\",\"o\":{},\"a\":[],\"m\":{},\"k\":\"big\"", "b");
	expect_bad("\"b\":true,\"i\":1.0,\"f\":1.5,\"s\":\"x\",\"o\":{},\"a\":[],\"m\":{},\"k\":\"big\"", "i");
	expect_bad("\"b\":true,\"i\":1,\"f\":\"1\",\"s\":\"x\",\"o\":{},\"a\":[],\"m\":{},\"k\":\"big\"", "f");
	expect_bad("\"b\":true,\"i\":1,\"f\":1,\"s\":null,\"o\":{},\"a\":[],\"m\":{},\"k\":\"big\"", "s");
	expect_bad("\"b\":true,\"i\":1,\"f\":1,\"s\":\"a\\u0000b\",\"o\":{},\"a\":[],\"m\":{},\"k\":\"big\"", "s");
	expect_bad(ALL_OK ",\"ns\":5", "ns");
	expect_bad("\"b\":true,\"i\":1,\"f\":1,\"s\":\"x\",\"o\":{},\"a\":[1,\"2\"],\"m\":{},\"k\":\"big\"", "a");
	expect_bad("\"b\":true,\"i\":1,\"f\":1,\"s\":\"x\",\"o\":{},\"a\":[null],\"m\":{},\"k\":\"big\"", "a");
	expect_bad("\"b\":true,\"i\":1,\"f\":1,\"s\":\"x\",\"o\":{},\"a\":[],\"m\":[],\"k\":\"big\"", "m");
	expect_bad("\"b\":true,\"i\":1,\"f\":1,\"s\":\"x\",\"o\":{},\"a\":[],\"m\":{\"x\":1},\"k\":\"big\"", "m");
	expect_bad("\"b\":true,\"i\":1,\"f\":1,\"s\":\"x\",\"o\":{},\"a\":[],\"m\":{},\"k\":\"huge\"", "k");
	expect_bad(ALL_OK ",\"node\":{\"kind\":\"small\"}", "node");
	expect_bad(ALL_OK ",\"node\":{\"name\":\"n\",\"next\":{\"name\":\"m\",\"kind\":\"tiny\"}}", "node");
	expect_bad(ALL_OK ",\"node\":{\"name\":\"n\",\"extra\":1}", "node");
	expect_bad(ALL_OK ",\"inline\":{\"x\":1,\"e\":\"three\"}", "inline");
	expect_bad(ALL_OK ",\"an\":[\"1\"]", "an");
	/* a field the method does not declare */
	expect_bad(ALL_OK ",\"unknown\":1", "unknown");
	assert_int_equal(check_params("None", "{\"x\":null}", bad), -EINVAL);
	assert_string_equal(bad, "x");

	/* not declared, or not readable */
	assert_int_equal(check_params("Commented", "{}", bad), -ENOENT);
	assert_int_equal(check_params("Absent", "{}", bad), -ENOENT);
	assert_int_equal(check_params("Broken", "{\"x\":1}", bad), -EBADMSG);
	assert_int_equal(check_params("Broken2", "{\"x\":1}", bad), -EBADMSG);
}

/* The compiled-in definitions can be read for every method they declare. */
static void test_idl_compiled_in_readable(void **state)
{
	static const char *const peer[] = { "Register", "Login", "Logout", "Index", "Search", "Status",
					    "ListShared", "Transfers", "Cancel", "Download" };
	struct json_object *empty = json_object_new_object();
	char bad[64];

	for (size_t i = 0; i < sizeof(peer) / sizeof(peer[0]); i++) {
		int r = varlink_idl_check_parameters(VARLINK_IDL_IO_P2P_PEER, peer[i], empty, bad, sizeof(bad));

		assert_true(r == 0 || r == -EINVAL);
	}
	assert_int_equal(varlink_idl_check_parameters(VARLINK_IDL_ORG_VARLINK_SERVICE, "GetInfo", empty, bad,
						      sizeof(bad)), 0);
	assert_int_equal(varlink_idl_check_parameters(VARLINK_IDL_ORG_VARLINK_SERVICE, "GetInterfaceDescription",
						      empty, bad, sizeof(bad)), -EINVAL);
	assert_string_equal(bad, "interface");
	assert_int_equal(varlink_idl_check_parameters(VARLINK_IDL_IO_P2P_PEER, "Login", empty, bad, sizeof(bad)),
			 -EINVAL);
	assert_string_equal(bad, "username");
	json_object_put(empty);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_basic),
		cmocka_unit_test(test_frame_several),
		cmocka_unit_test(test_frame_split),
		cmocka_unit_test(test_frame_oversize),
		cmocka_unit_test(test_call_good),
		cmocka_unit_test(test_call_bad),
		cmocka_unit_test(test_call_nul_and_size),
		cmocka_unit_test(test_reply),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_client),
		cmocka_unit_test(test_names_and_faults),
		cmocka_unit_test(test_service_introspection),
		cmocka_unit_test(test_service_flags),
		cmocka_unit_test(test_idl_declares_method),
		cmocka_unit_test(test_idl_check_parameters),
		cmocka_unit_test(test_idl_compiled_in_readable),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
