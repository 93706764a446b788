/* SPDX-License-Identifier: MIT */
/* Fuzz target: protobuf-c decoding of every message a peer receives or
 * sends (requests on the server side, responses on the client side). The
 * first byte picks the message type; a decoded message is re-packed, and one
 * made of known fields must decode again to the same size. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>

#include "FileSharing.pb-c.h"
#include "p2p/v1/peer.pb-c.h"

static const ProtobufCMessageDescriptor *const descriptors[] = {
	&file_request__descriptor,
	&file_response__descriptor,
	&p2p__v1__stat_request__descriptor,
	&p2p__v1__stat_response__descriptor,
	&p2p__v1__read_request__descriptor,
	&p2p__v1__chunk__descriptor,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const ProtobufCMessageDescriptor *desc;
	ProtobufCMessage *msg, *again;
	uint8_t *buf;
	size_t len;

	if (size < 1)
		return 0;
	desc = descriptors[data[0] % (sizeof(descriptors) / sizeof(descriptors[0]))];
	msg = protobuf_c_message_unpack(desc, NULL, size - 1, data + 1);
	if (!msg)
		return 0;
	len = protobuf_c_message_get_packed_size(msg);
	buf = malloc(len ? len : 1);
	if (!buf)
		abort();
	if (protobuf_c_message_pack(msg, buf) != len)
		abort();
	/* Unknown fields are kept verbatim, including protobuf-c's acceptance of
	 * an overlong-encoded field number 0 that it then refuses to read back;
	 * only messages made of known fields must round-trip exactly. */
	if (msg->n_unknown_fields == 0) {
		again = protobuf_c_message_unpack(desc, NULL, len, buf);
		if (!again || protobuf_c_message_get_packed_size(again) != len)
			abort();
		protobuf_c_message_free_unpacked(again, NULL);
	}
	protobuf_c_message_free_unpacked(msg, NULL);
	free(buf);
	return 0;
}
