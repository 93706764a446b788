/* SPDX-License-Identifier: MIT */
/* Unit tests for src/dird/ptrmap.c: a long random sequence of puts and
 * deletes agrees with a plain array at every step (deletion by backward
 * shift must never lose an entry behind the hole), and the edge cases. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "ptrmap.h"

#define KEYS 3000

static void test_random_against_array(void **state)
{
	static char base[KEYS * 64];
	static void *ref[KEYS]; /* the value each key should have, or NULL */
	struct ptrmap m = { 0 };
	unsigned seed = 12345;
	size_t n = 0;

	(void)state;
	for (int step = 0; step < 200000; step++) {
		int k = (int)((seed = seed * 1103515245u + 12345u) >> 8) % KEYS;
		/* Keys 64 bytes apart, like small heap objects. */
		const void *key = base + (size_t)k * 64;

		if (((seed >> 4) & 3) != 0 && !ref[k]) {
			ref[k] = base + step;
			assert_int_equal(ptrmap_put(&m, key, ref[k]), 0);
			n++;
		} else {
			assert_ptr_equal(ptrmap_del(&m, key), ref[k]);
			if (ref[k])
				n--;
			ref[k] = NULL;
		}
		assert_int_equal(m.n, n);
		assert_true(2 * m.n <= m.cap);
		if (step % 997 == 0)
			for (int i = 0; i < KEYS; i++)
				assert_ptr_equal(ptrmap_get(&m, base + (size_t)i * 64), ref[i]);
	}
	for (int i = 0; i < KEYS; i++)
		assert_ptr_equal(ptrmap_get(&m, base + (size_t)i * 64), ref[i]);
	ptrmap_free(&m);
	assert_int_equal(m.n, 0);
}

static void test_edges(void **state)
{
	struct ptrmap m = { 0 };
	int a = 0, b = 0;

	(void)state;
	assert_null(ptrmap_get(&m, &a));
	assert_null(ptrmap_del(&m, &a));
	assert_int_equal(ptrmap_put(&m, NULL, &a), -EINVAL);
	assert_int_equal(ptrmap_put(&m, &a, &a), 0);
	assert_int_equal(ptrmap_put(&m, &a, &b), 0); /* replaces */
	assert_int_equal(m.n, 1);
	assert_ptr_equal(ptrmap_get(&m, &a), &b);
	assert_null(ptrmap_get(&m, NULL));
	assert_null(ptrmap_get(&m, &b));
	assert_ptr_equal(ptrmap_del(&m, &a), &b);
	assert_null(ptrmap_del(&m, &a));
	assert_int_equal(m.n, 0);
	ptrmap_free(&m);
	ptrmap_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_against_array),
		cmocka_unit_test(test_edges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
