/* SPDX-License-Identifier: MIT */
/* replica.c — the in-memory view of a PostgreSQL directory and the thread
 * that follows its change stream (see replica.h). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "log.h"
#include "pgpool.h"
#include "replica.h"
#include "validate.h"
#include "view.h"

/* Kinds of change rows (store_pg.c writes them). */
enum { CH_INDEX = 1, CH_HEARTBEAT = 2, CH_LOGOUT = 3, CH_USER_DELETE = 4 };

#define BATCH 1000
#define CACHE_SLOTS 65536         /* sessions, and tickets, each */
#define RETRY_MS 200              /* between connection attempts */

struct session_slot {
	char token_hash[65];
	char username[USERNAME_MAX + 1];
	int64_t user_id, expires_at;
};

struct ticket_slot {
	char ticket_hash[65];
	char username[USERNAME_MAX + 1];
	char peer[USERNAME_MAX + 1];
	char file[FILENAME_MAX_BYTES + 1];
	int64_t user_id, peer_id, expires_at;
};

struct replica {
	char *conninfo;
	pthread_t thread;
	bool started;
	int wake[2];              /* a byte here stops the follower */

	struct view *v;           /* never replaced: a reload swaps its content */
	int64_t seq;              /* last change applied (follower only writes) */
	char last[64];            /* that change's row, "kind user at" ("": unknown) */

	pthread_mutex_t cache_lock;
	uint64_t gen;             /* invalidations so far */
	struct session_slot *sessions;
	struct ticket_slot *tickets;

	pthread_mutex_t wait_lock;
	pthread_cond_t advanced;  /* seq or rounds moved on */
	uint64_t rounds;          /* follower wake-ups handled */
	int sock;                 /* the follower's socket, or -1 */
	bool busy;                /* woken, its round not finished */

	/* Read without locks by the request threads. */
	int64_t fresh_ns;         /* CLOCK_MONOTONIC when last known current */
	int64_t max_stale_ns;
	bool connected;
	int64_t seq_seen;
	uint64_t applied, reloads, queries, session_hits, session_misses;
};

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)
#define ADD(x, n) __atomic_add_fetch(&(x), (n), __ATOMIC_RELAXED)

static bool fresh(const struct replica *r)
{
	return mono_ns() - LOAD(r->fresh_ns) <= LOAD(r->max_stale_ns);
}

static void advance(struct replica *r, bool round)
{
	pthread_mutex_lock(&r->wait_lock);
	if (round)
		r->rounds++;
	pthread_cond_broadcast(&r->advanced);
	pthread_mutex_unlock(&r->wait_lock);
}

/* ---- the database side ---------------------------------------------------- */

static const char SQL_COUNTER[] = "SELECT seq FROM change_seq";
/* Logouts and user deletions wait for every follower's acknowledgement. */
static const char SQL_ACK[] =
	"INSERT INTO replica_acks(pid, seq) VALUES (pg_backend_pid(), $1)"
	" ON CONFLICT (pid) DO UPDATE SET seq = excluded.seq";
static const char SQL_CHANGE_AT[] = "SELECT kind, user_id, at FROM changes WHERE seq = $1";
static const char SQL_CHANGES[] =
	"SELECT seq, kind, user_id, at, coalesce(token_hash, '') FROM changes"
	" WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT " "1000";
static const char SQL_LOAD_PEERS[] =
	"SELECT p.user_id, u.name, p.ip, p.port, p.folder, p.last_seen, p.online"
	" FROM peers p JOIN users u ON u.id = p.user_id";
static const char SQL_LOAD_FILES[] = "SELECT peer_id, name, size, sha256 FROM files ORDER BY id";
static const char SQL_PEER[] =
	"SELECT u.name, p.ip, p.port, p.folder, p.last_seen, p.online, f.name, f.size, f.sha256"
	" FROM peers p JOIN users u ON u.id = p.user_id LEFT JOIN files f ON f.peer_id = p.user_id"
	" WHERE p.user_id = $1 ORDER BY f.id";

