/* SPDX-License-Identifier: MIT */
/* Unit tests for src/common/file.c: file_write_atomic replaces a file
 * whole or not at all, and never leaves its temporary file behind. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "file.h"

static char dir[PATH_MAX / 4];

static int setup(void **state)
{
	const char *t = getenv("TMPDIR");

	(void)state;
	snprintf(dir, sizeof(dir), "%s/p2p-test-file-XXXXXX", t && *t ? t : "/tmp");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[PATH_MAX + 32];

	(void)state;
	chmod(dir, 0700);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int fill_text(FILE *f, void *arg)
{
	return fputs(arg, f) >= 0 ? 0 : -EIO;
}

static int fill_fails(FILE *f, void *arg)
{
	(void)arg;
	fputs("half of the new cont", f); /* then the disk is full */
	return -ENOSPC;
}

static void put(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
}

static void assert_content(const char *path, const char *want)
{
	char buf[256] = "";
	FILE *f = fopen(path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	assert_string_equal(buf, want);
}

/* The names in dir, sorted, joined by spaces. */
static void listing(char *out, size_t size)
{
	struct dirent **ents;
	int n = scandir(dir, &ents, NULL, alphasort);

	assert_true(n >= 0);
	out[0] = '\0';
	for (int i = 0; i < n; i++) {
		if (strcmp(ents[i]->d_name, ".") && strcmp(ents[i]->d_name, "..")) {
			if (out[0])
				strncat(out, " ", size - strlen(out) - 1);
			strncat(out, ents[i]->d_name, size - strlen(out) - 1);
		}
		free(ents[i]);
	}
	free(ents);
}

static void assert_listing(const char *want)
{
	char got[1024];

	listing(got, sizeof(got));
	assert_string_equal(got, want);
}

static void test_creates_and_replaces(void **state)
{
	char path[PATH_MAX];

	(void)state;
	snprintf(path, sizeof(path), "%s/totals", dir);
	assert_int_equal(file_write_atomic(path, fill_text, "first\n", FILE_SYNC), 0);
	assert_content(path, "first\n");
	assert_int_equal(file_write_atomic(path, fill_text, "second, longer\n", FILE_SYNC), 0);
	assert_content(path, "second, longer\n");
	assert_int_equal(file_write_atomic(path, fill_text, "", FILE_SYNC), 0);
	assert_content(path, "");
	assert_listing("totals");
}

/* Without FILE_SYNC (the byte totals, on the loop): the same file, no fsync. */
static void test_without_sync(void **state)
{
	char path[PATH_MAX];

	(void)state;
	snprintf(path, sizeof(path), "%s/totals", dir);
	assert_int_equal(file_write_atomic(path, fill_text, "old\n", 0), 0);
	assert_int_equal(file_write_atomic(path, fill_fails, NULL, 0), -ENOSPC);
	assert_content(path, "old\n");
	assert_int_equal(file_write_atomic(path, fill_text, "new\n", 0), 0);
	assert_content(path, "new\n");
	assert_listing("totals");
}

static void test_leftover_temp_replaced(void **state)
{
	char path[PATH_MAX], tmp[PATH_MAX], victim[PATH_MAX];

	(void)state;
	/* A crash left PATH.tmp behind: it is simply written anew. */
	snprintf(path, sizeof(path), "%s/hashes", dir);
	snprintf(tmp, sizeof(tmp), "%s/hashes.tmp", dir);
	put(tmp, "a torn half");
	assert_int_equal(file_write_atomic(path, fill_text, "whole\n", FILE_SYNC), 0);
	assert_content(path, "whole\n");
	assert_listing("hashes");
	/* A symlink by that name is replaced, not written through. */
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	put(victim, "untouched");
	assert_int_equal(symlink(victim, tmp), 0);
	assert_int_equal(file_write_atomic(path, fill_text, "again\n", FILE_SYNC), 0);
	assert_content(path, "again\n");
	assert_content(victim, "untouched");
	assert_listing("hashes victim");
}

static void test_fill_fails_keeps_old(void **state)
{
	char path[PATH_MAX];

	(void)state;
	snprintf(path, sizeof(path), "%s/transfers", dir);
	put(path, "old\n");
	assert_int_equal(file_write_atomic(path, fill_fails, NULL, FILE_SYNC), -ENOSPC);
	assert_content(path, "old\n");
	assert_listing("transfers");
}

static void test_name_too_long_keeps_old(void **state)
{
	char path[PATH_MAX], name[NAME_MAX + 1];

	(void)state;
	/* The longest name a file can have: NAME.tmp cannot be created. */
	memset(name, 'n', NAME_MAX - 3);
	name[NAME_MAX - 3] = '\0';
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	put(path, "old\n");
	assert_int_equal(file_write_atomic(path, fill_text, "new\n", FILE_SYNC), -ENAMETOOLONG);
	assert_content(path, "old\n");
	assert_listing(name);
}

static void test_rename_fails_removes_temp(void **state)
{
	char path[PATH_MAX], inside[PATH_MAX + 8];

	(void)state;
	/* PATH is a directory with something in it: the rename fails. */
	snprintf(path, sizeof(path), "%s/totals", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(inside, sizeof(inside), "%s/x", path);
	put(inside, "kept");
	assert_int_equal(file_write_atomic(path, fill_text, "new\n", FILE_SYNC), -EISDIR);
	assert_content(inside, "kept");
	assert_listing("totals");
}

static void test_missing_dir(void **state)
{
	char path[PATH_MAX];

	(void)state;
	snprintf(path, sizeof(path), "%s/no-such-dir/totals", dir);
	assert_int_equal(file_write_atomic(path, fill_text, "new\n", FILE_SYNC), -ENOENT);
	assert_listing("");
}

/* file_write_atomic as a user who may not write in dir: root writes
 * anywhere, so as root a child process does it as nobody. */
static int write_unprivileged(const char *path, const char *text)
{
	pid_t pid;
	int status;

	if (geteuid() != 0)
		return file_write_atomic(path, fill_text, (void *)text, FILE_SYNC);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(255);
		_exit(-file_write_atomic(path, fill_text, (void *)text, FILE_SYNC));
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_not_equal(WEXITSTATUS(status), 255);
	return -WEXITSTATUS(status);
}

static void test_read_only_dir_keeps_old(void **state)
{
	char path[PATH_MAX];

	(void)state;
	snprintf(path, sizeof(path), "%s/totals", dir);
	put(path, "old\n");
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(chmod(dir, 0555), 0);
	assert_int_equal(write_unprivileged(path, "new\n"), -EACCES);
	assert_int_equal(chmod(dir, 0700), 0);
	assert_content(path, "old\n");
	assert_listing("totals");
}

static void test_relative_path(void **state)
{
	char cwd[PATH_MAX];

	(void)state;
	/* A bare name: its directory is ".", which is fsynced too. */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(dir), 0);
	assert_int_equal(file_write_atomic("state", fill_text, "here\n", FILE_SYNC), 0);
	assert_int_equal(chdir(cwd), 0);
	assert_listing("state");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_creates_and_replaces, setup, teardown),
		cmocka_unit_test_setup_teardown(test_without_sync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_leftover_temp_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fill_fails_keeps_old, setup, teardown),
		cmocka_unit_test_setup_teardown(test_name_too_long_keeps_old, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rename_fails_removes_temp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only_dir_keeps_old, setup, teardown),
		cmocka_unit_test_setup_teardown(test_relative_path, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
