/* SPDX-License-Identifier: MIT */
/* pool.c — worker threads handing results back to the event loop (pool.h).
 *
 * Queued jobs wait on a list under a mutex; finished jobs go on a second
 * list and an eventfd wakes the loop, which calls done() for each.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "pool.h"

struct pool {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct pool_job *queue, **queue_tail;
	struct pool_job *finished, **finished_tail;
	bool stopping;
	int efd;
	struct event *ev;
	pthread_t *threads;
	int nthreads;
};

static void *worker(void *arg)
{
	struct pool *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct pool_job *job;
		bool was_empty;

		while (!p->queue && !p->stopping)
			pthread_cond_wait(&p->wake, &p->lock);
		if (p->stopping)
			break;
		job = p->queue;
		p->queue = job->next;
		if (!p->queue)
			p->queue_tail = &p->queue;
		pthread_mutex_unlock(&p->lock);

		job->run(job);

		pthread_mutex_lock(&p->lock);
		if (!p->ev) /* run() delivered it; it may be gone already */
			continue;
		job->next = NULL;
		was_empty = !p->finished;
		*p->finished_tail = job;
		p->finished_tail = &job->next;
		if (was_empty) {
			uint64_t one = 1;

			if (write(p->efd, &one, sizeof(one)) < 0)
				log_errno(LOG_ERR, errno, "pool: eventfd write");
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* On the loop: deliver every finished job. */
static void on_finished(evutil_socket_t fd, short what, void *arg)
{
	struct pool *p = arg;
	struct pool_job *job;
	uint64_t n;

	(void)what;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_errno(LOG_ERR, errno, "pool: eventfd read");
	pthread_mutex_lock(&p->lock);
	job = p->finished;
	p->finished = NULL;
	p->finished_tail = &p->finished;
	pthread_mutex_unlock(&p->lock);
	while (job) {
		struct pool_job *next = job->next;

		job->done(job);
		job = next;
	}
}

int pool_new(struct event_base *base, int threads, struct pool **out)
{
	struct pool *p = calloc(1, sizeof(*p));
	int r;

	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	p->queue_tail = &p->queue;
	p->finished_tail = &p->finished;
	p->efd = -1;
	if (base) {
		p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (p->efd < 0) {
			r = log_errno(LOG_ERR, errno, "pool: eventfd");
			goto fail;
		}
		p->ev = event_new(base, p->efd, EV_READ | EV_PERSIST, on_finished, p);
		if (!p->ev || event_add(p->ev, NULL) < 0) {
			r = -ENOMEM;
			goto fail;
		}
	}
	p->threads = calloc((size_t)threads, sizeof(*p->threads));
	if (!p->threads) {
		r = -ENOMEM;
		goto fail;
	}
	for (; p->nthreads < threads; p->nthreads++) {
		r = pthread_create(&p->threads[p->nthreads], NULL, worker, p);
		if (r) {
			r = log_errno(LOG_ERR, r, "pool: starting a worker thread");
			goto fail;
		}
	}
	*out = p;
	return 0;
fail:
	pool_free(p);
	return r;
}

bool pool_submit(struct pool *p, struct pool_job *job)
{
	pthread_mutex_lock(&p->lock);
	if (p->stopping) {
		pthread_mutex_unlock(&p->lock);
		return false;
	}
	job->next = NULL;
	*p->queue_tail = job;
	p->queue_tail = &job->next;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	return true;
}

void pool_free(struct pool *p)
{
	struct pool_job *lists[2];

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	lists[0] = p->queue;
	lists[1] = p->finished;
	for (int i = 0; i < 2; i++)
		for (struct pool_job *job = lists[i], *next; job; job = next) {
			next = job->next;
			if (job->discard)
				job->discard(job);
		}
	if (p->ev)
		event_free(p->ev);
	if (p->efd >= 0)
		close(p->efd);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->wake);
	free(p->threads);
	free(p);
}