static PGresult *q(struct replica *r, PGconn *c, const char *sql, int n, const char *const *params,
		   const char *what)
{
	PGresult *res = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);

	ADD(r->queries, 1);
	if (PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK)
		return res;
	log_warn("replica: %s: %s", what, pg_message(c));
	PQclear(res);
	return NULL;
}

static int64_t int64_at(const PGresult *res, int row, int col)
{
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* The identity of change row i of res (kind, user_id, at, in columns col
 * to col + 2), or "" when there is none. */
static void last_row(const PGresult *res, int i, int col, char *buf, size_t len)
{
	if (i >= PQntuples(res))
		buf[0] = '\0';
	else
		snprintf(buf, len, "%s %s %s", PQgetvalue(res, i, col), PQgetvalue(res, i, col + 1),
			 PQgetvalue(res, i, col + 2));
}

/* Reads the whole directory in one snapshot into a new view, built aside,
 * and swaps it in at once (view.h): searches meanwhile see the old one. */
static int reload(struct replica *r, PGconn *c)
{
	struct view *v = view_new();
	PGresult *res;
	char last[sizeof(r->last)];
	int64_t seq, t0 = mono_ns();
	size_t nfiles, ib, vb;
	int rc = -EIO;

	if (!v)
		return -ENOMEM;
	if (!(res = q(r, c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, "reload")))
		goto out;
	PQclear(res);
	if (!(res = q(r, c, SQL_COUNTER, 0, NULL, "reload: counter")))
		goto out;
	seq = PQntuples(res) ? int64_at(res, 0, 0) : 0;
	PQclear(res);
	{
		char seqt[24];
		const char *p[] = { seqt };

		snprintf(seqt, sizeof(seqt), "%" PRId64, seq);
		if (!(res = q(r, c, SQL_CHANGE_AT, 1, p, "reload: last change")))
			goto out;
		last_row(res, 0, 0, last, sizeof(last));
		PQclear(res);
	}
	if (!(res = q(r, c, SQL_LOAD_PEERS, 0, NULL, "reload: peers")))
		goto out;
	for (int i = 0; i < PQntuples(res); i++) {
		int64_t id = int64_at(res, i, 0);
		struct view_peer vp = {
			.user = PQgetvalue(res, i, 1), .ip = PQgetvalue(res, i, 2),
			.port = atoi(PQgetvalue(res, i, 3)), .folder = PQgetvalue(res, i, 4),
			.last_seen = int64_at(res, i, 5), .online = PQgetvalue(res, i, 6)[0] == 't',
		};

		if ((rc = view_put_peer(v, id, &vp, NULL, 0)) < 0) {
			PQclear(res);
			log_err("replica: reload: peer %" PRId64 ": %s", id, strerror(-rc));
			goto out;
		}
	}
	PQclear(res);
	/* A million rows: one at a time, not a million-row result in memory. */
	rc = -EIO;
	if (!PQsendQueryParams(c, SQL_LOAD_FILES, 0, NULL, NULL, NULL, NULL, 0) || !PQsetSingleRowMode(c)) {
		log_warn("replica: reload: files: %s", pg_message(c));
		goto out;
	}
	ADD(r->queries, 1);
	rc = 0;
	while ((res = PQgetResult(c))) {
		ExecStatusType st = PQresultStatus(res);

		if (st == PGRES_SINGLE_TUPLE && rc == 0) {
			rc = view_add_file(v, int64_at(res, 0, 0), PQgetvalue(res, 0, 1), int64_at(res, 0, 2),
					   PQgetvalue(res, 0, 3));
			if (rc == -ENOENT)
				rc = 0;  /* cannot be: the peer is in the same snapshot */
		} else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK && rc == 0) {
			log_warn("replica: reload: files: %s", pg_message(c));
			rc = -EIO;
		}
		PQclear(res);
	}
	if (rc < 0)
		goto out;
	rc = -EIO;
	if (!(res = q(r, c, "COMMIT", 0, NULL, "reload: commit")))
		goto out;
	PQclear(res);
	view_sizes(v, &nfiles, &ib, &vb);
	view_swap(r->v, v);
	v = NULL;
	memcpy(r->last, last, sizeof(last));
	STORE(r->seq, seq);
	pthread_mutex_lock(&r->cache_lock);
	memset(r->sessions, 0, CACHE_SLOTS * sizeof(*r->sessions));
	memset(r->tickets, 0, CACHE_SLOTS * sizeof(*r->tickets));
	r->gen++;
	pthread_mutex_unlock(&r->cache_lock);
	STORE(r->fresh_ns, t0);
	ADD(r->reloads, 1);
	advance(r, false);
	log_info("replica: loaded %zu files at change %" PRId64 " in %.2f s", nfiles, seq,
		 (double)(mono_ns() - t0) / 1e9);
	return 0;
out:
	if (PQtransactionStatus(c) != PQTRANS_IDLE)
		PQclear(PQexec(c, "ROLLBACK"));
	view_free(v);
	return rc;
}

