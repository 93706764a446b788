/* SPDX-License-Identifier: MIT */
/* watch.c — owns noticing that the shared folder changed (inotify, then
 * 0.5 s of quiet) and running its scans: the first from the hash cache on
 * the loop, every other one on a worker thread (src/common/pool.c) so that
 * hashing a big file never stalls the loop, one at a time (a change during
 * a scan asks for one more). After each scan it has the session index the
 * new list, and says how far hashing got (STATUS=, Status "hashing"). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"
#include "peerd.h"
#include "pool.h"

struct waiter {
	watch_done *cb;
	void *arg;
	struct waiter *next;
};

struct watch {
	struct peerd *p;
	int inotify_fd;
	struct event *ev_inotify, *ev_settle;
	struct pool *pool;
	struct pool_job job;
	int result;              /* the worker's share_scan_ex */
	bool running, again;
	int stop;                /* atomically: the worker should give up */
	struct waiter *now, *next;
	pthread_mutex_t lock;    /* progress, written by the worker */
	char progress[160];
	char shown[160];         /* the loop's copy */
};

static void tell(struct waiter *list, int n, enum dir_status st, const char *message)
{
	while (list) {
		struct waiter *w = list;

		list = w->next;
		if (w->cb)
			w->cb(w->arg, n, st, message);
		free(w);
	}
}

static void on_progress(void *arg, size_t files_done, size_t files_todo, uint64_t bytes_done, uint64_t bytes_todo)
{
	struct watch *w = arg;

	pthread_mutex_lock(&w->lock);
	if (files_todo)
		snprintf(w->progress, sizeof(w->progress), "hashing %zu of %zu new file(s), %.1f of %.1f GiB",
			 files_done < files_todo ? files_done + 1 : files_todo, files_todo,
			 (double)bytes_done / (1 << 30), (double)bytes_todo / (1 << 30));
	pthread_mutex_unlock(&w->lock);
	if (files_todo)
		notify_status("%s", w->progress); /* sd_notify may be called from any thread */
}

static void scan_run(struct pool_job *job)
{
	struct watch *w = (struct watch *)((char *)job - offsetof(struct watch, job));
	struct share_scan_opts o = { .stop = &w->stop, .progress = on_progress, .arg = w };

	w->result = share_scan_ex(&w->p->share, &w->p->set.files, &o);
}

static void start_scan(struct watch *w);

struct index_call {
	struct watch *w;
	struct waiter *told;
	int n;
};

static void scan_indexed(void *arg, enum dir_status st, const char *message, struct json_object *extra)
{
	struct index_call *ic = arg;

	tell(ic->told, ic->n, st, message);
	free(ic);
}

static void scan_done(struct pool_job *job)
{
	struct watch *w = (struct watch *)((char *)job - offsetof(struct watch, job));
	struct waiter *told = w->now;
	struct index_call *ic;
	int n = w->result;

	w->running = false;
	w->now = NULL;
	pthread_mutex_lock(&w->lock);
	w->progress[0] = '\0';
	pthread_mutex_unlock(&w->lock);
	if (n >= 0 && session_logged_in(w->p->session) && (ic = calloc(1, sizeof(*ic)))) {
		ic->w = w;
		ic->told = told;
		ic->n = n;
		session_index(w->p->session, scan_indexed, ic);
	} else {
		tell(told, n, session_logged_in(w->p->session) ? DIR_NO_MEMORY : DIR_NOT_LOGGED_IN,
		     n < 0 ? "cannot read the shared folder" : "not logged in");
	}
	session_notify_status(w->p->session);
	if (w->again)
		start_scan(w);
}

static void scan_discard(struct pool_job *job)
{
}

static void start_scan(struct watch *w)
{
	w->again = false;
	w->now = w->next;
	w->next = NULL;
	w->running = true;
	if (!pool_submit(w->pool, &w->job)) {
		w->running = false;
		tell(w->now, -ECANCELED, DIR_CANCELLED, "stopping");
		w->now = NULL;
	}
}

