/* SPDX-License-Identifier: MIT */
/* pool.h — a few worker threads for work that must not stall the event loop
 * (password hashing, database calls that may wait on the network).
 *
 * A job's run() executes on a worker; its done() then executes on the event
 * loop's thread, in the order the jobs finished. Nothing else crosses
 * threads: run() must touch only the job and thread-safe state.
 *
 * A pool made without an event base delivers nothing: run() hands its
 * result back itself (rpc.c posts it to its gRPC completion queue), and
 * the pool never touches a job once its run() has begun.
 */
#ifndef P2P_POOL_H
#define P2P_POOL_H

#include <stdbool.h>

#include <event2/event.h>

struct pool_job {
	void (*run)(struct pool_job *job);
	void (*done)(struct pool_job *job);
	/* At pool_free, for a job that will never get its done(): queued, or
	 * finished but not delivered. May be NULL. */
	void (*discard)(struct pool_job *job);
	struct pool_job *next;
};

struct pool;

/* 0 or a negative errno; threads > 0; base may be NULL (see above). */
int pool_new(struct event_base *base, int threads, struct pool **out);
/* Queues job; false only after pool_free has begun. */
bool pool_submit(struct pool *p, struct pool_job *job);
/* Waits for running jobs, then discards the rest (see pool_job). */
void pool_free(struct pool *p);

#endif