static size_t session_index(const char *hash);

/* A logout drops the token's session; a user deletion every session and
 * ticket of the user (as holder or as peer). */
static void invalidate_user(struct replica *r, int64_t id, const char *token_hash)
{
	pthread_mutex_lock(&r->cache_lock);
	if (token_hash) {
		struct session_slot *s = &r->sessions[session_index(token_hash)];

		if (strcmp(s->token_hash, token_hash) == 0)
			memset(s, 0, sizeof(*s));
	}
	for (size_t i = 0; !token_hash && i < CACHE_SLOTS; i++) {
		struct session_slot *s = &r->sessions[i];
		struct ticket_slot *t = &r->tickets[i];

		if (s->user_id == id)
			memset(s, 0, sizeof(*s));
		if (t->user_id == id || t->peer_id == id)
			memset(t, 0, sizeof(*t));
	}
	r->gen++;
	pthread_mutex_unlock(&r->cache_lock);
}

static size_t session_index(const char *hash)
{
	/* The hash is uniformly random: its first four hex digits will do. */
	return (size_t)strtoul((char[]){ hash[0], hash[1], hash[2], hash[3], 0 }, NULL, 16) % CACHE_SLOTS;
}

/* Re-reads peer id (after an index) into the view. */
static int apply_index(struct replica *r, PGconn *c, int64_t id)
{
	char idt[24];
	const char *p[] = { idt };
	struct store_file *files;
	PGresult *res;
	size_t n = 0;
	int rc;

	snprintf(idt, sizeof(idt), "%" PRId64, id);
	if (!(res = q(r, c, SQL_PEER, 1, p, "follow: peer")))
		return -EIO;
	if (PQntuples(res) == 0) {
		PQclear(res);
		view_drop_peer(r->v, id);
		return 0;
	}
	if (!(files = malloc((size_t)PQntuples(res) * sizeof(*files)))) {
		PQclear(res);
		return -ENOMEM;
	}
	for (int i = 0; i < PQntuples(res); i++)
		if (!PQgetisnull(res, i, 6))
			files[n++] = (struct store_file){ PQgetvalue(res, i, 6), int64_at(res, i, 7),
							  PQgetvalue(res, i, 8) };
	{
		struct view_peer vp = {
			.user = PQgetvalue(res, 0, 0), .ip = PQgetvalue(res, 0, 1),
			.port = atoi(PQgetvalue(res, 0, 2)), .folder = PQgetvalue(res, 0, 3),
			.last_seen = int64_at(res, 0, 4), .online = PQgetvalue(res, 0, 5)[0] == 't',
		};

		log_debug("replica: peer %" PRId64 " (%s): %zu files, online %d, last seen %" PRId64, id, vp.user,
			  n, vp.online, vp.last_seen);
		rc = view_put_peer(r->v, id, &vp, files, n);
	}
	free(files);
	PQclear(res);
	return rc;
}

static int ack(struct replica *r, PGconn *c)
{
	char seq[24];
	const char *p[] = { seq };
	PGresult *res;

	snprintf(seq, sizeof(seq), "%" PRId64, LOAD(r->seq));
	if (!(res = q(r, c, SQL_ACK, 1, p, "acknowledge")))
		return -EIO;
	PQclear(res);
	return 0;
}

