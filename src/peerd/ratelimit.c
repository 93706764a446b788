/* SPDX-License-Identifier: MIT */
/* ratelimit.c — token bucket and backoff (ratelimit.h). */
#include "config.h"

#include <time.h>

#include "ratelimit.h"

double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void ratelimit_init(struct ratelimit *rl, double rate, double burst, double now)
{
	rl->rate = rate > 0 ? rate : 0;
	rl->burst = burst > 0 ? burst : 0;
	rl->tokens = rl->burst;
	rl->last = now;
}

double ratelimit_charge(struct ratelimit *rl, uint64_t n, double now)
{
	if (rl->rate <= 0)
		return 0;
	if (now > rl->last) {
		rl->tokens += (now - rl->last) * rl->rate;
		if (rl->tokens > rl->burst)
			rl->tokens = rl->burst;
		rl->last = now;
	}
	rl->tokens -= (double)n;
	return rl->tokens >= 0 ? 0 : -rl->tokens / rl->rate;
}

double backoff_delay(unsigned failures, double base, double cap, double random01)
{
	double d = base;

	for (unsigned i = 1; i < failures && d < cap; i++)
		d *= 2;
	if (d > cap)
		d = cap;
	if (random01 < 0 || random01 >= 1)
		random01 = 0;
	return d * (0.5 + random01 / 2);
}
