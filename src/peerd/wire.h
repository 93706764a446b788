/* SPDX-License-Identifier: MIT */
/* wire.h — reading the protobuf wire format where protobuf-c's generated
 * code does not help: a string's length on the wire (protobuf-c stops at a
 * NUL), and walking FileDescriptorProtos for server reflection. */
#ifndef P2P_PEERD_WIRE_H
#define P2P_PEERD_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One field of a message: its number, wire type, and its value (varint
 * or fixed in v; length-delimited bytes at data, len). */
struct wire_field {
	uint32_t number;
	int type;
	uint64_t v;
	const uint8_t *data;
	size_t len;
};

/* Read the field at *p (end excluded) and advance; false at the end or on
 * malformed input (then *p is left anywhere). */
bool wire_next(const uint8_t **p, const uint8_t *end, struct wire_field *f);
/* The length of the last occurrence of length-delimited field number in
 * buf (0 when absent); -1 when buf is malformed. */
long long wire_field_len(const uint8_t *buf, size_t len, uint32_t number);
/* Bytes of a varint. */
size_t wire_varint_size(uint64_t v);

#endif
