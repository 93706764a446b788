/* SPDX-License-Identifier: MIT */
/* Unit tests for src/common/log.c: priority prefixes, levels, errno text. */
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

#include "log.h"

static int pipefd[2];

static int setup(void **state)
{
	if (pipe(pipefd) < 0)
		return -1;
	log_init("/usr/sbin/p2p-test");
	log_set_fd(pipefd[1]);
	log_set_level(LOG_INFO);
	log_set_prefix(1);
	return 0;
}

static int teardown(void **state)
{
	close(pipefd[0]);
	close(pipefd[1]);
	log_set_fd(2);
	return 0;
}

/* What has been logged so far (the pipe is drained). */
static const char *captured(void)
{
	static char buf[8192];
	ssize_t n;

	close(pipefd[1]);
	n = read(pipefd[0], buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	close(pipefd[0]);
	if (pipe(pipefd) == 0)
		log_set_fd(pipefd[1]);
	return buf;
}

static void test_prefix(void **state)
{
	log_err("disk %s", "full");
	log_warn("w");
	log_info("i %d", 42);
	assert_string_equal(captured(), "<3>disk full\n<4>w\n<6>i 42\n");
}

static void test_level_filters_debug(void **state)
{
	log_debug("hidden");
	assert_string_equal(captured(), "");
	log_set_level(LOG_DEBUG);
	log_debug("shown");
	assert_string_equal(captured(), "<7>shown\n");
	log_set_level(LOG_WARNING);
	log_info("hidden");
	log_notice("hidden");
	log_warn("shown");
	assert_string_equal(captured(), "<4>shown\n");
	log_set_level(LOG_INFO);
}

static void test_terminal_format(void **state)
{
	log_set_prefix(0);
	log_notice("hello");
	assert_string_equal(captured(), "p2p-test: notice: hello\n");
	log_set_prefix(1);
}

static void test_errno(void **state)
{
	int r = log_errno(LOG_ERR, ENOENT, "cannot open %s", "/x");

	assert_int_equal(r, -ENOENT);
	assert_string_equal(captured(), "<3>cannot open /x: No such file or directory\n");
	assert_int_equal(log_errno(LOG_ERR, -EACCES, "neg"), -EACCES);
	assert_string_equal(captured(), "<3>neg: Permission denied\n");
}

static void test_no_forged_lines(void **state)
{
	log_info("user said %s", "a\n<0>forged\r");
	assert_string_equal(captured(), "<6>user said a <0>forged \n");
}

static void test_long_line_truncated(void **state)
{
	char *big = malloc(5000);
	const char *out;

	memset(big, 'x', 4999);
	big[4999] = '\0';
	log_info("%s", big);
	out = captured();
	assert_true(strlen(out) < 2048);
	assert_int_equal(out[strlen(out) - 1], '\n');
	assert_memory_equal(out, "<6>xxx", 6);
	free(big);
}

static void test_level_names(void **state)
{
	assert_int_equal(log_level_from_name("debug"), LOG_DEBUG);
	assert_int_equal(log_level_from_name("INFO"), LOG_INFO);
	assert_int_equal(log_level_from_name("warning"), LOG_WARNING);
	assert_int_equal(log_level_from_name("warn"), LOG_WARNING);
	assert_int_equal(log_level_from_name("error"), LOG_ERR);
	assert_int_equal(log_level_from_name("loud"), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_level_filters_debug, setup, teardown),
		cmocka_unit_test_setup_teardown(test_terminal_format, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errno, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_forged_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_line_truncated, setup, teardown),
		cmocka_unit_test(test_level_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