/* After a new connection: is the last change this replica applied still
 * the database's change of that number? A server that lost its last
 * commits (a crash without synchronous_commit, a failover to a standby
 * that lagged) numbers its next changes again from the lost ones, and
 * following them would skip what they hold. 0, -EIO or -ESPIPE (reload;
 * also when the row was pruned, as nothing then proves it). */
static int verify_last(struct replica *r, PGconn *c)
{
	char seq[24], row[sizeof(r->last)];
	const char *p[] = { seq };
	PGresult *res;

	if (LOAD(r->seq) == 0)
		return 0;
	snprintf(seq, sizeof(seq), "%" PRId64, LOAD(r->seq));
	if (!(res = q(r, c, SQL_CHANGE_AT, 1, p, "follow: last change")))
		return -EIO;
	last_row(res, 0, 0, row, sizeof(row));
	PQclear(res);
	if (row[0] && strcmp(row, r->last) == 0)
		return 0;
	log_warn("replica: the database's change %s is %s, not the one applied here (%s); reloading", seq,
		 row[0] ? row : "gone", r->last[0] ? r->last : "unknown");
	return -ESPIPE;
}

/* Reads and applies the changes committed since the last; 0, -EIO (the
 * connection failed) or -ESPIPE (a gap: reload). */
static int catch_up(struct replica *r, PGconn *c)
{
	bool must_ack = false;

	for (;;) {
		int64_t t0 = mono_ns(), head, seq = LOAD(r->seq);
		char from[24], to[24];
		const char *p[] = { from, to };
		PGresult *res;
		int n;

		if (!(res = q(r, c, SQL_COUNTER, 0, NULL, "follow: counter")))
			return -EIO;
		head = PQntuples(res) ? int64_at(res, 0, 0) : 0;
		PQclear(res);
		STORE(r->seq_seen, head);
		if (head < seq) {
			log_warn("replica: the database is behind this replica (change %" PRId64 " < %" PRId64
				 "): a different database; reloading", head, seq);
			return -ESPIPE;
		}
		if (head == seq) {
			STORE(r->fresh_ns, t0);
			return must_ack ? ack(r, c) : 0;
		}
		snprintf(from, sizeof(from), "%" PRId64, seq);
		snprintf(to, sizeof(to), "%" PRId64, head);
		if (!(res = q(r, c, SQL_CHANGES, 2, p, "follow: changes")))
			return -EIO;
		n = PQntuples(res);
		for (int i = 0; i < n; i++) {
			int64_t s = int64_at(res, i, 0), id = int64_at(res, i, 2), at = int64_at(res, i, 3);
			int kind = atoi(PQgetvalue(res, i, 1)), rc = 0;

			if (s != seq + 1) {
				log_warn("replica: change %" PRId64 " is gone (next is %" PRId64 "); reloading",
					 seq + 1, s);
				PQclear(res);
				return -ESPIPE;
			}
			log_debug("replica: change %" PRId64 ": kind %d, user %" PRId64 ", at %" PRId64, s, kind, id, at);
			switch (kind) {
			case CH_INDEX:
				rc = apply_index(r, c, id);
				break;
			case CH_HEARTBEAT:
				view_peer_state(r->v, id, at, true);
				break;
			case CH_LOGOUT:
				must_ack = true;
				invalidate_user(r, id, PQgetvalue(res, i, 4));
				view_peer_state(r->v, id, at, false);
				break;
			case CH_USER_DELETE:
				must_ack = true;
				invalidate_user(r, id, NULL);
				view_drop_peer(r->v, id);
				break;
			default:
				break;  /* a newer replica's kind: nothing for us */
			}
			if (rc == -ENOMEM) {
				PQclear(res);
				return -ESPIPE;
			}
			if (rc < 0) {
				PQclear(res);
				return rc;
			}
			seq = s;
			last_row(res, i, 1, r->last, sizeof(r->last));
			STORE(r->seq, s);
			ADD(r->applied, 1);
			advance(r, false);
		}
		PQclear(res);
		if (n == 0) {
			log_warn("replica: changes up to %" PRId64 " are gone; reloading", head);
			return -ESPIPE;
		}
		if (seq == head) {
			STORE(r->fresh_ns, t0);
			if (must_ack)
				return ack(r, c);
		}
	}
}

