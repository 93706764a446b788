/* SPDX-License-Identifier: MIT */
/* Unit tests for src/common/validate.c: the exact rules of DESIGN.md. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "validate.h"

static bool fname(const char *s)
{
	return valid_filename(s, strlen(s));
}

static void test_username(void **state)
{
	char longest[USERNAME_MAX + 2];

	assert_true(valid_username("peer1"));
	assert_true(valid_username("A.b-c_9"));
	assert_true(valid_username("."));
	assert_false(valid_username(""));
	assert_false(valid_username(NULL));
	assert_false(valid_username("has space"));
	assert_false(valid_username("semi;colon"));
	assert_false(valid_username("a'--"));
	assert_false(valid_username("ñandu"));
	assert_false(valid_username("a/b"));
	memset(longest, 'x', USERNAME_MAX);
	longest[USERNAME_MAX] = '\0';
	assert_true(valid_username(longest));
	longest[USERNAME_MAX] = 'x';
	longest[USERNAME_MAX + 1] = '\0';
	assert_false(valid_username(longest));
}

static void test_filename(void **state)
{
	char big[FILENAME_MAX_BYTES + 2];

	assert_true(fname("file1.txt"));
	assert_true(fname("..."));
	assert_true(fname(".hidden"));
	assert_true(fname("with space and 'quote'; DROP TABLE x;--"));
	assert_true(fname("canción.mp3"));
	assert_true(fname("日本語.txt"));
	assert_true(fname("\xf0\x9f\x98\x80.png")); /* U+1F600 */
	assert_false(fname(""));
	assert_false(fname("."));
	assert_false(fname(".."));
	assert_false(fname("../etc/passwd"));
	assert_false(fname("/etc/passwd"));
	assert_false(fname("a/b"));
	assert_false(valid_filename("a\0b", 3));
	assert_false(valid_filename(NULL, 0));
	memset(big, 'a', sizeof(big));
	assert_true(valid_filename(big, FILENAME_MAX_BYTES));
	assert_false(valid_filename(big, FILENAME_MAX_BYTES + 1));
}

static void test_utf8(void **state)
{
	assert_true(valid_utf8("plain", 5));
	assert_true(valid_utf8("\xc3\xb1", 2));             /* ñ */
	assert_true(valid_utf8("\xf4\x8f\xbf\xbf", 4));     /* U+10FFFF */
	assert_false(valid_utf8("\xff", 1));
	assert_false(valid_utf8("\xc3", 1));                /* truncated */
	assert_false(valid_utf8("\xc0\xaf", 2));            /* overlong '/' */
	assert_false(valid_utf8("\xe0\x80\xaf", 3));        /* overlong '/' */
	assert_false(valid_utf8("\xed\xa0\x80", 3));        /* surrogate D800 */
	assert_false(valid_utf8("\xf4\x90\x80\x80", 4));    /* above U+10FFFF */
	assert_false(valid_utf8("\x80", 1));                /* lone continuation */
	assert_false(valid_utf8("a\xe2\x82", 3));           /* truncated euro sign */
	assert_false(fname("bad\xff.txt"));
}

static void test_sha256(void **state)
{
	assert_true(valid_sha256_hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
	assert_false(valid_sha256_hex("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"));
	assert_false(valid_sha256_hex("e3b0"));
	assert_false(valid_sha256_hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8550"));
	assert_false(valid_sha256_hex("g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
	assert_false(valid_sha256_hex(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_username),
		cmocka_unit_test(test_filename),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_sha256),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
