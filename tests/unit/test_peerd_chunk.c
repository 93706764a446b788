/* SPDX-License-Identifier: MIT */
/* Unit tests for src/peerd/chunk.c: the Chunk header peerd writes, and the
 * in-place parser that reads what other peers send, against protobuf-c's
 * own encoding and against malformed input. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "chunk.h"
#include "p2p/v1/peer.pb-c.h"

/* Parse msg cut into pieces at the given points (sorted, inside msg). */
static int parse_split(const uint8_t *msg, size_t len, const size_t *cuts, int ncuts, uint64_t *off,
		       uint64_t *dlen, uint8_t *data_out)
{
	struct iovec iov[16];
	size_t at = 0, got = 0;
	int n = 0, k;

	for (int i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : len;

		iov[n++] = (struct iovec){ (void *)(msg + at), end - at };
		at = end;
	}
	k = chunk_parse(iov, n, off, dlen);
	for (int i = 0; i < k; i++) {
		memcpy(data_out + got, iov[i].iov_base, iov[i].iov_len);
		got += iov[i].iov_len;
	}
	if (k >= 0)
		assert_int_equal(got, *dlen);
	return k;
}

/* What protobuf-c packs, chunk_parse reads, whichever way it is cut. */
static void test_matches_protobuf_c(void **st)
{
	static const uint64_t offsets[] = { 0, 1, 127, 128, 300000, 1ULL << 40, UINT64_MAX };
	uint8_t data[700], msg[800], out[800];
	uint64_t off, dlen;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 13);
	for (size_t o = 0; o < sizeof(offsets) / sizeof(offsets[0]); o++) {
		P2p__V1__Chunk c = P2P__V1__CHUNK__INIT;
		size_t len;

		c.offset = offsets[o];
		c.data.data = data;
		c.data.len = sizeof(data);
		len = p2p__v1__chunk__pack(&c, msg);
		for (size_t cut = 1; cut < 20; cut++) {
			size_t cuts[2] = { cut, cut + 3 };

			memset(out, 0, sizeof(out));
			assert_true(parse_split(msg, len, cuts, 2, &off, &dlen, out) >= 1);
			assert_true(off == offsets[o]);
			assert_int_equal(dlen, sizeof(data));
			assert_memory_equal(out, data, sizeof(data));
		}
	}
}

/* chunk_header + data is exactly what protobuf-c packs. */
static void test_header_is_protobuf(void **st)
{
	static const uint64_t offsets[] = { 0, 5, 1ULL << 35, UINT64_MAX };
	uint8_t data[200] = { 1, 2, 3 }, msg[300], mine[300];

	for (size_t o = 0; o < sizeof(offsets) / sizeof(offsets[0]); o++) {
		P2p__V1__Chunk c = P2P__V1__CHUNK__INIT;
		size_t len, h;

		c.offset = offsets[o];
		c.data.data = data;
		c.data.len = sizeof(data);
		len = p2p__v1__chunk__pack(&c, msg);
		h = chunk_header(mine, offsets[o], sizeof(data));
		assert_true(h <= CHUNK_HEADER_MAX);
		memcpy(mine + h, data, sizeof(data));
		assert_int_equal(h + sizeof(data), len);
		assert_memory_equal(mine, msg, len);
	}
}

static void test_malformed(void **st)
{
	static const struct {
		const char *what;
		uint8_t msg[16];
		size_t len;
	} bad[] = {
		{ "data longer than the message", { 0x12, 0x05, 'a', 'b' }, 4 },
		{ "data shorter than the message", { 0x12, 0x01, 'a', 'b' }, 4 },
		{ "unknown field", { 0x1a, 0x01, 'a' }, 3 },
		{ "data before offset", { 0x12, 0x01, 'a', 0x08, 0x01 }, 5 },
		{ "offset cut short", { 0x08, 0x80 }, 2 },
		{ "length cut short", { 0x08, 0x01, 0x12, 0xff }, 4 },
		{ "varint of 11 bytes", { 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 }, 12 },
		{ "offset as bytes", { 0x0a, 0x01, 'a' }, 3 },
		{ "a stray byte after the offset", { 0x08, 0x01, 0x00 }, 3 },
	};
	uint8_t out[32];
	uint64_t off, dlen;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse_split(bad[i].msg, bad[i].len, NULL, 0, &off, &dlen, out) != -EPROTO)
			fail_msg("accepted: %s", bad[i].what);
	}
	/* An empty message is a chunk without data (the caller refuses it). */
	assert_int_equal(parse_split((const uint8_t *)"", 0, NULL, 0, &off, &dlen, out), 0);
	assert_true(dlen == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_matches_protobuf_c),
		cmocka_unit_test(test_header_is_protobuf),
		cmocka_unit_test(test_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