static PGconn *follower_connect(struct replica *r)
{
	PGconn *c = PQconnectdb(r->conninfo);
	PGresult *res;

	if (PQstatus(c) != CONNECTION_OK) {
		log_warn("replica: cannot connect to PostgreSQL: %s", pg_message(c));
		PQfinish(c);
		return NULL;
	}
	if (!(res = q(r, c, "LISTEN p2p_changes", 0, NULL, "listen"))) {
		PQfinish(c);
		return NULL;
	}
	PQclear(res);
	return c;
}

/* Waits for a notification, the poll interval, or the stop byte; false to stop. */
static bool follower_wait(struct replica *r, PGconn *c, int ms)
{
	struct pollfd pfd[2] = { { .fd = r->wake[0], .events = POLLIN }, { .fd = c ? PQsocket(c) : -1, .events = POLLIN } };

	if (poll(pfd, c ? 2 : 1, ms) < 0)
		return true;
	if (pfd[0].revents)
		return false;
	return true;
}

static void *follower(void *arg)
{
	struct replica *r = arg;
	PGconn *c = NULL;
	/* The first connection follows replica_start()'s load at once. */
	bool need_reload = false, registered = false, verified = true, first = true;

	for (;;) {
		int64_t poll_ms = LOAD(r->max_stale_ns) / 1000000 / 4;
		int rc;

		if (poll_ms > 1000)
			poll_ms = 1000;
		if (poll_ms < 50)
			poll_ms = 50;
		if (!c) {
			c = follower_connect(r);
			STORE(r->connected, c != NULL);
			if (!c) {
				if (!follower_wait(r, NULL, RETRY_MS))
					break;
				continue;
			}
			log_info("replica: following the change stream");
			STORE(r->sock, PQsocket(c));
			registered = false;
			verified = first;
			first = false;
		}
		if (!verified && !need_reload) {
			rc = verify_last(r, c);
			verified = rc == 0;
			need_reload = rc == -ESPIPE;
		}
		if (need_reload) {
			rc = reload(r, c);
			if (rc == 0) {
				need_reload = false;
				verified = true;
			}
		}
		if (!need_reload && verified) {
			rc = catch_up(r, c);
			if (rc == -ESPIPE)
				need_reload = true;
			/* From now on logouts wait for this follower, too. */
			if (rc == 0 && !registered)
				registered = ack(r, c) == 0;
		}
		if (PQstatus(c) != CONNECTION_OK) {
			log_warn("replica: lost the connection to PostgreSQL; reconnecting");
			PQfinish(c);
			c = NULL;
			STORE(r->sock, -1);
			STORE(r->connected, false);
			advance(r, true);
			continue;
		}
		STORE(r->busy, false);
		advance(r, true);
		if (need_reload)
			continue;
		if (!follower_wait(r, c, (int)poll_ms))
			break;
		STORE(r->busy, true);
		if (!PQconsumeInput(c)) {
			log_warn("replica: lost the connection to PostgreSQL; reconnecting");
			PQfinish(c);
			c = NULL;
			STORE(r->sock, -1);
			advance(r, true);
			STORE(r->connected, false);
			continue;
		}
		for (PGnotify *n; (n = PQnotifies(c));) {
			log_debug("replica: notified of change %s", n->extra);
			PQfreemem(n);
		}
	}
	STORE(r->sock, -1);
	PQfinish(c);
	return NULL;
}

/* ---- the API -------------------------------------------------------------- */

