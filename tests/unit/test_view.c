/* SPDX-License-Identifier: MIT */
/* Unit tests for the directory's view (src/dird/view.c): answers, liveness,
 * and a reload swapped in while searches run never shows a partial or
 * empty view. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "view.h"

#define NPEERS 50
#define NFILES 20

struct hits {
	int n;
	char peer[8][32];
	char sha[8][65];
};

static int collect(const struct store_hit *h, void *ctx)
{
	struct hits *hs = ctx;

	if (hs->n < 8) {
		snprintf(hs->peer[hs->n], sizeof(hs->peer[0]), "%s", h->peer);
		snprintf(hs->sha[hs->n], sizeof(hs->sha[0]), "%s", h->sha256);
	}
	hs->n++;
	return 0;
}

/* NPEERS peers (ids 1..), each with NFILES files, half "holiday". */
static struct view *filled(void)
{
	struct view *v = view_new();

	assert_non_null(v);
	for (int i = 1; i <= NPEERS; i++) {
		char user[16], names[NFILES][32];
		struct store_file files[NFILES];
		struct view_peer p = { .user = user, .ip = "127.0.0.1", .port = 4000, .folder = "/f",
				       .last_seen = 100, .online = true };

		snprintf(user, sizeof(user), "u%03d", NPEERS - i);
		for (int j = 0; j < NFILES; j++) {
			snprintf(names[j], sizeof(names[j]), "%s %d-%d.jpg", j % 2 ? "Holiday" : "work", i, j);
			files[j] = (struct store_file){ names[j], j, "" };
		}
		assert_int_equal(view_put_peer(v, i, &p, files, NFILES), 0);
	}
	return v;
}

static void test_answers(void **state)
{
	struct view *v = filled();
	struct hits hs = { 0 };
	int64_t total = 0, peers, files;
	bool exact = false;
	struct store_file same[] = { { "same.bin", 5, "ab01000000000000000000000000000000000000000000000000000000000000" } };
	struct view_peer p = { .user = "zed", .ip = "::1", .port = 1, .folder = "", .last_seen = 100, .online = true };

	(void)state;
	assert_int_equal(view_search_substring(v, "HOLIDAY", 50, 10, 0, &total, &exact, collect, &hs), 0);
	assert_int_equal(total, NPEERS * NFILES / 2);
	assert_true(exact);
	assert_int_equal(hs.n, 10);
	/* Exact: case-sensitive, sorted by peer name, the hash as hex. */
	assert_int_equal(view_put_peer(v, NPEERS + 1, &p, same, 1), 0);
	p.user = "amy";
	assert_int_equal(view_put_peer(v, NPEERS + 2, &p, same, 1), 0);
	memset(&hs, 0, sizeof(hs));
	assert_int_equal(view_search_exact(v, "same.bin", 50, collect, &hs), 0);
	assert_int_equal(hs.n, 2);
	assert_string_equal(hs.peer[0], "amy");
	assert_string_equal(hs.peer[1], "zed");
	assert_string_equal(hs.sha[0], same[0].sha256);
	memset(&hs, 0, sizeof(hs));
	assert_int_equal(view_search_exact(v, "SAME.bin", 50, collect, &hs), 0);
	assert_int_equal(hs.n, 0);
	/* Liveness: offline, or last seen before alive_since, drops out. */
	view_peer_state(v, NPEERS + 1, 0, false);
	view_peer_state(v, NPEERS + 2, 200, true);
	memset(&hs, 0, sizeof(hs));
	assert_int_equal(view_search_exact(v, "same.bin", 150, collect, &hs), 0);
	assert_int_equal(hs.n, 1);
	assert_string_equal(hs.peer[0], "amy");
	/* last_seen never goes back. */
	view_peer_state(v, NPEERS + 2, 120, true);
	memset(&hs, 0, sizeof(hs));
	assert_int_equal(view_search_exact(v, "same.bin", 150, collect, &hs), 0);
	assert_int_equal(hs.n, 1);
	view_counts(v, 50, &peers, &files);
	assert_int_equal(peers, NPEERS + 1);
	assert_int_equal(files, NPEERS * NFILES + 1);
	/* Re-index replaces, drop and retain forget. */
	assert_int_equal(view_put_peer(v, 1, &p, same, 1), 0);
	view_drop_peer(v, 2);
	view_counts(v, 50, &peers, &files);
	assert_int_equal(peers, NPEERS);
	assert_int_equal(files, (NPEERS - 2) * NFILES + 2);
	assert_int_equal(view_add_file(v, 9999, "x", 1, ""), -ENOENT);
	assert_int_equal(view_put_peer(v, 0, &p, same, 1), -ERANGE);
	view_free(v);
}

static bool odd(int64_t id, void *ctx)
{
	(void)ctx;
	return id % 2;
}

static void test_retain(void **state)
{
	struct view *v = filled();
	int64_t peers, files;

	(void)state;
	view_retain(v, odd, NULL);
	view_counts(v, 0, &peers, &files);
	assert_int_equal(peers, NPEERS / 2);
	assert_int_equal(files, NPEERS / 2 * NFILES);
	view_free(v);
}

struct race {
	struct view *v;
	volatile bool stop;
	int searches, wrong;
};

static void *searcher(void *arg)
{
	struct race *rc = arg;

	while (!rc->stop) {
		struct hits hs = { 0 };
		int64_t total = 0;
		bool exact;

		if (view_search_substring(rc->v, "holiday", 0, 5, 0, &total, &exact, collect, &hs) != 0 ||
		    total != NPEERS * NFILES / 2 || hs.n != 5)
			rc->wrong++;
		rc->searches++;
	}
	return NULL;
}

/* A reload built aside and swapped in: the searches running meanwhile
 * always see a whole view. */
static void test_swap_under_searches(void **state)
{
	struct race rc = { .v = filled() };
	pthread_t t;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, searcher, &rc), 0);
	for (int i = 0; i < 200; i++)
		view_swap(rc.v, filled());
	rc.stop = true;
	pthread_join(t, NULL);
	assert_int_equal(rc.wrong, 0);
	assert_true(rc.searches > 0);
	view_free(rc.v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_answers),
		cmocka_unit_test(test_retain),
		cmocka_unit_test(test_swap_under_searches),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
