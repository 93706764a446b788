/* SPDX-License-Identifier: MIT */
/* migrate.c — `p2p-dird migrate FILE`: copy a directory kept in an SQLite
 * file into an empty PostgreSQL database, rows and ids as they are, so
 * users, logins, indexed files and tickets carry over.
 *
 * Both databases are first opened through the store (which brings each to
 * the latest schema); the copy then reads SQLite and streams every table
 * with COPY in one PostgreSQL transaction that holds the migration lock, so
 * a failure leaves the target as empty as it was.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "dird.h"
#include "log.h"
#include "pgpool.h"
#include "store_backend.h"

struct table {
	const char *name, *columns;
};

/* In foreign-key order. */
static const struct table tables[] = {
	{ "users", "id, name, hash, created" },
	{ "sessions", "token_hash, user_id, expires" },
	{ "peers", "user_id, ip, port, folder, last_seen, online" },
	{ "files", "id, peer_id, name, size, sha256" },
	{ "tickets", "ticket_hash, user_id, peer_id, file, expires" },
};

struct buf {
	char *p;
	size_t len, cap;
};

static int buf_put(struct buf *b, const char *s, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = (b->len + n) * 2 + 4096;
		char *p = realloc(b->p, cap);

		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	return 0;
}

/* One value in COPY's text format. */
static int buf_put_value(struct buf *b, const unsigned char *v)
{
	if (!v)
		return buf_put(b, "\\N", 2);
	for (; *v; v++) {
		const char *esc = *v == '\\' ? "\\\\" : *v == '\n' ? "\\n" : *v == '\r' ? "\\r" : *v == '\t' ? "\\t" : NULL;
		int r = esc ? buf_put(b, esc, 2) : buf_put(b, (const char *)v, 1);

		if (r < 0)
			return r;
	}
	return 0;
}

static PGresult *exec_ok(PGconn *c, const char *sql, ExecStatusType want)
{
	PGresult *res = PQexec(c, sql);

	if (PQresultStatus(res) != want) {
		log_err("migrate: %s: %s", sql, pg_message(c));
		PQclear(res);
		return NULL;
	}
	return res;
}

static int copy_table(sqlite3 *src, PGconn *dst, const struct table *t, long long *rows)
{
	char sql[256];
	sqlite3_stmt *q = NULL;
	struct buf b = { 0 };
	PGresult *res;
	int rc, r = 0, ncol;

	*rows = 0;
	snprintf(sql, sizeof(sql), "SELECT %s FROM %s", t->columns, t->name);
	if (sqlite3_prepare_v2(src, sql, -1, &q, NULL) != SQLITE_OK) {
		log_err("migrate: reading %s: %s", t->name, sqlite3_errmsg(src));
		return -EIO;
	}
	snprintf(sql, sizeof(sql), "COPY %s (%s) FROM STDIN", t->name, t->columns);
	res = exec_ok(dst, sql, PGRES_COPY_IN);
	if (!res) {
		sqlite3_finalize(q);
		return -EIO;
	}
	PQclear(res);
	ncol = sqlite3_column_count(q);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		for (int i = 0; r == 0 && i < ncol; i++) {
			if (i)
				r = buf_put(&b, "\t", 1);
			if (r == 0)
				r = buf_put_value(&b, sqlite3_column_text(q, i));
		}
		if (r == 0)
			r = buf_put(&b, "\n", 1);
		if (r < 0)
			break;
		(*rows)++;
		if (b.len >= 1 << 20) {
			if (PQputCopyData(dst, b.p, (int)b.len) != 1) {
				r = -EIO;
				break;
			}
			b.len = 0;
		}
	}
	if (r == 0 && rc != SQLITE_DONE) {
		log_err("migrate: reading %s: %s", t->name, sqlite3_errmsg(src));
		r = -EIO;
	}
	if (r == 0 && b.len && PQputCopyData(dst, b.p, (int)b.len) != 1)
		r = -EIO;
	if (PQputCopyEnd(dst, r == 0 ? NULL : "p2p-dird migrate failed") != 1)
		r = r ? r : -EIO;
	while ((res = PQgetResult(dst))) {
		if (PQresultStatus(res) != PGRES_COMMAND_OK && r == 0) {
			log_err("migrate: copying %s: %s", t->name, pg_message(dst));
			r = -EIO;
		}
		PQclear(res);
	}
	free(b.p);
	sqlite3_finalize(q);
	return r;
}