int replica_start(const char *conninfo, double max_staleness, struct replica **out)
{
	struct replica *r = calloc(1, sizeof(*r));
	PGconn *c;
	int rc;

	if (!r)
		return -ENOMEM;
	r->wake[0] = r->wake[1] = -1;
	r->sock = -1;
	pthread_mutex_init(&r->wait_lock, NULL);
	pthread_cond_init(&r->advanced, NULL);
	pthread_mutex_init(&r->cache_lock, NULL);
	replica_set_max_staleness(r, max_staleness);
	r->conninfo = strdup(conninfo);
	r->v = view_new();
	r->sessions = calloc(CACHE_SLOTS, sizeof(*r->sessions));
	r->tickets = calloc(CACHE_SLOTS, sizeof(*r->tickets));
	if (!r->conninfo || !r->v || !r->sessions || !r->tickets || pipe(r->wake) < 0) {
		replica_stop(r);
		return -ENOMEM;
	}
	/* The first load happens before the daemon answers anything. */
	c = follower_connect(r);
	if (!c) {
		replica_stop(r);
		return -EIO;
	}
	rc = reload(r, c);
	PQfinish(c);
	if (rc < 0) {
		log_err("replica: cannot load the directory from PostgreSQL");
		replica_stop(r);
		return rc;
	}
	if ((rc = pthread_create(&r->thread, NULL, follower, r)) != 0) {
		replica_stop(r);
		return -rc;
	}
	r->started = true;
	*out = r;
	return 0;
}

void replica_stop(struct replica *r)
{
	if (!r)
		return;
	if (r->started) {
		if (write(r->wake[1], "x", 1) < 0)
			log_warn("replica: cannot stop the follower");
		pthread_join(r->thread, NULL);
	}
	if (r->wake[0] >= 0)
		close(r->wake[0]);
	if (r->wake[1] >= 0)
		close(r->wake[1]);
	view_free(r->v);
	free(r->sessions);
	free(r->tickets);
	free(r->conninfo);
	pthread_mutex_destroy(&r->cache_lock);
	pthread_mutex_destroy(&r->wait_lock);
	pthread_cond_destroy(&r->advanced);
	free(r);
}

static void deadline(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_nsec += (long)(ms % 1000) * 1000000;
	ts->tv_sec += ms / 1000 + ts->tv_nsec / 1000000000;
	ts->tv_nsec %= 1000000000;
}

void replica_wait(struct replica *r, int64_t seq, int ms)
{
	struct timespec ts;

	deadline(&ts, ms);
	pthread_mutex_lock(&r->wait_lock);
	while (LOAD(r->seq) < seq && pthread_cond_timedwait(&r->advanced, &r->wait_lock, &ts) == 0)
		;
	pthread_mutex_unlock(&r->wait_lock);
}

/* A notification that has reached this host but not the view yet (another
 * replica's logout, say) is applied before the cache answers. */
static void sync_pending(struct replica *r)
{
	struct pollfd pfd = { .fd = LOAD(r->sock), .events = POLLIN };
	struct timespec ts;
	uint64_t round;

	pthread_mutex_lock(&r->wait_lock);
	round = r->rounds;
	if (!LOAD(r->busy) && (pfd.fd < 0 || poll(&pfd, 1, 0) <= 0)) {
		pthread_mutex_unlock(&r->wait_lock);
		return;
	}
	deadline(&ts, 100);
	while (r->rounds == round && pthread_cond_timedwait(&r->advanced, &r->wait_lock, &ts) == 0)
		;
	pthread_mutex_unlock(&r->wait_lock);
}

double replica_max_staleness(struct replica *r)
{
	return (double)LOAD(r->max_stale_ns) / 1e9;
}

void replica_set_max_staleness(struct replica *r, double seconds)
{
	STORE(r->max_stale_ns, (int64_t)(seconds * 1e9));
}

bool replica_fresh(struct replica *r)
{
	return fresh(r);
}

struct view *replica_view(struct replica *r)
{
	return r->v;
}

/* Nothing notified but not yet applied? (Does not wait.) */
static bool nothing_pending(struct replica *r)
{
	struct pollfd pfd = { .fd = LOAD(r->sock), .events = POLLIN };

	return !LOAD(r->busy) && (pfd.fd < 0 || poll(&pfd, 1, 0) <= 0);
}

static int session_cached(struct replica *r, const char *token_hash, int64_t now, char *username,
			  int64_t *expires_at, uint64_t *gen);

int replica_session_peek(struct replica *r, const char *token_hash, int64_t now, char *username)
{
	uint64_t gen;

	if (!nothing_pending(r))
		return -EAGAIN;
	return session_cached(r, token_hash, now, username, NULL, &gen) == 0 ? 0 : -EAGAIN;
}

