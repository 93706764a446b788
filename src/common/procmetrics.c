/* SPDX-License-Identifier: MIT */
/* procmetrics.c — process_* and build-info metrics (procmetrics.h), read
 * from getrusage(2), /proc/self and getrlimit(2). */
#include "config.h"

#include <dirent.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "procmetrics.h"

static double start_time; /* Unix seconds */

void procmetrics_init(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

void procmetrics_write(struct evbuffer *b, const char *program)
{
	struct rusage ru;
	struct rlimit rl;
	unsigned long long vsize_pages, rss_pages;
	long page = sysconf(_SC_PAGESIZE), fds = open_fds();
	FILE *f;

	if (getrusage(RUSAGE_SELF, &ru) == 0)
		evbuffer_add_printf(b, "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
				    "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.6f\n",
				    (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
				    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
	f = fopen("/proc/self/statm", "re");
	if (f) {
		if (fscanf(f, "%llu %llu", &vsize_pages, &rss_pages) == 2 && page > 0)
			evbuffer_add_printf(b, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
					    "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %llu\n"
					    "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
					    "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %llu\n",
					    rss_pages * (unsigned long long)page, vsize_pages * (unsigned long long)page);
		fclose(f);
	}
	if (fds >= 0)
		evbuffer_add_printf(b, "# HELP process_open_fds Number of open file descriptors.\n"
				    "# TYPE process_open_fds gauge\nprocess_open_fds %ld\n", fds);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		evbuffer_add_printf(b, "# HELP process_max_fds Maximum number of open file descriptors.\n"
				    "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n",
				    (unsigned long long)rl.rlim_cur);
	if (start_time > 0)
		evbuffer_add_printf(b, "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
				    "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.3f\n",
				    start_time);
	evbuffer_add_printf(b, "# HELP p2p_build_info The program and version of this build; the value is always 1.\n"
			    "# TYPE p2p_build_info gauge\np2p_build_info{program=\"%s\",version=\"%s\"} 1\n",
			    program, PACKAGE_VERSION);
}
