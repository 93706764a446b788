/* SPDX-License-Identifier: MIT */
/* Unit tests for src/peerd/ranges.c (the download's range table) and
 * src/peerd/ratelimit.c (token bucket, backoff). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ranges.h"
#include "ratelimit.h"

static void test_spans(void **st)
{
	struct ranges r;
	uint64_t off, len;

	assert_int_equal(ranges_init(&r, 10, 4), 0);
	assert_int_equal(r.n, 3);
	ranges_span(&r, 0, &off, &len);
	assert_true(off == 0 && len == 4);
	ranges_span(&r, 2, &off, &len);
	assert_true(off == 8 && len == 2); /* the last one is shorter */
	ranges_free(&r);
	assert_int_equal(ranges_init(&r, 8, 4), 0);
	assert_int_equal(r.n, 2);
	ranges_span(&r, 1, &off, &len);
	assert_true(off == 4 && len == 4);
	ranges_free(&r);
	assert_int_equal(ranges_init(&r, 0, 4), 0);
	assert_int_equal(r.n, 0);
	assert_int_equal(ranges_take(&r, 0), -1);
	assert_false(ranges_stuck(&r, 1));
	ranges_free(&r);
	/* 1 TiB in 4 MiB blocks: no overflow in the arithmetic. */
	assert_int_equal(ranges_init(&r, 1ULL << 40, 4u << 20), 0);
	assert_int_equal(r.n, 262144);
	ranges_span(&r, 262143, &off, &len);
	assert_true(off == (1ULL << 40) - (4u << 20) && len == (4u << 20));
	ranges_free(&r);
}

static void test_take_lowest_and_refetch_elsewhere(void **st)
{
	struct ranges r;

	assert_int_equal(ranges_init(&r, 40, 10), 0);
	assert_int_equal(ranges_take(&r, 0), 0);
	assert_int_equal(ranges_take(&r, 1), 1);
	assert_int_equal(ranges_take(&r, 0), 2); /* a fast source takes more */
	ranges_finish(&r, 0, true, 0);
	ranges_finish(&r, 1, false, 1);          /* source 1 delivered range 1 wrong */
	assert_int_equal(r.done, 1);
	assert_int_equal(ranges_take(&r, 1), 3); /* never range 1 again from source 1 */
	assert_int_equal(ranges_take(&r, 1), -1);
	assert_int_equal(ranges_take(&r, 0), 1); /* ... but from source 0 */
	assert_false(ranges_stuck(&r, 1 | 2));   /* ranges are in flight */
	ranges_finish(&r, 1, true, 0);
	ranges_finish(&r, 2, true, 0);
	ranges_finish(&r, 3, true, 1);
	ranges_finish(&r, 3, true, 1); /* twice: counted once */
	assert_int_equal(r.done, 4);
	assert_false(ranges_stuck(&r, 0));
	ranges_free(&r);
}

static void test_stuck(void **st)
{
	struct ranges r;

	assert_int_equal(ranges_init(&r, 20, 10), 0);
	ranges_mark_done(&r, 0);
	ranges_mark_done(&r, 0);
	assert_int_equal(r.done, 1);
	assert_int_equal(ranges_take(&r, 2), 1);
	ranges_finish(&r, 1, false, 2);
	assert_true(ranges_stuck(&r, 1u << 2));         /* only the liar is left */
	assert_false(ranges_stuck(&r, 1u << 2 | 1u)); /* source 0 may still try */
	assert_true(ranges_stuck(&r, 0));               /* nobody left */
	ranges_free(&r);
}

static void test_token_bucket(void **st)
{
	struct ratelimit rl;
	double t = 100, waited = 0;

	ratelimit_init(&rl, 0, 0, t);
	assert_true(ratelimit_charge(&rl, 1 << 30, t) == 0); /* 0: unlimited */
	/* 1000 B/s, burst 100: the burst goes at once, then the rate holds. */
	ratelimit_init(&rl, 1000, 100, t);
	assert_true(ratelimit_charge(&rl, 100, t) == 0);
	assert_true(ratelimit_charge(&rl, 100, t) > 0.099 && ratelimit_charge(&rl, 0, t) < 0.101);
	/* Sending 10,000 bytes in 100-byte pieces, sleeping as told, takes
	 * about (10,000 - burst) / rate seconds. */
	ratelimit_init(&rl, 1000, 100, t);
	for (int i = 0; i < 100; i++) {
		double w = ratelimit_charge(&rl, 100, t);

		t += w;
		waited += w;
	}
	assert_true(waited > 9.8 && waited < 10.0);
	/* Idle time refills at most up to the burst. */
	t += 1000;
	assert_true(ratelimit_charge(&rl, 100, t) == 0);
	assert_true(ratelimit_charge(&rl, 100, t) > 0);
}

static void test_backoff(void **st)
{
	/* base 1 s, cap 60 s; jitter scales into [0.5, 1). */
	assert_true(backoff_delay(1, 1, 60, 0) == 0.5);
	assert_true(backoff_delay(2, 1, 60, 0) == 1);
	assert_true(backoff_delay(5, 1, 60, 0) == 8);
	assert_true(backoff_delay(7, 1, 60, 0.999999) < 60 && backoff_delay(7, 1, 60, 0.999999) > 59.9);
	assert_true(backoff_delay(1000, 1, 60, 0) == 30); /* capped, no overflow */
	assert_true(backoff_delay(3, 1, 60, 5) == 2);     /* out-of-range jitter ignored */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spans),
		cmocka_unit_test(test_take_lowest_and_refetch_elsewhere),
		cmocka_unit_test(test_stuck),
		cmocka_unit_test(test_token_bucket),
		cmocka_unit_test(test_backoff),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