int replica_session_get(struct replica *r, const char *token_hash, int64_t now, char *username,
			int64_t *expires_at, uint64_t *gen)
{
	sync_pending(r);
	return session_cached(r, token_hash, now, username, expires_at, gen);
}

static int session_cached(struct replica *r, const char *token_hash, int64_t now, char *username,
			  int64_t *expires_at, uint64_t *gen)
{
	struct session_slot *s = &r->sessions[session_index(token_hash)];
	int rc = -ENOENT;

	pthread_mutex_lock(&r->cache_lock);
	*gen = r->gen;
	if (s->expires_at > now && strcmp(s->token_hash, token_hash) == 0 && fresh(r)) {
		memcpy(username, s->username, sizeof(s->username));
		if (expires_at)
			*expires_at = s->expires_at;
		rc = 0;
	}
	pthread_mutex_unlock(&r->cache_lock);
	if (rc == 0)
		ADD(r->session_hits, 1);
	else
		ADD(r->session_misses, 1);
	return rc;
}

void replica_session_put(struct replica *r, const char *token_hash, int64_t user_id, const char *username,
			 int64_t expires_at, uint64_t gen)
{
	struct session_slot *s = &r->sessions[session_index(token_hash)];

	pthread_mutex_lock(&r->cache_lock);
	if (gen == r->gen) {
		snprintf(s->token_hash, sizeof(s->token_hash), "%s", token_hash);
		snprintf(s->username, sizeof(s->username), "%s", username);
		s->user_id = user_id;
		s->expires_at = expires_at;
	}
	pthread_mutex_unlock(&r->cache_lock);
}

int replica_ticket_get(struct replica *r, const char *ticket_hash, const char *peer, int64_t now,
		       char *username, char *file, uint64_t *gen)
{
	struct ticket_slot *t = &r->tickets[session_index(ticket_hash)];
	int rc = -ENOENT;

	sync_pending(r);
	pthread_mutex_lock(&r->cache_lock);
	*gen = r->gen;
	if (t->expires_at > now && strcmp(t->ticket_hash, ticket_hash) == 0 && strcasecmp(t->peer, peer) == 0 &&
	    fresh(r)) {
		memcpy(username, t->username, sizeof(t->username));
		memcpy(file, t->file, sizeof(t->file));
		rc = 0;
	}
	pthread_mutex_unlock(&r->cache_lock);
	return rc;
}

void replica_ticket_put(struct replica *r, const char *ticket_hash, int64_t user_id, int64_t peer_id,
			const char *username, const char *peer, const char *file, int64_t expires_at,
			uint64_t gen)
{
	struct ticket_slot *t = &r->tickets[session_index(ticket_hash)];

	pthread_mutex_lock(&r->cache_lock);
	if (gen == r->gen) {
		snprintf(t->ticket_hash, sizeof(t->ticket_hash), "%s", ticket_hash);
		snprintf(t->username, sizeof(t->username), "%s", username);
		snprintf(t->peer, sizeof(t->peer), "%s", peer);
		snprintf(t->file, sizeof(t->file), "%s", file);
		t->user_id = user_id;
		t->peer_id = peer_id;
		t->expires_at = expires_at;
	}
	pthread_mutex_unlock(&r->cache_lock);
}

void replica_status(struct replica *r, struct store_replica *out)
{
	out->replicated = true;
	out->connected = LOAD(r->connected);
	out->staleness = (double)(mono_ns() - LOAD(r->fresh_ns)) / 1e9;
	out->max_staleness = (double)LOAD(r->max_stale_ns) / 1e9;
	out->fresh = out->staleness <= out->max_staleness;
	out->seq = LOAD(r->seq);
	out->seq_seen = LOAD(r->seq_seen);
	out->applied = LOAD(r->applied);
	out->reloads = LOAD(r->reloads);
	out->follower_queries = LOAD(r->queries);
	out->session_hits = LOAD(r->session_hits);
	out->session_misses = LOAD(r->session_misses);
	view_sizes(r->v, &out->names, &out->index_bytes, &out->view_bytes);
}
