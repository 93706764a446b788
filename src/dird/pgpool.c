/* SPDX-License-Identifier: MIT */
/* pgpool.c — see pgpool.h. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pgpool.h"

struct pgpool {
	char *conninfo;
	const char *const *prepared;
	size_t nprepared;
	pthread_mutex_t lock;
	pthread_cond_t released;   /* a connection went back to the pool */
	unsigned size;             /* connections at most */
	unsigned nopen;            /* open or being opened */
	unsigned nidle;
	struct pgconn **idle;      /* size slots */
	uint64_t queries;          /* statements sent */
};

/* Server notices (e.g. "extension already exists") are for debugging. */
static void notice_log(void *arg, const char *message)
{
	size_t n = strlen(message);

	(void)arg;
	log_debug("postgresql: %.*s", (int)(n && message[n - 1] == '\n' ? n - 1 : n), message);
}

const char *pg_message(PGconn *c)
{
	static __thread char buf[512];
	const char *m = PQerrorMessage(c);
	size_t n = strlen(m);

	while (n && (m[n - 1] == '\n' || m[n - 1] == ' '))
		n--;
	snprintf(buf, sizeof(buf), "%.*s", (int)n, m);
	return buf;
}

static struct pgconn *connect_one(struct pgpool *p)
{
	struct pgconn *cn = calloc(1, sizeof(*cn));
	PGconn *c;

	if (!cn || !(c = PQconnectdb(p->conninfo))) {
		log_err("database: out of memory connecting to PostgreSQL");
		free(cn);
		return NULL;
	}
	cn->pg = c;
	cn->pool = p;
	if (PQstatus(c) != CONNECTION_OK) {
		log_err("database: cannot connect to PostgreSQL: %s", pg_message(c));
		goto fail;
	}
	PQsetNoticeProcessor(c, notice_log, NULL);
	if (PQclientEncoding(c) != pg_char_to_encoding("UTF8") && PQsetClientEncoding(c, "UTF8") != 0) {
		log_err("database: cannot use UTF-8 with PostgreSQL: %s", pg_message(c));
		goto fail;
	}
	return cn;
fail:
	PQfinish(c);
	free(cn);
	return NULL;
}

static void conn_free(struct pgconn *c)
{
	PQfinish(c->pg);
	free(c);
}

void pgpool_close(struct pgpool *p)
{
	if (!p)
		return;
	for (unsigned i = 0; i < p->nidle; i++)
		conn_free(p->idle[i]);
	free(p->idle);
	free(p->conninfo);
	pthread_cond_destroy(&p->released);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

int pgpool_open(const char *conninfo, unsigned size, const char *const *prepared, size_t nprepared,
		struct pgpool **out, struct pgconn **first)
{
	struct pgpool *p = calloc(1, sizeof(*p));
	char *perr = NULL;
	PQconninfoOption *opts;

	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->released, NULL);
	p->prepared = prepared;
	p->nprepared = nprepared < 64 ? nprepared : 64;
	p->size = size ? size : 1;
	p->conninfo = strdup(conninfo);
	p->idle = calloc(p->size, sizeof(*p->idle));
	if (!p->conninfo || !p->idle) {
		pgpool_close(p);
		return -ENOMEM;
	}
	/* Say what is wrong with the URI before trying to connect with it. */
	opts = PQconninfoParse(conninfo, &perr);
	if (!opts) {
		log_err("database: not a valid PostgreSQL URI: %s", perr ? perr : "out of memory");
		PQfreemem(perr);
		pgpool_close(p);
		return -EINVAL;
	}
	PQconninfoFree(opts);
	p->nopen = 1;
	*first = connect_one(p);
	if (!*first) {
		pgpool_close(p);
		return -EIO;
	}
	*out = p;
	return 0;
}

const char *pgpool_conninfo(const struct pgpool *p)
{
	return p->conninfo;
}

uint64_t pgpool_queries(struct pgpool *p)
{
	return __atomic_load_n(&p->queries, __ATOMIC_RELAXED);
}

struct pgconn *pgpool_get(struct pgpool *p)
{
	struct pgconn *c = NULL;

