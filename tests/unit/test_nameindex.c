/* SPDX-License-Identifier: MIT */
/* Unit tests for the in-memory name index: every answer is checked against
 * a brute-force scan of the same names. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nameindex.h"

#define NPEERS 20
#define NFILES 3000

struct model {
	uint32_t peer[NFILES * 3];
	char name[NFILES * 3][64];
	bool live[NFILES * 3];
	size_t n;
	bool offline[NPEERS];
};

static bool alive(uint32_t peer, void *ctx)
{
	const struct model *m = ctx;

	return !m->offline[peer];
}

static void lower(char *d, const char *s)
{
	for (; *s; s++, d++)
		*d = (*s >= 'A' && *s <= 'Z') ? (char)(*s + 32) : *s;
	*d = '\0';
}

/* Brute force: the rowids (= model index) matching text, in order. */
static size_t brute(const struct model *m, const char *text, int64_t *out)
{
	char q[256], n[64];
	size_t k = 0;

	lower(q, text);
	for (size_t i = 0; i < m->n; i++) {
		if (!m->live[i] || m->offline[m->peer[i]])
			continue;
		lower(n, m->name[i]);
		if (strstr(n, q))
			out[k++] = (int64_t)i;
	}
	return k;
}

static const char *const words[] = { "Holiday", "photos", "REPORT", "music", "draft", "Ünïcode", "a", "zz" };

static void add_peer(struct nameindex *ni, struct model *m, uint32_t peer, int files, unsigned seed)
{
	for (int j = 0; j < files; j++) {
		size_t i = m->n++;

		snprintf(m->name[i], sizeof(m->name[i]), "%s %s %04u-%02u.dat",
			 words[(seed + (unsigned)j) % 8], words[(seed * 7 + (unsigned)j * 3) % 8],
			 (unsigned)j, peer);
		m->peer[i] = peer;
		m->live[i] = true;
		assert_int_equal(nameindex_add(ni, peer, (int64_t)i, m->name[i]), 0);
	}
}

static void drop_peer(struct nameindex *ni, struct model *m, uint32_t peer)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->peer[i] == peer)
			m->live[i] = false;
	nameindex_drop_peer(ni, peer);
	assert_int_equal(nameindex_peer_files(ni, peer), 0);
}

static void check(struct nameindex *ni, struct model *m, const char *text, int64_t offset,
		  int64_t limit, int64_t cap)
{
	static int64_t want[NFILES * 3];
	int64_t got[1000];
	size_t nwant = brute(m, text, want);
	struct nameindex_query q = { .text = text, .offset = offset, .limit = limit, .cap = cap,
				     .alive = alive, .alive_ctx = m };
	struct nameindex_result r = { .rowids = got };
	int64_t stop = offset + limit > cap ? offset + limit : cap;

	assert_int_equal(nameindex_search(ni, &q, &r), 0);
	if ((int64_t)nwant > stop) {
		assert_false(r.exact);
		assert_int_equal(r.total, stop);
	} else {
		assert_true(r.exact);
		assert_int_equal(r.total, (int64_t)nwant);
	}
	for (size_t k = 0; k < r.n; k++)
		assert_int_equal(got[k], want[offset + (int64_t)k]);
	if (offset < (int64_t)nwant) {
		int64_t page = (int64_t)nwant - offset < limit ? (int64_t)nwant - offset : limit;

		assert_int_equal((int64_t)r.n, page);
	} else {
		assert_int_equal(r.n, 0);
	}
}

/* Exact lookups (ASCII case folded) against the model. */
static void check_exact(struct nameindex *ni, struct model *m, const char *name)
{
	char want[64], n[64];
	int64_t *got;
	size_t ngot, k = 0;

	lower(want, name);
	assert_int_equal(nameindex_exact(ni, name, alive, m, &got, &ngot), 0);
	for (size_t i = 0; i < m->n; i++) {
		if (!m->live[i] || m->offline[m->peer[i]])
			continue;
		lower(n, m->name[i]);
		if (strcmp(n, want) == 0) {
			assert_true(k < ngot);
			assert_int_equal(got[k], (int64_t)i);
			k++;
		}
	}
	assert_int_equal(k, ngot);
	free(got);
}

static void check_all_exact(struct nameindex *ni, struct model *m)
{
	for (size_t i = 0; i < m->n; i += 37)
		check_exact(ni, m, m->name[i]);
	check_exact(ni, m, "HOLIDAY PHOTOS 0000-00.DAT");
	check_exact(ni, m, "no such file");
}

static const char *const queries[] = {
	"holiday", "HOLIDAY", "oto", "a", "zz", "ü", "Ün", "ünï", "report music", "0042", "-07.", "dat",
	"holiday holiday", "nothing like this", "xq", "photos 0", "ft m", "  ", "%", "0000-00.dat",
};

