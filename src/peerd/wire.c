/* SPDX-License-Identifier: MIT */
/* wire.c — the few protobuf wire-format readers rpc.c and reflection.c need
 * (see wire.h). */
#include "config.h"

#include "wire.h"

static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; *p < end && shift < 64; shift += 7) {
		uint8_t b = *(*p)++;

		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

size_t wire_varint_size(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

bool wire_next(const uint8_t **p, const uint8_t *end, struct wire_field *f)
{
	uint64_t key;

	if (*p >= end || !varint(p, end, &key) || key >> 3 == 0 || key >> 3 > 0x1fffffff)
		return false;
	f->number = (uint32_t)(key >> 3);
	f->type = (int)(key & 7);
	f->data = NULL;
	f->len = 0;
	f->v = 0;
	switch (f->type) {
	case 0:
		return varint(p, end, &f->v);
	case 1:
		if (end - *p < 8)
			return false;
		*p += 8;
		return true;
	case 2:
		if (!varint(p, end, &f->v) || f->v > (uint64_t)(end - *p))
			return false;
		f->data = *p;
		f->len = (size_t)f->v;
		*p += f->len;
		return true;
	case 5:
		if (end - *p < 4)
			return false;
		*p += 4;
		return true;
	default:
		return false;
	}
}

long long wire_field_len(const uint8_t *buf, size_t len, uint32_t number)
{
	const uint8_t *p = buf, *end = buf + len;
	struct wire_field f;
	long long found = 0;

	while (p < end) {
		if (!wire_next(&p, end, &f))
			return -1;
		if (f.number == number && f.type == 2)
			found = (long long)f.len;
	}
	return found;
}
