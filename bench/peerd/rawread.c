/* SPDX-License-Identifier: MIT */
/* rawread — the discarding reader of bench/peerd/bench.py's raw TCP
 * baseline, in C like readclient so that neither side of the comparison is
 * limited by Python.
 *
 *   rawread HOST PORT
 *
 * Connects, reads to end of stream into a 1 MiB buffer and prints
 * "BYTES SECONDS". Exits 0, or 1 on an error. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	static char buf[1 << 20];
	struct sockaddr_in sa = { .sin_family = AF_INET };
	unsigned long long got = 0;
	double t0;
	ssize_t n;
	int fd;

	if (argc != 3 || inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
		fprintf(stderr, "usage: rawread IPV4-ADDRESS PORT\n");
		return 2;
	}
	sa.sin_port = htons((unsigned short)atoi(argv[2]));
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "rawread: connect: %s\n", strerror(errno));
		return 1;
	}
	t0 = now();
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		got += (unsigned long long)n;
	if (n < 0) {
		fprintf(stderr, "rawread: read: %s\n", strerror(errno));
		return 1;
	}
	printf("%llu %.6f\n", got, now() - t0);
	close(fd);
	return 0;
}