void watch_rescan(struct watch *w, watch_done *cb, void *arg)
{
	struct waiter *wt = calloc(1, sizeof(*wt));

	if (!wt) {
		if (cb)
			cb(arg, -ENOMEM, DIR_NO_MEMORY, "out of memory");
		return;
	}
	wt->cb = cb;
	wt->arg = arg;
	wt->next = w->next;
	w->next = wt;
	if (w->running)
		w->again = true; /* the folder changed since that scan began */
	else
		start_scan(w);
}

const char *watch_progress(struct watch *w)
{
	pthread_mutex_lock(&w->lock);
	memcpy(w->shown, w->progress, sizeof(w->shown));
	pthread_mutex_unlock(&w->lock);
	return w->shown[0] ? w->shown : NULL;
}

/* The folder changed: wait for quiet (0.5 s), then re-scan and re-index. */
static void on_settled(evutil_socket_t fd, short what, void *arg)
{
	watch_rescan(arg, NULL, NULL);
}

static void on_inotify(evutil_socket_t fd, short what, void *arg)
{
	struct watch *w = arg;
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	struct timeval quiet = { 0, 500000 };
	bool relevant = false;
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		for (char *q = buf; q < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)q;

			/* Our own partial downloads are not the folder's content. */
			if (!(ev->len && strcmp(ev->name, ".p2p-partial") == 0))
				relevant = true;
			q += sizeof(*ev) + ev->len;
		}
	if (relevant)
		event_add(w->ev_settle, &quiet); /* re-arming restarts the wait */
}

int watch_new(struct peerd *p, struct watch **out)
{
	struct watch *w = calloc(1, sizeof(*w));
	int r;

	if (!w)
		return -ENOMEM;
	w->p = p;
	w->inotify_fd = -1;
	pthread_mutex_init(&w->lock, NULL);
	w->job.run = scan_run;
	w->job.done = scan_done;
	w->job.discard = scan_discard;
	r = pool_new(p->base, 1, &w->pool);
	if (r < 0 || !(w->ev_settle = evtimer_new(p->base, on_settled, w))) {
		watch_free(w);
		return r < 0 ? r : -ENOMEM;
	}
	*out = w;
	return 0;
}

int watch_start(struct watch *w)
{
	struct peerd *p = w->p;
	struct share_scan_opts cached = { .cache_only = true };
	int fd, n;

	n = share_scan_ex(&p->share, &p->set.files, &cached);
	if (n < 0)
		return n;
	fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fd < 0 || inotify_add_watch(fd, p->set.folder, IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE |
					IN_CREATE | IN_ATTRIB | IN_ONLYDIR) < 0) {
		log_errno(LOG_WARNING, errno, "cannot watch %s; re-index with p2pctl index or SIGHUP", p->set.folder);
		if (fd >= 0)
			close(fd);
	} else {
		w->inotify_fd = fd;
		w->ev_inotify = event_new(p->base, fd, EV_READ | EV_PERSIST, on_inotify, w);
		if (w->ev_inotify)
			event_add(w->ev_inotify, NULL);
	}
	watch_rescan(w, NULL, NULL); /* hash what the cache does not know, on the worker */
	return n;
}

void watch_free(struct watch *w)
{
	if (!w)
		return;
	__atomic_store_n(&w->stop, 1, __ATOMIC_RELAXED);
	if (w->pool)
		pool_free(w->pool); /* waits for the scan, which gives up at the next MiB */
	tell(w->now, -ECANCELED, DIR_CANCELLED, "stopping");
	tell(w->next, -ECANCELED, DIR_CANCELLED, "stopping");
	if (w->ev_inotify)
		event_free(w->ev_inotify);
	if (w->ev_settle)
		event_free(w->ev_settle);
	if (w->inotify_fd >= 0)
		close(w->inotify_fd);
	pthread_mutex_destroy(&w->lock);
	free(w);
}
