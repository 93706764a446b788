/* SPDX-License-Identifier: MIT */
/* ratelimit.c — see ratelimit.h.
 *
 * Open addressing over a fixed table. When a key's probe window is full, the
 * entry that would be full again soonest (the one idle longest) is reused:
 * forgetting an idle key only ever forgives it, never locks anyone out. */
#include "config.h"

#include <stdlib.h>
#include <string.h>


#include "ratelimit.h"

#define KEY_MAX 64
#define PROBES 8

struct bucket {
	char key[KEY_MAX];
	double tokens;
	uint64_t updated_ms;
	bool used;
};

struct ratelimit {
	unsigned burst, interval_ms, slots;
	uint32_t seed;
	struct bucket *b;
};

struct ratelimit *ratelimit_new(unsigned burst, unsigned interval_ms, unsigned slots)
{
	struct ratelimit *rl = calloc(1, sizeof(*rl));

	if (!rl)
		return NULL;
	rl->b = calloc(slots, sizeof(*rl->b));
	if (!rl->b) {
		free(rl);
		return NULL;
	}
	rl->slots = slots;
	rl->seed = (uint32_t)(uintptr_t)rl ^ 0x9e3779b9u;
	ratelimit_configure(rl, burst, interval_ms);
	return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
	if (rl) {
		free(rl->b);
		free(rl);
	}
}

void ratelimit_configure(struct ratelimit *rl, unsigned burst, unsigned interval_ms)
{
	rl->burst = burst ? burst : 1;
	rl->interval_ms = interval_ms ? interval_ms : 1;
}

/* FNV-1a with a per-table seed: cheap, and keys chosen to collide for one
 * process do not collide for another. */
static uint32_t hash(const struct ratelimit *rl, const char *key)
{
	uint32_t h = 2166136261u ^ rl->seed;

	for (; *key; key++)
		h = (h ^ (unsigned char)*key) * 16777619u;
	return h;
}

static void refill(const struct ratelimit *rl, struct bucket *b, uint64_t now_ms)
{
	if (now_ms > b->updated_ms) {
		b->tokens += (double)(now_ms - b->updated_ms) / rl->interval_ms;
		if (b->tokens > rl->burst)
			b->tokens = rl->burst;
	}
	b->updated_ms = now_ms;
}

bool ratelimit_take(struct ratelimit *rl, const char *key, uint64_t now_ms, uint64_t *retry_after_ms)
{
	uint32_t h = hash(rl, key);
	struct bucket *found = NULL, *victim = NULL;

	for (unsigned i = 0; i < PROBES; i++) {
		struct bucket *b = &rl->b[(h + i) % rl->slots];

		if (b->used && strncmp(b->key, key, KEY_MAX - 1) == 0) {
			found = b;
			break;
		}
		if (!b->used) {
			if (!victim || victim->used)
				victim = b;
		} else if (!victim || (victim->used && b->updated_ms < victim->updated_ms)) {
			victim = b;
		}
	}
	if (!found) {
		found = victim;
		memset(found, 0, sizeof(*found));
		strncpy(found->key, key, KEY_MAX - 1);
		found->used = true;
		found->tokens = rl->burst;
		found->updated_ms = now_ms;
	}
	refill(rl, found, now_ms);
	if (found->tokens >= 1.0) {
		found->tokens -= 1.0;
		return true;
	}
	if (retry_after_ms)
		*retry_after_ms = (uint64_t)((1.0 - found->tokens) * rl->interval_ms) + 1;
	return false;
}
