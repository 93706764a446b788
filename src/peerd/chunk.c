/* SPDX-License-Identifier: MIT */
/* chunk.c — the p2p.v1 Chunk message on the wire (chunk.h). */
#include "config.h"

#include <errno.h>

#include "chunk.h"

/* GRPC-NOTES: slices over file data run at raw-TCP speed; packing with
 * protobuf-c would copy every chunk once more. */
size_t chunk_header(uint8_t h[CHUNK_HEADER_MAX], uint64_t offset, uint64_t len)
{
	size_t n = 0;

	if (offset) {
		h[n++] = 0x08;
		for (; offset >= 0x80; offset >>= 7)
			h[n++] = (uint8_t)(offset | 0x80);
		h[n++] = (uint8_t)offset;
	}
	h[n++] = 0x12;
	for (; len >= 0x80; len >>= 7)
		h[n++] = (uint8_t)(len | 0x80);
	h[n++] = (uint8_t)len;
	return n;
}

struct cursor {
	struct iovec *iov;
	int n, i;
	size_t off;
};

static int cursor_byte(struct cursor *c)
{
	while (c->i < c->n && c->off == c->iov[c->i].iov_len) {
		c->i++;
		c->off = 0;
	}
	return c->i < c->n ? ((const uint8_t *)c->iov[c->i].iov_base)[c->off++] : -1;
}

static int cursor_varint(struct cursor *c, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		int b = cursor_byte(c);

		if (b < 0)
			return -1;
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
	}
	return -1;
}

int chunk_parse(struct iovec *iov, int n, uint64_t *offset, uint64_t *len)
{
	struct cursor c = { iov, n, 0, 0 };
	uint64_t left = 0;
	int tag, k = 0;

	for (int i = 0; i < n; i++)
		left += iov[i].iov_len;
	*offset = 0;
	*len = 0;
	tag = cursor_byte(&c);
	if (tag == 0x08) {
		if (cursor_varint(&c, offset) < 0)
			return -EPROTO;
		tag = cursor_byte(&c);
	}
	if (tag < 0)
		return 0; /* no data */
	if (tag != 0x12 || cursor_varint(&c, len) < 0)
		return -EPROTO;
	/* What is left after the header must be exactly the data. */
	for (int i = 0; i < c.i; i++)
		left -= iov[i].iov_len;
	left -= c.off;
	if (left != *len)
		return -EPROTO;
	for (int i = c.i; i < n; i++) {
		size_t skip = i == c.i ? c.off : 0;

		if (iov[i].iov_len > skip)
			iov[k++] = (struct iovec){ (uint8_t *)iov[i].iov_base + skip, iov[i].iov_len - skip };
	}
	return k;
}

