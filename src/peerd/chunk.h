/* SPDX-License-Identifier: MIT */
/* chunk.h — the p2p.v1 Chunk message {uint64 offset = 1; bytes data = 2;}
 * written and read without copying its data: the sender puts a small
 * header before a slice read straight from the file, the receiver finds
 * the data inside the buffer's slices and writes it out from there. */
#ifndef P2P_PEERD_CHUNK_H
#define P2P_PEERD_CHUNK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define CHUNK_HEADER_MAX 22 /* two tags and two 10-byte varints */

/* The header for len bytes of data at offset (offset 0 is left out, as
 * proto3 does); the data follows it. Returns its length. */
size_t chunk_header(uint8_t h[CHUNK_HEADER_MAX], uint64_t offset, uint64_t len);
/* Parse one Chunk in place: iov (n pieces, the message) is cut down to the
 * data, *offset and *len set. Accepts what peerd and protobuf encoders
 * write: an optional offset (field 1) and then the data (field 2), nothing
 * else. Returns the number of data pieces, or -EPROTO. */
int chunk_parse(struct iovec *iov, int n, uint64_t *offset, uint64_t *len);

#endif
