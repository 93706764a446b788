/* SPDX-License-Identifier: MIT */
/* Unit tests for src/peerd/share.c: what is shared, safe opening, and the
 * SHA-256 cache. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "peerd.h"

static char dir[64], folder[128], state[128];

static void put(const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", folder, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup(void **st)
{
	char path[512];

	log_set_level(LOG_ERR);
	snprintf(dir, sizeof(dir), "/tmp/p2p-test-share-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(folder, sizeof(folder), "%s/files", dir);
	snprintf(state, sizeof(state), "%s/state", dir);
	mkdir(folder, 0755);
	put("abc.txt", "abc");
	put("empty", "");
	put(".hidden", "x");
	snprintf(path, sizeof(path), "%s/sub", folder);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/escape", folder);
	if (symlink("/etc/passwd", path) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/outside.txt", dir);
	return 0;
}

static int teardown(void **st)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static void test_scan_shares_only_plain_files(void **st)
{
	struct share sh;
	struct shared_file f;

	assert_int_equal(share_open(&sh, folder, NULL), 0);
	assert_int_equal(share_scan(&sh, NULL), 2);
	assert_string_equal(sh.files[0].name, "abc.txt");
	assert_string_equal(sh.files[1].name, "empty");
	assert_int_equal(share_find(&sh, "abc.txt", &f), 0);
	assert_int_equal(f.size, 3);
	assert_string_equal(f.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(share_find(&sh, "escape", &f), -ENOENT);
	assert_int_equal(share_find(&sh, ".hidden", &f), -ENOENT);
	assert_int_equal(share_find(&sh, "sub", &f), -ENOENT);
	assert_int_equal(share_find(&sh, "../files/abc.txt", &f), -EINVAL);
	assert_int_equal(share_find(&sh, "/etc/passwd", &f), -EINVAL);
	assert_int_equal(share_find(&sh, "..", &f), -EINVAL);
	share_close(&sh);
}

static void test_allow_list(void **st)
{
	struct share sh;
	char *names[] = { "empty", "missing" };
	struct conf_strlist allow = { names, 2 };

	assert_int_equal(share_open(&sh, folder, NULL), 0);
	assert_int_equal(share_scan(&sh, &allow), 1);
	assert_string_equal(sh.files[0].name, "empty");
	share_close(&sh);
}

static void test_open_file_is_safe(void **st)
{
	struct share sh;
	uint64_t size;
	char path[512];
	int fd;

	assert_int_equal(share_open(&sh, folder, NULL), 0);
	share_scan(&sh, NULL);
	assert_int_equal(share_open_file(&sh, "abc.txt", &fd, &size), 0);
	assert_int_equal(size, 3);
	close(fd);
	assert_int_equal(share_open_file(&sh, "escape", &fd, &size), -ENOENT);
	/* A shared file swapped for a symlink after the scan is refused. */
	snprintf(path, sizeof(path), "%s/abc.txt", folder);
	unlink(path);
	assert_int_equal(symlink("/etc/passwd", path), 0);
	assert_int_equal(share_open_file(&sh, "abc.txt", &fd, &size), -ENOENT);
	unlink(path);
	put("abc.txt", "abc");
	share_close(&sh);
}

static void test_hash_cache(void **st)
{
	struct share sh;

	assert_int_equal(share_open(&sh, folder, state), 0);
	assert_int_equal(share_scan(&sh, NULL), 2);
	assert_int_equal(sh.hashed, 2);
	share_close(&sh);
	assert_int_equal(share_open(&sh, folder, state), 0);
	assert_int_equal(share_scan(&sh, NULL), 2);
	assert_int_equal(sh.hashed, 0); /* from the cache */
	put("empty", "now with content");
	assert_int_equal(share_scan(&sh, NULL), 2);
	assert_int_equal(sh.hashed, 1);
	share_close(&sh);
}

/* Block hashes: one per BLOCK_SIZE bytes, the last shorter; kept in the
 * hash cache; a cache line of the older form is hashed again. */
