/* SPDX-License-Identifier: MIT */
/* Unit tests for src/dird/store_sqlite.c behind store.h, and the login
 * rate limiter: real SQLite databases in a temporary directory. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ratelimit.h"
#include "store.h"

#define H(c) c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c
static const char *const tok_a = H("a"), *const tok_b = H("b"), *const tk1 = H("1");

static char dir[64];
static char path[256];

static int setup(void **state)
{
	struct store *st;

	snprintf(dir, sizeof(dir), "/tmp/p2p-test-store-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/dird.db", dir);
	if (store_open(path, &st) < 0)
		return -1;
	*state = st;
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];

	store_close(*state);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

struct hits {
	int n;
	char names[64][256];
	char peers[64][65];
	int64_t sizes[64];
};

static int collect(const struct store_hit *h, void *ctx)
{
	struct hits *hs = ctx;

	if (hs->n < 64) {
		snprintf(hs->names[hs->n], 256, "%s", h->name);
		snprintf(hs->peers[hs->n], 65, "%s", h->peer);
		hs->sizes[hs->n] = h->size;
	}
	hs->n++;
	return 0;
}

static void test_users_and_sessions(void **state)
{
	struct store *st = *state;
	char user[USERNAME_MAX + 1], *hash = NULL;
	int64_t exp = 0;

	assert_int_equal(store_user_create(st, "alice", "$y$hash", 100), 0);
	assert_int_equal(store_user_create(st, "alice", "$y$other", 100), -EEXIST);
	assert_int_equal(store_user_hash(st, "alice", &hash), 0);
	assert_string_equal(hash, "$y$hash");
	free(hash);
	assert_int_equal(store_user_hash(st, "bob", &hash), -ENOENT);

	assert_int_equal(store_session_create(st, "alice", tok_a, 1000), 0);
	assert_int_equal(store_session_create(st, "ghost", tok_b, 1000), -ENOENT);
	assert_int_equal(store_session_lookup(st, tok_a, 999, user, &exp), 0);
	assert_string_equal(user, "alice");
	assert_int_equal(exp, 1000);
	assert_int_equal(store_session_lookup(st, tok_a, 1000, user, &exp), -ENOENT); /* expired */
	assert_int_equal(store_sweep(st, 1000), 0);
	assert_int_equal(store_session_lookup(st, tok_a, 0, user, &exp), -ENOENT);   /* swept */
	assert_int_equal(store_session_delete(st, tok_a), -ENOENT);
	assert_int_equal(store_user_delete(st, "alice"), 0);
	assert_int_equal(store_user_delete(st, "alice"), -ENOENT);
}

