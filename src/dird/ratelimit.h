/* SPDX-License-Identifier: MIT */
/* ratelimit.h — token buckets keyed by short strings (user names, source
 * addresses), in a fixed-size table so memory stays bounded whatever the
 * number of distinct keys an attacker sends. */
#ifndef P2P_DIRD_RATELIMIT_H
#define P2P_DIRD_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct ratelimit;

/* burst tokens; one token regained every interval_ms. slots: table size. */
struct ratelimit *ratelimit_new(unsigned burst, unsigned interval_ms, unsigned slots);
void ratelimit_free(struct ratelimit *rl);
void ratelimit_configure(struct ratelimit *rl, unsigned burst, unsigned interval_ms);

/* Take one token for key at now_ms. Returns true if allowed; otherwise
 * *retry_after_ms says when the next token comes. */
bool ratelimit_take(struct ratelimit *rl, const char *key, uint64_t now_ms, uint64_t *retry_after_ms);

#endif
