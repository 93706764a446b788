/* SPDX-License-Identifier: MIT */
/* reflection.h — gRPC server reflection's answers (reflection.c). */
#ifndef P2P_PEERD_REFLECTION_H
#define P2P_PEERD_REFLECTION_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/byte_buffer.h>

/* Index the embedded FileDescriptorSet; 0 or -EINVAL. */
int reflection_init(void);
/* The ServerReflectionResponse to one ServerReflectionRequest (as bytes);
 * malformed or unknown requests get an error_response. */
grpc_byte_buffer *reflection_answer(const uint8_t *req, size_t len);

#endif
