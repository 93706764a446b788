/* SPDX-License-Identifier: MIT */
/* pgpool.h — p2p-dird's pool of PostgreSQL connections (libpq), shared by
 * the worker threads of one process, and the one way statements are run on
 * them.
 *
 * Up to `size` connections are opened on demand; a caller that finds every
 * one busy waits for one (a mutex and a condition variable hand them out),
 * and holds it only while its statements run. A connection found broken is
 * reset before its next use. A statement listed in the pool's `prepared`
 * table is prepared once per connection, on first use, and run by name.
 *
 * Errors: a result is returned only when its status is PGRES_COMMAND_OK or
 * PGRES_TUPLES_OK; otherwise NULL with *err: -EEXIST for a unique
 * violation, -EAGAIN (logged) when the connection broke or none could be
 * opened, -EIO (logged) for anything else. */
#ifndef P2P_PGPOOL_H
#define P2P_PGPOOL_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

struct pgpool;

struct pgconn {
	struct pgpool *pool;
	PGconn *pg;
	uint64_t prepared; /* bit i: prepared[i] is prepared on pg */
};

/* What a statement may do when its connection breaks under it: a read is
 * tried once more on a fresh connection; a write is not, as the first try
 * may have committed. */
enum pg_retry { PG_NO_RETRY, PG_RETRY };

/* Checks conninfo (a URI, say what is wrong before connecting) and opens a
 * first connection, proving the server answers; it is handed to the caller
 * (*first, to migrate the schema with) and joins the pool at pgpool_put.
 * prepared (at most 64 statements) must outlive the pool. 0, -ENOMEM,
 * -EINVAL (bad URI) or -EIO (cannot connect; logged). */
int pgpool_open(const char *conninfo, unsigned size, const char *const *prepared, size_t nprepared,
		struct pgpool **out, struct pgconn **first);
/* Every connection must be back in the pool. */
void pgpool_close(struct pgpool *p);
const char *pgpool_conninfo(const struct pgpool *p);
/* Statements sent so far, by every connection. */
uint64_t pgpool_queries(struct pgpool *p);

/* A connection from the pool, or NULL: none could be opened (logged). */
struct pgconn *pgpool_get(struct pgpool *p);
/* Back to the pool; a transaction left open (a call that failed midway) is
 * rolled back first. */
void pgpool_put(struct pgconn *c);

/* sql with text parameters on c (see the top for errors). */
PGresult *pg_run(struct pgconn *c, const char *sql, int nparams, const char *const *params,
		 const char *what, int *err);
/* Takes a connection and runs one statement on it; the caller reads the
 * result, then gives both back with pg_done(). */
PGresult *pg_query(struct pgpool *p, struct pgconn **cp, const char *sql, int nparams,
		   const char *const *params, enum pg_retry retry, const char *what, int *err);
void pg_done(struct pgconn *c, PGresult *res);
/* Runs a statement for its effect: 0, -ENOENT when it touched no row, or
 * an error as above. */
int pg_exec_rows(struct pgpool *p, const char *sql, int nparams, const char *const *params,
		 const char *what);
int64_t pg_value_int64(const PGresult *res, int row, int col);
/* libpq's last message on c without its trailing newline (per thread). */
const char *pg_message(PGconn *c);

#endif