	pthread_mutex_lock(&p->lock);
	while (p->nidle == 0 && p->nopen == p->size)
		pthread_cond_wait(&p->released, &p->lock);
	if (p->nidle > 0) {
		c = p->idle[--p->nidle];
		pthread_mutex_unlock(&p->lock);
		if (PQstatus(c->pg) == CONNECTION_OK)
			return c;
		PQreset(c->pg);
		c->prepared = 0; /* a new session has none */
		if (PQstatus(c->pg) == CONNECTION_OK) {
			log_notice("database: reconnected to PostgreSQL");
			return c;
		}
		log_err("database: cannot reconnect to PostgreSQL: %s", pg_message(c->pg));
		conn_free(c);
	} else {
		p->nopen++;
		pthread_mutex_unlock(&p->lock);
		c = connect_one(p);
		if (c)
			return c;
	}
	pthread_mutex_lock(&p->lock);
	p->nopen--;
	pthread_cond_signal(&p->released);
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

void pgpool_put(struct pgconn *c)
{
	struct pgpool *p = c->pool;

	if (PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		PQclear(PQexec(c->pg, "ROLLBACK"));
	pthread_mutex_lock(&p->lock);
	p->idle[p->nidle++] = c;
	pthread_cond_signal(&p->released);
	pthread_mutex_unlock(&p->lock);
}

PGresult *pg_run(struct pgconn *c, const char *sql, int nparams, const char *const *params,
		 const char *what, int *err)
{
	struct pgpool *p = c->pool;
	PGresult *res = NULL;
	ExecStatusType status;
	const char *state;
	size_t i;

	for (i = 0; i < p->nprepared && p->prepared[i] != sql; i++)
		;
	__atomic_add_fetch(&p->queries, 1, __ATOMIC_RELAXED);
	if (i < p->nprepared) {
		char name[24];

		snprintf(name, sizeof(name), "s%zu", i);
		if (!(c->prepared & (UINT64_C(1) << i))) {
			res = PQprepare(c->pg, name, sql, nparams, NULL);
			if (PQresultStatus(res) == PGRES_COMMAND_OK) {
				c->prepared |= UINT64_C(1) << i;
				PQclear(res);
				res = NULL;
			}
		}
		if (!res)
			res = PQexecPrepared(c->pg, name, nparams, params, NULL, NULL, 0);
	} else {
		res = PQexecParams(c->pg, sql, nparams, NULL, params, NULL, NULL, 0);
	}
	status = PQresultStatus(res);
	if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
		return res;
	state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (state && strcmp(state, "23505") == 0) {
		*err = -EEXIST;
	} else {
		log_err("database: %s: %s", what, pg_message(c->pg));
		*err = PQstatus(c->pg) != CONNECTION_OK ? -EAGAIN : -EIO;
	}
	PQclear(res);
	return NULL;
}

PGresult *pg_query(struct pgpool *p, struct pgconn **cp, const char *sql, int nparams,
		   const char *const *params, enum pg_retry retry, const char *what, int *err)
{
	for (int attempt = 0;; attempt++) {
		struct pgconn *c = pgpool_get(p);
		PGresult *res;

		if (!c) {
			*err = -EAGAIN;
			return NULL;
		}
		res = pg_run(c, sql, nparams, params, what, err);
		if (res) {
			*cp = c;
			return res;
		}
		if (retry == PG_RETRY && attempt == 0 && PQstatus(c->pg) != CONNECTION_OK) {
			pgpool_put(c);
			continue;
		}
		pgpool_put(c);
		return NULL;
	}
}

void pg_done(struct pgconn *c, PGresult *res)
{
	PQclear(res);
	pgpool_put(c);
}

int pg_exec_rows(struct pgpool *p, const char *sql, int nparams, const char *const *params,
		 const char *what)
{
	struct pgconn *c;
	PGresult *res;
	int err;

	res = pg_query(p, &c, sql, nparams, params, PG_NO_RETRY, what, &err);
	if (!res)
		return err;
	err = strcmp(PQcmdTuples(res), "0") == 0 ? -ENOENT : 0;
	pg_done(c, res);
	return err;
}

int64_t pg_value_int64(const PGresult *res, int row, int col)
{
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}
