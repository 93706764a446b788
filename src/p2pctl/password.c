/* SPDX-License-Identifier: MIT */
/* password.c — reading a password: from a terminal without echo (twice
 * when registering), from standard input, or from a file; never kept
 * longer than the call. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "p2pctl.h"

/* ---- passwords -------------------------------------------------------- */

/* The first line of fd, without its line ending. */
int read_line_fd(int fd, char *buf, size_t size)
{
	size_t n = 0;

	for (;;) {
		char ch;
		ssize_t k = read(fd, &ch, 1);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0 || ch == '\n')
			break;
		if (ch == '\x03' || ch == '\x04')
			return -ECANCELED; /* ^C / ^D typed with ISIG off */
		if (n + 1 >= size)
			return -E2BIG;
		buf[n++] = ch;
	}
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	return (int)n;
}

/* A line typed with echo and line editing off: we do the editing (erase,
 * kill) and see ^C and ^D ourselves, so the terminal is always restored. */
int read_secret(int fd, char *buf, size_t size)
{
	size_t n = 0;

	for (;;) {
		unsigned char ch;
		ssize_t k = read(fd, &ch, 1);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0 || ch == '\n' || ch == '\r')
			break;
		if (ch == 0x03 || (ch == 0x04 && n == 0))
			return -ECANCELED;
		if (ch == 0x7f || ch == 0x08) {
			if (n > 0)
				n--;
			continue;
		}
		if (ch == 0x15) { /* ^U */
			n = 0;
			continue;
		}
		if (n + 1 >= size)
			return -E2BIG;
		buf[n++] = (char)ch;
	}
	buf[n] = '\0';
	return (int)n;
}

/* Prompt on the controlling terminal; without echo for passwords. */
int prompt_tty(const char *prompt, char *buf, size_t size, bool echo)
{
	struct termios old, quiet;
	int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
	int r;

	if (fd < 0)
		return -ENOTTY;
	if (tcgetattr(fd, &old) < 0) {
		close(fd);
		return -ENOTTY;
	}
	if (echo) {
		if (write(fd, prompt, strlen(prompt)) < 0) {
			close(fd);
			return -ENOTTY;
		}
		r = read_line_fd(fd, buf, size);
		close(fd);
		return r;
	}
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ICANON | ISIG);
	quiet.c_cc[VMIN] = 1;
	quiet.c_cc[VTIME] = 0;
	/* Echo goes off (dropping anything typed ahead) before the prompt
	 * shows, so nothing typed after it can be flushed or echoed. */
	if (tcsetattr(fd, TCSAFLUSH, &quiet) < 0 || write(fd, prompt, strlen(prompt)) < 0) {
		tcsetattr(fd, TCSANOW, &old);
		close(fd);
		return -ENOTTY;
	}
	r = read_secret(fd, buf, size);
	tcsetattr(fd, TCSANOW, &old);
	if (write(fd, "\n", 1) < 0 && r >= 0)
		r = -errno;
	close(fd);
	return r;
}


/* The password from --password-stdin, --password-file or the terminal.
 * Returns 0 or an exit status, with the message printed. */
int get_password(const struct pw_opts *o, const char *user, bool twice, char *pw, size_t size)
{
	int r;

	if (o->from_stdin) {
		r = read_line_fd(0, pw, size);
	} else if (o->file) {
		int fd = open(o->file, O_RDONLY | O_CLOEXEC);

		if (fd < 0) {
			errmsg("cannot read the password file %s: %s", o->file, strerror(errno));
			return EXIT_USAGE;
		}
		r = read_line_fd(fd, pw, size);
		close(fd);
	} else {
		char prompt[128], again[PASSWORD_MAX];

		snprintf(prompt, sizeof(prompt), "Password for %s: ", user);
		r = prompt_tty(prompt, pw, size, false);
		if (r == -ENOTTY) {
			errmsg("no terminal to ask the password on: use --password-stdin or --password-file FILE");
			return EXIT_USAGE;
		}
		if (r >= 0 && twice) {
			int r2 = prompt_tty("Repeat password: ", again, sizeof(again), false);

			if (r2 < 0) {
				r = r2;
			} else if (strcmp(pw, again) != 0) {
				explicit_bzero(again, sizeof(again));
				errmsg("the passwords do not match: nothing was changed");
				return EXIT_USAGE;
			}
			explicit_bzero(again, sizeof(again));
		}
	}
	if (r == -ECANCELED) {
		errmsg("cancelled");
		return EXIT_FAIL;
	}
	if (r == -E2BIG) {
		errmsg("the password is longer than %d bytes", PASSWORD_MAX - 1);
		return EXIT_USAGE;
	}
	if (r < 0) {
		errmsg("cannot read the password: %s", strerror(-r));
		return EXIT_FAIL;
	}
	if (r == 0) {
		errmsg("the password is empty");
		return EXIT_USAGE;
	}
	if (!valid_utf8(pw, (size_t)r)) {
		errmsg("the password is not valid UTF-8");
		return EXIT_USAGE;
	}
	return EXIT_OK;
}
