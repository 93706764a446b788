/* SPDX-License-Identifier: MIT */
/* Unit tests for src/common/conf.c: file, then command line; unknown keys
 * warn; errors name the file and the key. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"
#include "log.h"

struct settings {
	char *username;
	char *folder;
	long long port;
	bool verbose;
	struct conf_strlist files;
};

static const struct conf_key keys[] = {
	{ "username", CONF_STRING, offsetof(struct settings, username), 0, 0 },
	{ "folder", CONF_STRING, offsetof(struct settings, folder), 0, 0 },
	{ "port", CONF_INT, offsetof(struct settings, port), 1, 65535 },
	{ "verbose", CONF_BOOL, offsetof(struct settings, verbose), 0, 0 },
	{ "files", CONF_STRLIST, offsetof(struct settings, files), 0, 0 },
	{ NULL, 0, 0, 0, 0 },
};

static char path[] = "/tmp/p2p-test-conf-XXXXXX";
static int logpipe[2];

static void write_file(const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup(void **state)
{
	int fd = mkstemp(path);

	if (fd < 0 || pipe(logpipe) < 0)
		return -1;
	close(fd);
	log_set_fd(logpipe[1]);
	log_set_prefix(1);
	return 0;
}

static int teardown(void **state)
{
	unlink(path);
	close(logpipe[0]);
	close(logpipe[1]);
	log_set_fd(2);
	return 0;
}

static void test_seed_config(void **state)
{
	struct settings s = { .port = 50001 };
	char err[CONF_ERRLEN] = "";

	/* The seed's config.json, verbatim: "port" is a string, "status" unknown. */
	write_file("{\n  \"username\": \"peer1\",\n  \"status\": \"off\",\n"
		   "  \"files\": [\"file1.txt\"],\n  \"ip\": \"127.0.0.1\",\n"
		   "  \"port\": \"50002\",\n  \"folder\": \"myFiles\"\n}\n");
	assert_int_equal(conf_load_file(keys, &s, path, err, sizeof(err)), 0);
	assert_string_equal(s.username, "peer1");
	assert_string_equal(s.folder, "myFiles");
	assert_int_equal(s.port, 50002);
	assert_int_equal(s.files.n, 1);
	assert_string_equal(s.files.v[0], "file1.txt");
	conf_free(keys, &s);
	assert_null(s.username);
	assert_int_equal(s.files.n, 0);
}

static void test_unknown_key_warns(void **state)
{
	struct settings s = { 0 };
	char err[CONF_ERRLEN] = "", buf[1024];
	ssize_t n;

	write_file("{\"usernmae\": \"typo\"}");
	assert_int_equal(conf_load_file(keys, &s, path, err, sizeof(err)), 0);
	n = read(logpipe[0], buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "<4>"));
	assert_non_null(strstr(buf, "unknown key \"usernmae\""));
	assert_non_null(strstr(buf, path));
	assert_null(s.username);
}

static void test_errors_name_file_and_key(void **state)
{
	struct settings s = { 0 };
	char err[CONF_ERRLEN];

	write_file("{\"port\": 70000}");
	assert_int_equal(conf_load_file(keys, &s, path, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "\"port\""));
	assert_non_null(strstr(err, "out of range"));

	write_file("{\"port\": \"5x\"}");
	assert_int_equal(conf_load_file(keys, &s, path, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "\"port\": expected an integer"));

	write_file("{\"username\": 7}");
	assert_int_equal(conf_load_file(keys, &s, path, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "\"username\": expected a string"));

	write_file("{\"verbose\": \"yes\"}");
	assert_int_equal(conf_load_file(keys, &s, path, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "\"verbose\""));

	write_file("{\"files\": [\"a\", 3]}");
	assert_int_equal(conf_load_file(keys, &s, path, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "\"files\": item 1"));
	conf_free(keys, &s);
}

static void test_bad_json(void **state)
{
	struct settings s = { 0 };
	char err[CONF_ERRLEN];

	write_file("{\n\"username\": \"a\",\n\"port\": }\n");
	assert_int_equal(conf_load_file(keys, &s, path, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "invalid JSON"));
	assert_non_null(strstr(err, path));

	write_file("[1, 2]");
	assert_int_equal(conf_load_file(keys, &s, path, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "JSON object"));

	write_file("{\"username\": \"a\"} trailing");
	assert_int_equal(conf_load_file(keys, &s, path, err, sizeof(err)), -EINVAL);

	write_file("{\"username\": \"\xff\"}");
	assert_int_equal(conf_load_file(keys, &s, path, err, sizeof(err)), -EINVAL);

	write_file("");
	assert_int_equal(conf_load_file(keys, &s, path, err, sizeof(err)), -EINVAL);
	conf_free(keys, &s);
}

static void test_missing_file(void **state)
{
	struct settings s = { 0 };
	char err[CONF_ERRLEN];

	assert_int_equal(conf_load_file(keys, &s, "/nonexistent/p2p.json", err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/p2p.json"));
}

static void test_command_line_wins(void **state)
{
	struct settings s = { 0 };
	char err[CONF_ERRLEN];

	write_file("{\"username\": \"fromfile\", \"port\": 1000, \"verbose\": false}");
	assert_int_equal(conf_load_file(keys, &s, path, err, sizeof(err)), 0);
	assert_int_equal(conf_apply_text(keys, &s, "username", "fromargv", err, sizeof(err)), 0);
	assert_int_equal(conf_apply_text(keys, &s, "port", "2000", err, sizeof(err)), 0);
	assert_int_equal(conf_apply_text(keys, &s, "verbose", "yes", err, sizeof(err)), 0);
	assert_int_equal(conf_apply_text(keys, &s, "files", "a.txt,b.txt", err, sizeof(err)), 0);
	assert_string_equal(s.username, "fromargv");
	assert_int_equal(s.port, 2000);
	assert_true(s.verbose);
	assert_int_equal(s.files.n, 2);
	assert_string_equal(s.files.v[1], "b.txt");

	assert_int_equal(conf_apply_text(keys, &s, "port", "0", err, sizeof(err)), -EINVAL);
	assert_int_equal(s.port, 2000);
	assert_int_equal(conf_apply_text(keys, &s, "port", "12ab", err, sizeof(err)), -EINVAL);
	assert_int_equal(conf_apply_text(keys, &s, "verbose", "maybe", err, sizeof(err)), -EINVAL);
	assert_int_equal(conf_apply_text(keys, &s, "nosuch", "1", err, sizeof(err)), -ENOENT);
	conf_free(keys, &s);
}

static void test_copy(void **state)
{
	struct settings a = { 0 }, b;
	char err[CONF_ERRLEN];

	assert_int_equal(conf_apply_text(keys, &a, "username", "u", err, sizeof(err)), 0);
	assert_int_equal(conf_apply_text(keys, &a, "files", "x,y", err, sizeof(err)), 0);
	a.port = 7;
	assert_int_equal(conf_copy(keys, &b, &a), 0);
	conf_free(keys, &a);
	assert_string_equal(b.username, "u");
	assert_null(b.folder);
	assert_int_equal(b.port, 7);
	assert_string_equal(b.files.v[1], "y");
	conf_free(keys, &b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed_config),
		cmocka_unit_test(test_unknown_key_warns),
		cmocka_unit_test(test_errors_name_file_and_key),
		cmocka_unit_test(test_bad_json),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_command_line_wins),
		cmocka_unit_test(test_copy),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
