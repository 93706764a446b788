/* SPDX-License-Identifier: MIT */
/* peerclient.c — channels to other peers and one blocking gRPC call
 * wrapper (peerclient.h): what a download needs of the gRPC core API,
 * nothing of what it means. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "peerclient.h"
#include "peerd.h"

#define WAIT_SLICE_MS 250 /* how often a waiting call asks stop() */

grpc_channel *peer_channel(const char *target, int max_receive)
{
	grpc_arg args[6] = {
		{ GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, { .integer = max_receive } },
		{ GRPC_ARG_INTEGER, (char *)GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, { .integer = PEER_RECV_WINDOW } },
		{ GRPC_ARG_INTEGER, (char *)GRPC_ARG_HTTP2_BDP_PROBE, { .integer = 0 } },
		/* A link that drops silently is noticed by HTTP/2 pings. */
		{ GRPC_ARG_INTEGER, (char *)GRPC_ARG_KEEPALIVE_TIME_MS, { .integer = 10000 } },
		{ GRPC_ARG_INTEGER, (char *)GRPC_ARG_KEEPALIVE_TIMEOUT_MS, { .integer = 10000 } },
		{ GRPC_ARG_POINTER, NULL, { .integer = 0 } }, /* the quota, below */
	};
	grpc_resource_quota *quota = grpc_resource_quota_create("peer source");
	grpc_channel_args chargs = { 6, args };
	grpc_channel_credentials *creds;
	grpc_channel *ch;

	if (!quota)
		return NULL;
	/* What gRPC buffers for this source: a message is only checked
	 * against max_receive once it is whole, and the transport widens the
	 * window to let an announced message arrive; past its quota the
	 * transport cancels the call (RESOURCE_EXHAUSTED). */
	grpc_resource_quota_resize(quota, PEER_QUOTA(max_receive));
	args[5].type = GRPC_ARG_POINTER;
	args[5].key = (char *)GRPC_ARG_RESOURCE_QUOTA;
	args[5].value.pointer.p = quota;
	args[5].value.pointer.vtable = grpc_resource_quota_arg_vtable();
	creds = peer_client_creds();
	ch = grpc_channel_create(target, creds, &chargs);
	grpc_channel_credentials_release(creds);
	grpc_resource_quota_unref(quota);
	return ch;
}

/* Wait for a batch; cancel the call when stop() says so (the batch then
 * completes). */
static bool rcall_wait(struct rcall *rc, void *tag)
{
	double last = mono_now();

	for (;;) {
		gpr_timespec until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
						  gpr_time_from_millis(WAIT_SLICE_MS, GPR_TIMESPAN));
		grpc_event ev = grpc_completion_queue_pluck(rc->cq, tag, until, NULL);
		double now = mono_now();

		if (ev.type == GRPC_OP_COMPLETE) {
			rc->stop(rc->arg, now - last, true);
			return ev.success;
		}
		if (!rc->gave_up && rc->stop(rc->arg, now - last, false))
			rcall_cancel(rc);
		last = now;
	}
}

void rcall_cancel(struct rcall *rc)
{
	if (rc->call && !rc->gave_up)
		grpc_call_cancel(rc->call, NULL);
	rc->gave_up = true;
}

int rcall_begin(struct rcall *rc, grpc_channel *ch, grpc_completion_queue *cq, const char *method,
		const char *ticket, const ProtobufCMessage *req)
{
	char auth[SHA256_HEX_LEN + 8];
	grpc_slice body;
	grpc_op ops[4];

	rc->call = NULL;
	rc->cq = cq;
	rc->sendbuf = NULL;
	rc->gave_up = false;
	rc->details = grpc_empty_slice();
	rc->status = GRPC_STATUS_UNKNOWN;
	grpc_metadata_array_init(&rc->initial);
	grpc_metadata_array_init(&rc->trailing);
	snprintf(auth, sizeof(auth), "Bearer %s", ticket);
	memset(&rc->md, 0, sizeof(rc->md));
	rc->md.key = grpc_slice_from_static_string("authorization");
	rc->md.value = grpc_slice_from_copied_string(auth);
	rc->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, grpc_slice_from_static_string(method),
					    NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	if (!rc->call)
		return -ENOMEM;
	body = grpc_slice_malloc(protobuf_c_message_get_packed_size(req));
	protobuf_c_message_pack(req, GRPC_SLICE_START_PTR(body));
	rc->sendbuf = grpc_raw_byte_buffer_create(&body, 1);
	grpc_slice_unref(body);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = 1;
	ops[0].data.send_initial_metadata.metadata = &rc->md;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = rc->sendbuf;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &rc->initial;
	if (grpc_call_start_batch(rc->call, ops, 4, (void *)1, NULL) != GRPC_CALL_OK)
		return -EIO;
	return rcall_wait(rc, (void *)1) ? 0 : -EIO;
}

grpc_byte_buffer *rcall_recv(struct rcall *rc)
{
	grpc_byte_buffer *buf = NULL;
	grpc_op op;

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &buf;
	if (grpc_call_start_batch(rc->call, &op, 1, (void *)2, NULL) != GRPC_CALL_OK)
		return NULL;
	if (!rcall_wait(rc, (void *)2) && buf) {
		grpc_byte_buffer_destroy(buf);
		buf = NULL;
	}
	return buf;
}

grpc_status_code rcall_end(struct rcall *rc, char *details, size_t len)
{
	grpc_op op;

	if (details && len)
		*details = '\0';
	if (rc->call) {
		memset(&op, 0, sizeof(op));
		op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
		op.data.recv_status_on_client.trailing_metadata = &rc->trailing;
		op.data.recv_status_on_client.status = &rc->status;
		op.data.recv_status_on_client.status_details = &rc->details;
		if (grpc_call_start_batch(rc->call, &op, 1, (void *)3, NULL) == GRPC_CALL_OK)
			rcall_wait(rc, (void *)3);
		if (details && len) {
			char *d = grpc_slice_to_c_string(rc->details);

			snprintf(details, len, "%s", d);
			gpr_free(d);
		}
		grpc_call_unref(rc->call);
		rc->call = NULL;
	}
	grpc_slice_unref(rc->details);
	grpc_slice_unref(rc->md.value);
	if (rc->sendbuf)
		grpc_byte_buffer_destroy(rc->sendbuf);
	grpc_metadata_array_destroy(&rc->initial);
	grpc_metadata_array_destroy(&rc->trailing);
	return rc->status;
}

void peer_cq_destroy(grpc_completion_queue *cq)
{
	if (!cq)
		return;
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
}