static void test_index_search_liveness(void **state)
{
	struct store *st = *state;
	struct store_file files[] = {
		{ "Holiday Photo.JPG", 10, "" },
		{ "x'); DROP TABLE files;--", 20, NULL },
		{ "100%_done", -1, NULL },
	};
	struct hits hs = { 0 };
	int64_t total = -1;
	bool exact = false;

	assert_int_equal(store_user_create(st, "p1", "h", 0), 0);
	assert_int_equal(store_user_create(st, "p2", "h", 0), 0);
	assert_int_equal(store_heartbeat(st, "p1", 100), -ENOENT); /* not indexed yet */
	assert_int_equal(store_index(st, "p1", "127.0.0.1", 50001, "/srv", files, 3, 100), 0);
	assert_int_equal(store_index(st, "p2", "127.0.0.2", 50002, "/srv", files, 1, 100), 0);

	assert_int_equal(store_search_exact(st, "Holiday Photo.JPG", 50, collect, &hs), 0);
	assert_int_equal(hs.n, 2);
	assert_string_equal(hs.peers[0], "p1");
	assert_string_equal(hs.peers[1], "p2");
	memset(&hs, 0, sizeof(hs));
	assert_int_equal(store_search_exact(st, "holiday photo.jpg", 50, collect, &hs), 0);
	assert_int_equal(hs.n, 0); /* exact is exact */

	memset(&hs, 0, sizeof(hs));
	assert_int_equal(store_search_substring(st, "PHOTO", 50, 10, 0, &total, &exact, collect, &hs), 0);
	assert_int_equal(total, 2);
	assert_int_equal(hs.n, 2);
	memset(&hs, 0, sizeof(hs));
	assert_int_equal(store_search_substring(st, "photo", 50, 1, 1, &total, &exact, collect, &hs), 0);
	assert_int_equal(total, 2);
	assert_int_equal(hs.n, 1);
	memset(&hs, 0, sizeof(hs));
	assert_int_equal(store_search_substring(st, "DROP TABLE", 50, 10, 0, &total, &exact, collect, &hs), 0);
	assert_int_equal(total, 1);
	memset(&hs, 0, sizeof(hs));
	assert_int_equal(store_search_substring(st, "%_", 50, 10, 0, &total, &exact, collect, &hs), 0);
	assert_int_equal(total, 1); /* LIKE metacharacters are literal */
	assert_string_equal(hs.names[0], "100%_done");
	assert_int_equal(hs.sizes[0], -1);
	memset(&hs, 0, sizeof(hs));
	assert_int_equal(store_search_substring(st, "\"", 50, 10, 0, &total, &exact, collect, &hs), 0);
	assert_int_equal(total, 0);

	/* Liveness: p2 not heard from since 100; with alive_since 150 it is gone. */
	assert_int_equal(store_heartbeat(st, "p1", 200), 0);
	memset(&hs, 0, sizeof(hs));
	assert_int_equal(store_search_exact(st, "Holiday Photo.JPG", 150, collect, &hs), 0);
	assert_int_equal(hs.n, 1);
	assert_string_equal(hs.peers[0], "p1");
	memset(&hs, 0, sizeof(hs));
	assert_int_equal(store_search_substring(st, "photo", 150, 10, 0, &total, &exact, collect, &hs), 0);
	assert_int_equal(total, 1);
	assert_true(exact);
	assert_string_equal(hs.peers[0], "p1");

	/* Re-index replaces the list. */
	assert_int_equal(store_index(st, "p1", "127.0.0.1", 50001, "/srv", files + 2, 1, 300), 0);
	memset(&hs, 0, sizeof(hs));
	assert_int_equal(store_search_exact(st, "Holiday Photo.JPG", 150, collect, &hs), 0);
	assert_int_equal(hs.n, 0);
	memset(&hs, 0, sizeof(hs));
	assert_int_equal(store_search_substring(st, "photo", 150, 10, 0, &total, &exact, collect, &hs), 0);
	assert_int_equal(total, 0);
	assert_int_equal(store_search_substring(st, "DONE", 150, 10, 0, &total, &exact, collect, &hs), 0);
	assert_int_equal(total, 1);
	assert_string_equal(hs.names[0], "100%_done");

	/* Deleting a user takes its files out of search. */
	assert_int_equal(store_user_delete(st, "p1"), 0);
	memset(&hs, 0, sizeof(hs));
	assert_int_equal(store_search_substring(st, "done", 0, 10, 0, &total, &exact, collect, &hs), 0);
	assert_int_equal(total, 0);
	assert_int_equal(store_user_delete(st, "p1"), -ENOENT);
}

/* More matches than the cap: total stops there and says it is not exact. */
static void test_total_cap(void **state)
{
	struct store *st = *state;
	static struct store_file files[STORE_TOTAL_CAP + 20];
	static char names[STORE_TOTAL_CAP + 20][32];
	struct hits hs = { 0 };
	int64_t total = -1;
	bool exact = true;

	for (int i = 0; i < STORE_TOTAL_CAP + 20; i++) {
		snprintf(names[i], sizeof(names[i]), "song %04d.ogg", i);
		files[i] = (struct store_file){ names[i], i, "" };
	}
	assert_int_equal(store_user_create(st, "many", "h", 0), 0);
	assert_int_equal(store_index(st, "many", "127.0.0.1", 1, "/m", files, STORE_TOTAL_CAP + 20, 100), 0);
	assert_int_equal(store_search_substring(st, "SONG", 0, 5, 10, &total, &exact, collect, &hs), 0);
	assert_int_equal(total, STORE_TOTAL_CAP);
	assert_false(exact);
	assert_int_equal(hs.n, 5);
	assert_string_equal(hs.names[0], "song 0010.ogg");
	memset(&hs, 0, sizeof(hs));
	assert_int_equal(store_search_substring(st, "song 1", 0, 50, 0, &total, &exact, collect, &hs), 0);
	assert_int_equal(total, 20);
	assert_true(exact);
	/* A page beyond the cap is still served. */
	memset(&hs, 0, sizeof(hs));
	assert_int_equal(store_search_substring(st, "ogg", 0, 10, STORE_TOTAL_CAP + 15, &total, &exact,
						 collect, &hs), 0);
	assert_int_equal(hs.n, 5);
	assert_int_equal(total, STORE_TOTAL_CAP + 20);
	assert_true(exact);
}