static void test_matches_brute_force(void **state)
{
	static struct model m;
	struct nameindex *ni = nameindex_new();

	(void)state;
	memset(&m, 0, sizeof(m));
	assert_non_null(ni);
	for (uint32_t p = 0; p < NPEERS; p++)
		add_peer(ni, &m, p, NFILES / NPEERS, p);
	assert_int_equal(nameindex_size(ni), NFILES);
	for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
		check(ni, &m, queries[i], 0, 50, 1000);
		check(ni, &m, queries[i], 7, 3, 1000);
		check(ni, &m, queries[i], 0, 10, 20);
		check(ni, &m, queries[i], 100, 1000, 20);
		check(ni, &m, queries[i], 5000, 10, 1000);
	}
	check_all_exact(ni, &m);
	/* Offline peers drop out; re-indexing replaces a peer's files. */
	m.offline[3] = m.offline[11] = true;
	for (uint32_t p = 0; p < NPEERS; p += 2) {
		drop_peer(ni, &m, p);
		add_peer(ni, &m, p, NFILES / NPEERS / 2, p + 100);
	}
	for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++)
		check(ni, &m, queries[i], 0, 1000, 1000);
	check_all_exact(ni, &m);
	assert_true(nameindex_memory(ni) > 0);
	nameindex_free(ni);
}

/* Enough dead slots to trigger the rebuild, which must keep every answer. */
static void test_compaction(void **state)
{
	static struct model m;
	struct nameindex *ni = nameindex_new();

	(void)state;
	memset(&m, 0, sizeof(m));
	for (int round = 0; round < 3; round++) {
		for (uint32_t p = 0; p < 2; p++) {
			drop_peer(ni, &m, p);
			add_peer(ni, &m, p, NFILES / 4, (unsigned)round + p);
		}
	}
	/* The model keeps every version; only the last two are live. */
	assert_int_equal(nameindex_size(ni), 2 * (NFILES / 4));
	for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++)
		check(ni, &m, queries[i], 0, 1000, 1000);
	check_all_exact(ni, &m);
	nameindex_free(ni);
}

static void test_bad_input(void **state)
{
	struct nameindex *ni = nameindex_new();
	char big[300];
	int64_t got[10];
	struct nameindex_result r = { .rowids = got };
	struct nameindex_query q = { .text = "", .limit = 10, .cap = 10, .alive = alive };

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(nameindex_add(ni, 1, 1, ""), -EINVAL);
	assert_int_equal(nameindex_add(ni, 1, 1, big), -EINVAL);
	assert_int_equal(nameindex_add(ni, 1u << 30, 1, "x"), -EINVAL);
	assert_int_equal(nameindex_search(ni, &q, &r), -EINVAL);
	q.text = big;
	assert_int_equal(nameindex_search(ni, &q, &r), -EINVAL);
	{
		int64_t *ids;
		size_t n;

		assert_int_equal(nameindex_exact(ni, "", alive, NULL, &ids, &n), -EINVAL);
		assert_int_equal(nameindex_exact(ni, "x", alive, NULL, &ids, &n), 0);
		assert_int_equal(n, 0);
	}
	nameindex_drop_peer(ni, 12345);
	assert_int_equal(nameindex_size(ni), 0);
	nameindex_free(ni);
}

static bool all_alive(uint32_t peer, void *ctx)
{
	(void)peer;
	(void)ctx;
	return true;
}

/* NFD and NFC spellings are one name; NFC first, then ASCII case, so that
 * "A" + U+030A (NFC: U+00C5) is not folded to U+00E5. */
static void test_nfc(void **state)
{
	struct nameindex *ni = nameindex_new();
	int64_t got[10], *ids;
	size_t n;
	struct nameindex_result r = { .rowids = got };
	struct nameindex_query q = { .limit = 10, .cap = 10, .alive = all_alive };

	(void)state;
	assert_int_equal(nameindex_add(ni, 1, 10, "Cafe\xcc\x81.txt"), 0);       /* NFD */
	assert_int_equal(nameindex_add(ni, 2, 20, "caf\xc3\xa9.txt"), 0);        /* NFC */
	assert_int_equal(nameindex_add(ni, 3, 30, "A\xcc\x8angstr.txt"), 0);     /* NFD A-ring */
	assert_int_equal(nameindex_add(ni, 4, 40, "bad\xc3"), -EINVAL);           /* not UTF-8 */
	assert_int_equal(nameindex_exact(ni, "CAF\xc3\xa9.TXT", all_alive, NULL, &ids, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ids[0], 10);
	assert_int_equal(ids[1], 20);
	free(ids);
	q.text = "fe\xcc\x81";
	assert_int_equal(nameindex_search(ni, &q, &r), 0);
	assert_int_equal(r.total, 2);
	q.text = "\xc3\x85NG";                  /* U+00C5 */
	assert_int_equal(nameindex_search(ni, &q, &r), 0);
	assert_int_equal(r.total, 1);
	assert_int_equal(got[0], 30);
	q.text = "\xc3\xa5ng";                  /* U+00E5: another letter to ASCII folding */
	assert_int_equal(nameindex_search(ni, &q, &r), 0);
	assert_int_equal(r.total, 0);
	nameindex_free(ni);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_matches_brute_force),
		cmocka_unit_test(test_compaction),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_nfc),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