static int copy_all(sqlite3 *src, PGconn *dst)
{
	char lock[192];
	PGresult *res;
	long long rows;
	int r;

	/* No replica migrates or writes while the copy runs. */
	snprintf(lock, sizeof(lock), "SELECT pg_advisory_xact_lock(%" PRId64 ");"
		 "LOCK TABLE users, sessions, peers, files, tickets IN EXCLUSIVE MODE", STORE_PG_LOCK_MIGRATE);
	if (!(res = exec_ok(dst, "BEGIN", PGRES_COMMAND_OK)))
		return -EIO;
	PQclear(res);
	if (!(res = exec_ok(dst, lock, PGRES_COMMAND_OK)))
		return -EIO;
	PQclear(res);
	if (!(res = exec_ok(dst, "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM peers)",
			    PGRES_TUPLES_OK)))
		return -EIO;
	r = strcmp(PQgetvalue(res, 0, 0), "0") == 0 ? 0 : -EEXIST;
	PQclear(res);
	if (r < 0) {
		log_err("migrate: the PostgreSQL database already holds users; migrate only into an empty one");
		return r;
	}
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		r = copy_table(src, dst, &tables[i], &rows);
		if (r < 0)
			return r;
		log_info("migrate: %s: %lld rows", tables[i].name, rows);
	}
	/* New rows must get ids after the copied ones. */
	if (!(res = exec_ok(dst,
			    "SELECT setval(pg_get_serial_sequence('users', 'id'), coalesce(max(id), 0) + 1, false) FROM users;"
			    "SELECT setval(pg_get_serial_sequence('files', 'id'), coalesce(max(id), 0) + 1, false) FROM files",
			    PGRES_TUPLES_OK)))
		return -EIO;
	PQclear(res);
	if (!(res = exec_ok(dst, "COMMIT", PGRES_COMMAND_OK)))
		return -EIO;
	PQclear(res);
	return 0;
}

int dird_migrate(const char *from, const char *to)
{
	struct store *st;
	sqlite3 *src = NULL;
	PGconn *dst = NULL;
	int r;

	if (store_is_postgresql(from) || !store_is_postgresql(to)) {
		log_err("migrate copies an SQLite file into PostgreSQL: p2p-dird --database postgresql://... migrate FILE");
		return -EINVAL;
	}
	if (access(from, R_OK) < 0)
		return log_errno(LOG_ERR, errno, "migrate: cannot read %s", from);
	/* Bring both to the latest schema; this also creates the target's tables. */
	r = store_open(from, &st);
	if (r < 0)
		return r;
	store_close(st);
	r = store_open(to, &st);
	if (r < 0)
		return r;
	store_close(st);

	if (sqlite3_open_v2(from, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		log_err("migrate: cannot open %s: %s", from, src ? sqlite3_errmsg(src) : "out of memory");
		r = -EIO;
		goto out;
	}
	dst = PQconnectdb(to);
	if (PQstatus(dst) != CONNECTION_OK) {
		log_err("migrate: cannot connect to PostgreSQL: %s", pg_message(dst));
		r = -EIO;
		goto out;
	}
	/* One snapshot of the source for the whole copy. */
	if (sqlite3_exec(src, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		log_err("migrate: %s: %s", from, sqlite3_errmsg(src));
		r = -EIO;
		goto out;
	}
	r = copy_all(src, dst);
	if (r == 0)
		log_info("migrate: copied %s into PostgreSQL", from);
out:
	PQfinish(dst);
	sqlite3_close(src);
	return r;
}