static void test_logout_takes_peer_offline(void **state)
{
	struct store *st = *state;
	struct store_file f = { "only.txt", 1, "" };
	struct hits hs = { 0 };
	struct store_counts c;

	assert_int_equal(store_user_create(st, "p3", "h", 0), 0);
	assert_int_equal(store_session_create(st, "p3", tok_b, 10000), 0);
	assert_int_equal(store_index(st, "p3", "::1", 1, "", &f, 1, 100), 0);
	assert_int_equal(store_counts(st, 0, &c), 0);
	assert_int_equal(c.files_online, 1);
	assert_int_equal(c.peers_online, 1);
	assert_int_equal(store_session_delete(st, tok_b), 0);
	assert_int_equal(store_search_exact(st, "only.txt", 0, collect, &hs), 0);
	assert_int_equal(hs.n, 0);
	assert_int_equal(store_counts(st, 0, &c), 0);
	assert_int_equal(c.files_online, 0);
	assert_int_equal(c.users, 1);
}

static void test_tickets(void **state)
{
	struct store *st = *state;
	struct store_file f = { "f.iso", 1, "" };
	char user[USERNAME_MAX + 1], file[FILENAME_MAX_BYTES + 1];

	assert_int_equal(store_user_create(st, "srv", "h", 0), 0);
	assert_int_equal(store_user_create(st, "cli", "h", 0), 0);
	assert_int_equal(store_index(st, "srv", "127.0.0.1", 1, "", &f, 1, 100), 0);
	assert_int_equal(store_ticket_create(st, tk1, "cli", "srv", "f.iso", 500), 0);
	assert_int_equal(store_ticket_create(st, tok_a, "cli", "nobody", "f.iso", 500), -ENOENT);
	assert_int_equal(store_ticket_verify(st, tk1, "srv", 499, user, file), 0);
	assert_string_equal(user, "cli");
	assert_string_equal(file, "f.iso");
	assert_int_equal(store_ticket_verify(st, tk1, "cli", 499, user, file), -ENOENT);  /* other peer */
	assert_int_equal(store_ticket_verify(st, tk1, "srv", 500, user, file), -ENOENT);  /* expired */
}

static void test_reopen_keeps_data(void **state)
{
	struct store *st = *state;
	char *hash = NULL;

	struct store_file f = { "Persisted Name.txt", 5, "" };
	struct hits hs = { 0 };
	int64_t total = -1;
	bool exact = false;

	assert_int_equal(store_user_create(st, "persist", "h1", 0), 0);
	assert_int_equal(store_index(st, "persist", "127.0.0.1", 1, "/p", &f, 1, 100), 0);
	store_close(st);
	assert_int_equal(store_open(path, &st), 0);
	*state = st;
	assert_int_equal(store_user_hash(st, "persist", &hash), 0);
	assert_string_equal(hash, "h1");
	free(hash);
	assert_int_equal(store_ping(st), 0);
	/* The name index is rebuilt from the database. */
	assert_int_equal(store_search_substring(st, "name.TXT", 50, 10, 0, &total, &exact, collect, &hs), 0);
	assert_int_equal(total, 1);
	assert_string_equal(hs.names[0], "Persisted Name.txt");
}

static void test_ratelimit(void **state)
{
	struct ratelimit *rl = ratelimit_new(3, 1000, 16);
	uint64_t wait = 0;
	char key[32];

	assert_non_null(rl);
	assert_true(ratelimit_take(rl, "u", 0, &wait));
	assert_true(ratelimit_take(rl, "u", 0, &wait));
	assert_true(ratelimit_take(rl, "u", 0, &wait));
	assert_false(ratelimit_take(rl, "u", 0, &wait));
	assert_true(wait > 0 && wait <= 1001);
	assert_true(ratelimit_take(rl, "other", 0, &wait)); /* keys are separate */
	assert_true(ratelimit_take(rl, "u", 1000, &wait));   /* one regained */
	assert_false(ratelimit_take(rl, "u", 1000, &wait));
	/* Many distinct keys: the table stays bounded and never locks out a new key. */
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		assert_true(ratelimit_take(rl, key, 2000, &wait));
	}
	ratelimit_free(rl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_users_and_sessions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_index_search_liveness, setup, teardown),
		cmocka_unit_test_setup_teardown(test_logout_takes_peer_offline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tickets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_total_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
		cmocka_unit_test(test_ratelimit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
