/* SPDX-License-Identifier: MIT */
/* Unit tests for src/common/crypto.c. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "crypto.h"
#include "validate.h"

static void test_sha256_known_vectors(void **state)
{
	char hex[SHA256_HEX_LEN + 1];

	crypto_sha256_hex("", 0, hex);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	crypto_sha256_hex("abc", 3, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_token_is_random_hex(void **state)
{
	char a[SHA256_HEX_LEN + 1], b[SHA256_HEX_LEN + 1];

	assert_int_equal(crypto_token(a), 0);
	assert_int_equal(crypto_token(b), 0);
	assert_true(valid_sha256_hex(a));
	assert_true(valid_sha256_hex(b));
	assert_string_not_equal(a, b);
}

static void test_hex_and_equal(void **state)
{
	const unsigned char in[] = { 0x00, 0x0f, 0xa5, 0xff };
	char out[9];

	uint8_t back[4];

	crypto_hex(in, sizeof(in), out);
	assert_string_equal(out, "000fa5ff");
	assert_true(crypto_unhex(out, sizeof(back), back));
	assert_memory_equal(back, in, sizeof(in));
	assert_false(crypto_unhex("000fA5ff", sizeof(back), back)); /* lowercase only */
	assert_false(crypto_unhex("000f", sizeof(back), back));     /* too short: stops at the NUL */
	assert_true(crypto_equal("abcd", "abcd", 4));
	assert_false(crypto_equal("abcd", "abce", 4));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256_known_vectors),
		cmocka_unit_test(test_token_is_random_hex),
		cmocka_unit_test(test_hex_and_equal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
