/* SPDX-License-Identifier: MIT */
/* readclient — a minimal p2p.v1.Peer/Read client on the gRPC core C API, for
 * bench/peerd/bench.py: it streams a range and discards it, so the Read
 * row measures the serving peerd rather than a Python client.
 *
 *   readclient HOST:PORT NAME TICKET [OFFSET [LENGTH]]
 *
 * Prints "BYTES SECONDS" and exits 0 when the stream ended with OK and the
 * chunks were contiguous; 1 otherwise. The chunk data is looked at in
 * place (the Chunk header is parsed; the data is not copied), as a
 * receiver that writes it out with pwritev would. */
#include "config.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "p2p/v1/peer.pb-c.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Read a varint from the first slice(s); the Chunk header is tiny and sits
 * in the first slice in practice, else fall back to a copy. */
static int chunk_len(grpc_byte_buffer *b, uint64_t *offset, uint64_t *len)
{
	grpc_byte_buffer_reader rd;
	grpc_slice all;
	P2p__V1__Chunk *c;
	size_t total = grpc_byte_buffer_length(b);

	if (!grpc_byte_buffer_reader_init(&rd, b))
		return -1;
	{
		grpc_slice *first;
		const uint8_t *p, *end;
		uint64_t v;
		int tag;

		if (grpc_byte_buffer_reader_peek(&rd, &first) && GRPC_SLICE_LENGTH(*first) >= 24) {
			p = GRPC_SLICE_START_PTR(*first);
			end = p + 24;
			*offset = 0;
			tag = *p++;
			if (tag == 0x08) {
				for (v = 0, tag = 0; p < end && tag < 64; tag += 7) {
					v |= (uint64_t)(*p & 0x7f) << tag;
					if (!(*p++ & 0x80))
						break;
				}
				*offset = v;
				tag = p < end ? *p++ : -1;
			}
			if (tag == 0x12) {
				for (v = 0, tag = 0; p < end && tag < 64; tag += 7) {
					v |= (uint64_t)(*p & 0x7f) << tag;
					if (!(*p++ & 0x80))
						break;
				}
				*len = v;
				grpc_byte_buffer_reader_destroy(&rd);
				return (size_t)(p - GRPC_SLICE_START_PTR(*first)) + v == total ? 0 : -1;
			}
		}
	}
	grpc_byte_buffer_reader_destroy(&rd);
	/* A small or unusual message: unpack a copy. */
	grpc_byte_buffer_reader_init(&rd, b);
	all = grpc_byte_buffer_reader_readall(&rd);
	grpc_byte_buffer_reader_destroy(&rd);
	c = p2p__v1__chunk__unpack(NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
	grpc_slice_unref(all);
	if (!c)
		return -1;
	*offset = c->offset;
	*len = c->data.len;
	p2p__v1__chunk__free_unpacked(c, NULL);
	return 0;
}

int main(int argc, char **argv)
{
	P2p__V1__ReadRequest req = P2P__V1__READ_REQUEST__INIT;
	/* READCLIENT_WINDOW=BYTES: a fixed receive window without BDP probing,
	 * as p2p-peerd's own client sets it (peerclient.c); default: gRPC's. */
	const char *win = getenv("READCLIENT_WINDOW");
	grpc_arg arg[3] = {
		{ GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, { .integer = 64 << 20 } },
		{ GRPC_ARG_INTEGER, (char *)GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, { .integer = win ? atoi(win) : 0 } },
		{ GRPC_ARG_INTEGER, (char *)GRPC_ARG_HTTP2_BDP_PROBE, { .integer = 0 } },
	};
	grpc_channel_args args = { win ? 3 : 1, arg };
	grpc_metadata md;
	grpc_metadata_array initial, trailing;
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice(), body;
	grpc_byte_buffer *sendbuf, *recvbuf = NULL;
	grpc_channel_credentials *creds;
	grpc_completion_queue *cq;
	grpc_channel *ch;
	grpc_call *call;
	grpc_op ops[4];
	uint64_t pos, got = 0, off = 0, len = 0;
	char auth[128];
	double t0, dt;
	bool ok = true;

	if (argc < 4 || argc > 6) {
		fprintf(stderr, "usage: readclient HOST:PORT NAME TICKET [OFFSET [LENGTH]]\n");
		return 2;
	}
	grpc_init();
	req.name = argv[2];
	req.offset = argc > 4 ? strtoull(argv[4], NULL, 10) : 0;
	req.length = argc > 5 ? strtoull(argv[5], NULL, 10) : 0;
	pos = req.offset;
	creds = grpc_insecure_credentials_create();
	ch = grpc_channel_create(argv[1], creds, &args);
	grpc_channel_credentials_release(creds);
	cq = grpc_completion_queue_create_for_pluck(NULL);
	t0 = now();
	call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
					grpc_slice_from_static_string("/p2p.v1.Peer/Read"), NULL,
					gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	body = grpc_slice_malloc(p2p__v1__read_request__get_packed_size(&req));
	p2p__v1__read_request__pack(&req, GRPC_SLICE_START_PTR(body));
	sendbuf = grpc_raw_byte_buffer_create(&body, 1);
	grpc_slice_unref(body);
	snprintf(auth, sizeof(auth), "Bearer %s", argv[3]);
	md.key = grpc_slice_from_static_string("authorization");
	md.value = grpc_slice_from_copied_string(auth);
	grpc_metadata_array_init(&initial);
	grpc_metadata_array_init(&trailing);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = 1;
	ops[0].data.send_initial_metadata.metadata = &md;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = sendbuf;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
	grpc_call_start_batch(call, ops, 4, (void *)1, NULL);
	grpc_completion_queue_pluck(cq, (void *)1, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	for (;;) {
		memset(ops, 0, sizeof(ops));
		ops[0].op = GRPC_OP_RECV_MESSAGE;
		ops[0].data.recv_message.recv_message = &recvbuf;
		grpc_call_start_batch(call, ops, 1, (void *)2, NULL);
		grpc_completion_queue_pluck(cq, (void *)2, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (!recvbuf)
			break;
		if (chunk_len(recvbuf, &off, &len) < 0 || off != pos)
			ok = false;
		pos += len;
		got += len;
		grpc_byte_buffer_destroy(recvbuf);
		recvbuf = NULL;
	}
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &trailing;
	ops[0].data.recv_status_on_client.status = &status;
	ops[0].data.recv_status_on_client.status_details = &details;
	grpc_call_start_batch(call, ops, 1, (void *)3, NULL);
	grpc_completion_queue_pluck(cq, (void *)3, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	dt = now() - t0;
	if (status != GRPC_STATUS_OK) {
		char *d = grpc_slice_to_c_string(details);

		fprintf(stderr, "readclient: status %d %s\n", (int)status, d);
		gpr_free(d);
		ok = false;
	}
	printf("%" PRIu64 " %.6f\n", got, dt);
	grpc_slice_unref(details);
	grpc_slice_unref(md.value);
	grpc_byte_buffer_destroy(sendbuf);
	grpc_metadata_array_destroy(&initial);
	grpc_metadata_array_destroy(&trailing);
	grpc_call_unref(call);
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
	grpc_channel_destroy(ch);
	grpc_shutdown_blocking();
	return ok ? 0 : 1;
}
