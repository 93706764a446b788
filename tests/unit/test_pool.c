/* SPDX-License-Identifier: MIT */
/* Unit tests for src/common/pool.c: done() on the loop's thread, a pool
 * without an event base (run() delivers, the job is never touched after),
 * and pool_free discarding what was never delivered. */
#include "config.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "pool.h"

struct job {
	struct pool_job pj;
	int n;
	pthread_t ran_on;
};

static atomic_int ran, done, discarded;
static pthread_t loop_thread;

static void run_count(struct pool_job *pj)
{
	struct job *j = (struct job *)pj;

	j->ran_on = pthread_self();
	atomic_fetch_add(&ran, 1);
}

static void done_count(struct pool_job *pj)
{
	struct job *j = (struct job *)pj;

	assert_true(pthread_equal(pthread_self(), loop_thread));
	assert_false(pthread_equal(j->ran_on, loop_thread));
	atomic_fetch_add(&done, 1);
	free(j);
}

static void discard_count(struct pool_job *pj)
{
	atomic_fetch_add(&discarded, 1);
	free(pj);
}

static void test_done_runs_on_the_loop(void **state)
{
	struct event_base *base = event_base_new();
	struct pool *p;

	(void)state;
	atomic_store(&ran, 0);
	atomic_store(&done, 0);
	loop_thread = pthread_self();
	assert_int_equal(pool_new(base, 3, &p), 0);
	for (int i = 0; i < 200; i++) {
		struct job *j = calloc(1, sizeof(*j));

		j->pj.run = run_count;
		j->pj.done = done_count;
		j->n = i;
		assert_true(pool_submit(p, &j->pj));
	}
	while (atomic_load(&done) < 200)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(atomic_load(&ran), 200);
	pool_free(p);
	event_base_free(base);
}

/* Without a base, run() hands the result back itself and may free the job
 * at once: the pool must not touch it afterwards (ASan would see it). */
static void run_and_free(struct pool_job *pj)
{
	free(pj);
	atomic_fetch_add(&ran, 1);
}

static void test_without_a_base_run_delivers(void **state)
{
	struct pool *p;

	(void)state;
	atomic_store(&ran, 0);
	assert_int_equal(pool_new(NULL, 4, &p), 0);
	for (int i = 0; i < 500; i++) {
		struct pool_job *pj = calloc(1, sizeof(*pj));

		pj->run = run_and_free;
		assert_true(pool_submit(p, pj));
	}
	for (int i = 0; i < 5000 && atomic_load(&ran) < 500; i++)
		usleep(1000);
	assert_int_equal(atomic_load(&ran), 500);
	pool_free(p);
}

static atomic_int release;

static void run_blocker(struct pool_job *pj)
{
	(void)pj;
	while (!atomic_load(&release))
		usleep(1000);
}

static void *release_later(void *arg)
{
	(void)arg;
	usleep(100 * 1000);
	atomic_store(&release, 1);
	return NULL;
}

static void test_free_discards_what_was_not_delivered(void **state)
{
	struct event_base *base = event_base_new();
	struct pool *p;
	pthread_t t;

	(void)state;
	atomic_store(&discarded, 0);
	atomic_store(&release, 0);
	assert_int_equal(pool_new(base, 1, &p), 0);
	for (int i = 0; i < 6; i++) {
		struct job *j = calloc(1, sizeof(*j));

		j->pj.run = i == 0 ? run_blocker : run_count;
		j->pj.done = done_count;
		j->pj.discard = discard_count;
		assert_true(pool_submit(p, &j->pj));
	}
	usleep(20 * 1000); /* the blocker is running */
	pthread_create(&t, NULL, release_later, NULL);
	pool_free(p); /* waits for the blocker; the five queued are discarded, and the blocker too */
	pthread_join(t, NULL);
	assert_int_equal(atomic_load(&discarded), 6);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_done_runs_on_the_loop),
		cmocka_unit_test(test_without_a_base_run_delivers),
		cmocka_unit_test(test_free_discards_what_was_not_delivered),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