static void test_block_hashes(void **st)
{
	size_t len = 2 * BLOCK_SIZE + 3;
	unsigned char *data = malloc(len);
	char path[512], want[SHA256_HEX_LEN + 1], got[SHA256_HEX_LEN + 1];
	struct shared_file f;
	struct share sh;
	FILE *fp;

	assert_non_null(data);
	for (size_t i = 0; i < len; i++)
		data[i] = (unsigned char)(i * 7 + i / 4096);
	snprintf(path, sizeof(path), "%s/blocks.bin", folder);
	fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	fclose(fp);
	for (int round = 0; round < 3; round++) {
		assert_int_equal(share_open(&sh, folder, state), 0);
		assert_int_equal(share_scan(&sh, NULL), 3);
		/* round 1 from the cache; round 2 after the cache was rewritten
		 * in the older five-field form */
		if (round == 0)
			assert_true(sh.hashed >= 1);
		else
			assert_int_equal(sh.hashed, round == 1 ? 0 : 3);
		assert_int_equal(share_stat(&sh, "blocks.bin", &f), 0);
		assert_int_equal(f.size, len);
		crypto_sha256_hex(data, len, want);
		assert_string_equal(f.sha256, want);
		assert_int_equal(f.blocks.block_size, BLOCK_SIZE);
		assert_int_equal(f.blocks.n, 3);
		for (size_t b = 0; b < 3; b++) {
			size_t blen = b < 2 ? BLOCK_SIZE : 3;

			crypto_sha256_hex(data + b * BLOCK_SIZE, blen, want);
			crypto_hex(f.blocks.sha + b * SHA256_BYTES, SHA256_BYTES, got);
			assert_string_equal(got, want);
		}
		block_list_free(&f.blocks);
		assert_int_equal(share_find(&sh, "blocks.bin", &f), 0);
		assert_null(f.blocks.sha); /* find does not hand out the list */
		share_close(&sh);
		if (round == 1) { /* the 0.1 cache format: dev ino size mtime sha256 */
			char cache[512];

			snprintf(cache, sizeof(cache), "%s/hashes", state);
			fp = fopen(cache, "w");
			assert_non_null(fp);
			fprintf(fp, "1 2 3 4 %s\n", want);
			fclose(fp);
		}
	}
	/* A remembered hash without block hashes (a download from an older
	 * peer) does not spare the scan: Stat must have them. */
	{
		struct stat stt;
		struct hash_entry e;

		assert_int_equal(share_open(&sh, folder, state), 0);
		assert_int_equal(share_scan(&sh, NULL), 3);
		assert_int_equal(stat(path, &stt), 0);
		e = (struct hash_entry){ (uint64_t)stt.st_dev, (uint64_t)stt.st_ino, (uint64_t)stt.st_size,
					 (int64_t)stt.st_mtim.tv_sec * 1000000000 + stt.st_mtim.tv_nsec, "",
					 { 0, 0, NULL } };
		crypto_sha256_hex(data, len, e.sha256);
		/* Drop the cache's own entries, keep only the remembered one. */
		share_close(&sh);
		{
			char cache[512];

			snprintf(cache, sizeof(cache), "%s/hashes", state);
			unlink(cache);
		}
		assert_int_equal(share_open(&sh, folder, NULL), 0);
		share_remember(&sh, &e);
		assert_int_equal(share_scan(&sh, NULL), 3);
		assert_int_equal(sh.hashed, 3);
		assert_int_equal(share_stat(&sh, "blocks.bin", &f), 0);
		assert_int_equal(f.blocks.n, 3);
		block_list_free(&f.blocks);
		share_close(&sh);
	}
	unlink(path);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scan_shares_only_plain_files),
		cmocka_unit_test(test_allow_list),
		cmocka_unit_test(test_open_file_is_safe),
		cmocka_unit_test(test_hash_cache),
		cmocka_unit_test(test_block_hashes),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
