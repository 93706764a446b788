/* SPDX-License-Identifier: MIT */
/* ratelimit.h — a token bucket for upload and download limits, and the
 * exponential backoff used while the directory is down. Pure arithmetic on
 * times passed in (seconds, CLOCK_MONOTONIC), so both are unit-tested. */
#ifndef P2P_PEERD_RATELIMIT_H
#define P2P_PEERD_RATELIMIT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct ratelimit {
	double rate;   /* bytes per second; 0: unlimited */
	double burst;  /* the most tokens saved up while idle */
	double tokens; /* may go negative: bytes sent ahead of the rate */
	double last;   /* when tokens was last brought up to date */
};

/* rate 0 disables the limit. burst: bytes that may go at once after a
 * pause (at least one chunk, or a sender could never send). */
void ratelimit_init(struct ratelimit *rl, double rate, double burst, double now);
/* Charge n bytes at time now; returns the seconds to wait before sending
 * them (0 when the bucket had tokens). Over a long transfer of N bytes the
 * waits add up to at least (N - burst) / rate. */
double ratelimit_charge(struct ratelimit *rl, uint64_t n, double now);

/* The same, shared by threads. */
struct ratelimit_shared {
	pthread_mutex_t lock;
	struct ratelimit rl;
};

/* Seconds before the next attempt after `failures` consecutive failures
 * (>= 1): base * 2^(failures-1), at most cap, then scaled by a jitter
 * factor in [0.5, 1) taken from random01 in [0, 1) so that peers that lost
 * the directory together do not come back in step. */
double backoff_delay(unsigned failures, double base, double cap, double random01);

double mono_now(void);

#endif
