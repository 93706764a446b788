/* SPDX-License-Identifier: MIT */
/* openapi.h — the OpenAPI document of the REST API, docs/openapi.json,
 * compiled into p2p-dird (openapi.c is generated from it at build time by
 * src/dird/Makemodule.am) and served at GET /openapi.json. */
#ifndef P2P_DIRD_OPENAPI_H
#define P2P_DIRD_OPENAPI_H

#include <stddef.h>

extern const unsigned char dird_openapi[]; /* the file's bytes, no NUL */
extern const size_t dird_openapi_len;

#endif
