/* SPDX-License-Identifier: MIT */
/* store_sqlite.c — the directory's storage on SQLite (see store.h).
 *
 * WAL journal with synchronous=FULL (a committed write survives kill -9 and
 * power loss), foreign keys on, a busy timeout, versioned migrations through
 * PRAGMA user_version, and every statement prepared once at open. Searches
 * are answered by the view (view.h: peers, their files and the name index),
 * loaded at open and fed after each committed write through the same calls
 * PostgreSQL's change stream makes (replica.c); a write by another process
 * (`p2p-dird user del`) is noticed through the same inotify watch as the
 * session cache, and the view's peers re-read. User names compare with COLLATE
 * NOCASE (they are ASCII), served by a unique index. Without an SQL index on names,
 * indexing a file is an append (2.5x less CPU than with one).
 * (An FTS5 trigram table was measured first: 1.8 s for a selective query
 * over 1M names and a 6x slower index; see docs/PERFORMANCE.md.)
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <sqlite3.h>

#include "log.h"
#include "nfc.h"
#include "store_backend.h"
#include "view.h"

/* Each entry upgrades the schema from version i to i + 1. */
static const char *const migrations[] = {
	/* 0 -> 1 */
	"CREATE TABLE users ("
	"  id INTEGER PRIMARY KEY,"
	"  name TEXT NOT NULL UNIQUE,"
	"  hash TEXT NOT NULL,"
	"  created INTEGER NOT NULL);"
	"CREATE TABLE sessions ("
	"  token_hash TEXT PRIMARY KEY,"
	"  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
	"  expires INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX sessions_user ON sessions(user_id);"
	"CREATE INDEX sessions_expires ON sessions(expires);"
	"CREATE TABLE peers ("
	"  user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,"
	"  ip TEXT NOT NULL,"
	"  port INTEGER NOT NULL,"
	"  folder TEXT NOT NULL,"
	"  last_seen INTEGER NOT NULL,"
	"  online INTEGER NOT NULL);"
	"CREATE TABLE files ("
	"  id INTEGER PRIMARY KEY,"
	"  peer_id INTEGER NOT NULL REFERENCES peers(user_id) ON DELETE CASCADE,"
	"  name TEXT NOT NULL,"
	"  size INTEGER NOT NULL,"
	"  sha256 TEXT NOT NULL);"
	"CREATE INDEX files_name ON files(name);"
	"CREATE INDEX files_peer ON files(peer_id);"
	"CREATE VIRTUAL TABLE files_fts USING fts5(name, content='files', content_rowid='id',"
	"  tokenize='trigram case_sensitive 0');"
	"CREATE TRIGGER files_ai AFTER INSERT ON files BEGIN"
	"  INSERT INTO files_fts(rowid, name) VALUES (new.id, new.name); END;"
	"CREATE TRIGGER files_ad AFTER DELETE ON files BEGIN"
	"  INSERT INTO files_fts(files_fts, rowid, name) VALUES ('delete', old.id, old.name); END;"
	"CREATE TABLE tickets ("
	"  ticket_hash TEXT PRIMARY KEY,"
	"  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
	"  peer_id INTEGER NOT NULL REFERENCES peers(user_id) ON DELETE CASCADE,"
	"  file TEXT NOT NULL,"
	"  expires INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX tickets_expires ON tickets(expires);",
	/* 1 -> 2: substring search moved to the in-memory name index. */
	"DROP TRIGGER files_ai;"
	"DROP TRIGGER files_ad;"
	"DROP TABLE files_fts;"
	"DROP INDEX files_name;",
	/* 2 -> 3: user names unique without ASCII case (they are ASCII);
	 * user_collisions() refuses first if existing names collide. */
	"CREATE UNIQUE INDEX users_name_nocase ON users(name COLLATE NOCASE);",
};

/* Compares user names without ASCII case: the index of schema 3 serves it. */
#define USER_IS(col, param) " " col " = " param " COLLATE NOCASE"

/* The user names that differ only in case, which schema 3 cannot take. */
static const char SQL_USER_COLLISIONS[] =
	"SELECT group_concat(name, ', ') FROM (SELECT name FROM users WHERE lower(name) IN"
	" (SELECT lower(name) FROM users GROUP BY lower(name) HAVING count(*) > 1)"
	" ORDER BY lower(name), name)";

#define ALIVE " p.online = 1 AND p.last_seen >= "

enum stmt {
	S_BEGIN, S_COMMIT, S_ROLLBACK,
	S_USER_CREATE, S_USER_HASH, S_USER_DELETE, S_USER_LIST,
	S_SESSION_CREATE, S_SESSION_LOOKUP, S_SESSION_DELETE, S_SESSION_PEER_OFFLINE,
	S_PEER_UPSERT, S_FILES_CLEAR, S_FILE_INSERT, S_HEARTBEAT,
	S_LOAD_PEERS, S_LOAD_FILES,
	S_PEERS_ONLINE,
	S_TICKET_CREATE, S_TICKET_VERIFY,
	S_SWEEP_SESSIONS, S_SWEEP_TICKETS,
	S_COUNT_USERS, S_COUNT_SESSIONS,
	S_DATA_VERSION,
	S_N
};

static const char *const stmt_sql[S_N] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_USER_CREATE] = "INSERT INTO users(name, hash, created) VALUES (?1, ?2, ?3)",
	[S_USER_HASH] = "SELECT hash FROM users WHERE" USER_IS("name", "?1"),
	[S_USER_DELETE] = "DELETE FROM users WHERE" USER_IS("name", "?1") " RETURNING id",
	[S_USER_LIST] = "SELECT name, created FROM users ORDER BY name",
	[S_SESSION_CREATE] = "INSERT INTO sessions(token_hash, user_id, expires)"
			     " SELECT ?1, id, ?3 FROM users WHERE" USER_IS("name", "?2"),
	[S_SESSION_LOOKUP] = "SELECT u.name, s.expires FROM sessions s JOIN users u ON u.id = s.user_id"
			     " WHERE s.token_hash = ?1 AND s.expires > ?2",
	[S_SESSION_DELETE] = "DELETE FROM sessions WHERE token_hash = ?1 RETURNING user_id",
	[S_SESSION_PEER_OFFLINE] = "UPDATE peers SET online = 0 WHERE user_id = ?1",
	[S_PEER_UPSERT] = "INSERT INTO peers(user_id, ip, port, folder, last_seen, online)"
			  " SELECT id, ?2, ?3, ?4, ?5, 1 FROM users WHERE" USER_IS("name", "?1")
			  " ON CONFLICT(user_id) DO UPDATE SET ip = excluded.ip, port = excluded.port,"
			  " folder = excluded.folder, last_seen = excluded.last_seen, online = 1"
			  " RETURNING user_id",
	[S_FILES_CLEAR] = "DELETE FROM files WHERE peer_id = ?1",
	[S_FILE_INSERT] = "INSERT INTO files(peer_id, name, size, sha256) VALUES (?1, ?2, ?3, ?4)",
	[S_HEARTBEAT] = "UPDATE peers SET last_seen = ?2, online = 1"
			" WHERE user_id = (SELECT id FROM users WHERE" USER_IS("name", "?1") ") RETURNING user_id",
	[S_LOAD_PEERS] = "SELECT p.user_id, u.name, p.ip, p.port, p.folder, p.last_seen, p.online"
			 " FROM peers p JOIN users u ON u.id = p.user_id",
	[S_LOAD_FILES] = "SELECT peer_id, name, size, sha256 FROM files ORDER BY id",
	[S_PEERS_ONLINE] = "SELECT u.name, p.last_seen, (SELECT count(*) FROM files f WHERE f.peer_id = p.user_id)"
			   " FROM peers p JOIN users u ON u.id = p.user_id WHERE" ALIVE "?1 ORDER BY u.name",
	[S_TICKET_CREATE] = "INSERT INTO tickets(ticket_hash, user_id, peer_id, file, expires)"
			    " SELECT ?1, u.id, p.user_id, ?4, ?5 FROM users u, peers p"
			    " JOIN users pu ON pu.id = p.user_id WHERE" USER_IS("u.name", "?2") " AND" USER_IS("pu.name", "?3"),
	[S_TICKET_VERIFY] = "SELECT u.name, t.file FROM tickets t JOIN users u ON u.id = t.user_id"
			    " JOIN users pu ON pu.id = t.peer_id"
			    " WHERE t.ticket_hash = ?1 AND" USER_IS("pu.name", "?2") " AND t.expires > ?3",
	[S_SWEEP_SESSIONS] = "DELETE FROM sessions WHERE expires <= ?1",
	[S_SWEEP_TICKETS] = "DELETE FROM tickets WHERE expires <= ?1",
	[S_COUNT_USERS] = "SELECT count(*) FROM users",
	[S_COUNT_SESSIONS] = "SELECT count(*) FROM sessions WHERE expires > strftime('%s','now')",
	[S_DATA_VERSION] = "PRAGMA data_version",
};

/* Verified sessions, so that most authenticated requests need no query:
 * direct-mapped by the token hash (uniformly random), dropped when this
 * process ends a session or deletes a user, and all dropped when the
 * database may have changed under us, e.g. `p2p-dird user del` while the
 * daemon runs. "May have changed" is an inotify event on the database's
 * directory (any write to the database or its WAL, ours included; queued
 * by the writer's write(2), so it is there before that process exits):
 * one read(2) per lookup, where PRAGMA data_version took a read
 * transaction and its two fcntl locks (12% of exact-search throughput).
 * Without inotify, data_version it is. */
#define SESSION_CACHE_SIZE 4096
struct session_entry {
	char token_hash[65];
	char username[USERNAME_MAX + 1];
	int64_t expires_at;
};

struct store_backend {
	sqlite3 *db;
	/* store_ping's own read-only connection (SQLite serialises its use):
	 * WAL lets it read while a long write holds db and store.c's lock. */
	sqlite3 *ping_db;
	struct session_entry sessions[SESSION_CACHE_SIZE];
	int watch_fd;           /* inotify on the database's directory, or -1 */
	int64_t data_version;   /* when there is no watch */
	bool touched;           /* the watch fired: check data_version */
	int64_t view_version;   /* data_version the view's peers were read at */
	sqlite3_stmt *stmt[S_N];
	struct view *view;
	bool view_stale;        /* reload from the database before use */
};

static int db_error(struct store_backend *st, const char *what)
{
	int code = sqlite3_extended_errcode(st->db);

	if (code == SQLITE_CONSTRAINT_UNIQUE || code == SQLITE_CONSTRAINT_PRIMARYKEY)
		return -EEXIST;
	log_err("database: %s: %s", what, sqlite3_errmsg(st->db));
	return -EIO;
}

/* Reset and clear a cached statement before use. */
static sqlite3_stmt *stmt_get(struct store_backend *st, enum stmt s)
{
	sqlite3_stmt *q = st->stmt[s];

	sqlite3_reset(q);
	sqlite3_clear_bindings(q);
	return q;
}

static void bind_text(sqlite3_stmt *q, int i, const char *s)
{
	sqlite3_bind_text(q, i, s, -1, SQLITE_STATIC);
}

/* Run a statement that returns no rows (or ignores them). */
static int stmt_exec(struct store_backend *st, sqlite3_stmt *q, const char *what)
{
	int rc;

	while ((rc = sqlite3_step(q)) == SQLITE_ROW)
		;
	if (rc != SQLITE_DONE) {
		rc = db_error(st, what);
		sqlite3_reset(q);
		return rc;
	}
	sqlite3_reset(q);
	return 0;
}

static int tx_begin(struct store_backend *st)
{
	return stmt_exec(st, stmt_get(st, S_BEGIN), "begin");
}

static int tx_commit(struct store_backend *st)
{
	return stmt_exec(st, stmt_get(st, S_COMMIT), "commit");
}

static void tx_rollback(struct store_backend *st)
{
	if (!sqlite3_get_autocommit(st->db))
		stmt_exec(st, stmt_get(st, S_ROLLBACK), "rollback");
}

static struct view_peer peer_row(sqlite3_stmt *q)
{
	return (struct view_peer){
		.user = (const char *)sqlite3_column_text(q, 1), .ip = (const char *)sqlite3_column_text(q, 2),
		.port = sqlite3_column_int(q, 3), .folder = (const char *)sqlite3_column_text(q, 4),
		.last_seen = sqlite3_column_int64(q, 5), .online = sqlite3_column_int(q, 6) != 0,
	};
}

/* (Re)loads the view from the database: built aside, then swapped in. */
static int view_load(struct store_backend *st)
{
	struct view *v = view_new();
	sqlite3_stmt *q;
	int rc, r = 0;

	if (!v)
		return -ENOMEM;
	q = stmt_get(st, S_LOAD_PEERS);
	while (r == 0 && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		struct view_peer vp = peer_row(q);

		r = view_put_peer(v, sqlite3_column_int64(q, 0), &vp, NULL, 0);
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = db_error(st, "load peers");
	sqlite3_reset(q);
	q = stmt_get(st, S_LOAD_FILES);
	while (r == 0 && (rc = sqlite3_step(q)) == SQLITE_ROW)
		r = view_add_file(v, sqlite3_column_int64(q, 0), (const char *)sqlite3_column_text(q, 1),
				  sqlite3_column_int64(q, 2), (const char *)sqlite3_column_text(q, 3));
	if (r == 0 && rc != SQLITE_DONE)
		r = db_error(st, "load files");
	sqlite3_reset(q);
	if (r < 0) {
		log_err("cannot load the directory's view: %s", strerror(-r));
		view_free(v);
		return r;
	}
	if (st->view)
		view_swap(st->view, v);
	else
		st->view = v;
	st->view_stale = false;
	return 0;
}

/* After a committed change the view could not follow (out of memory):
 * the next search reloads it from the database. */
static void view_failed(struct store_backend *st, int r)
{
	if (r < 0) {
		log_err("view update failed (%s); reloading it", strerror(-r));
		st->view_stale = true;
	}
}

struct ids {
	int64_t *v;
	size_t n, cap;
};

static bool in_ids(int64_t id, void *ctx)
{
	const struct ids *ids = ctx;
	size_t lo = 0, hi = ids->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (ids->v[mid] == id)
			return true;
		if (ids->v[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

static int cmp_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Another process wrote to the database (the command line: users added or
 * deleted; it never indexes): re-read the peers, drop the gone ones and
 * take their liveness. */
static int view_sync_peers(struct store_backend *st)
{
	struct ids ids = { 0 };
	sqlite3_stmt *q = stmt_get(st, S_LOAD_PEERS);
	int rc, r = 0;

	while (r == 0 && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(q, 0), *nv;

		if (ids.n == ids.cap) {
			ids.cap = ids.cap ? 2 * ids.cap : 256;
			if (!(nv = realloc(ids.v, ids.cap * sizeof(*nv)))) {
				r = -ENOMEM;
				break;
			}
			ids.v = nv;
		}
		ids.v[ids.n++] = id;
		view_peer_state(st->view, id, sqlite3_column_int64(q, 5), sqlite3_column_int(q, 6) != 0);
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = db_error(st, "read peers");
	sqlite3_reset(q);
	if (r == 0) {
		qsort(ids.v, ids.n, sizeof(*ids.v), cmp_id);
		view_retain(st->view, in_ids, &ids);
	}
	free(ids.v);
	return r;
}

/* Before schema 3: -EEXIST, naming them, if user names collide. */
static int user_collisions(struct store_backend *st)
{
	sqlite3_stmt *q;
	int r = 0;

	if (sqlite3_prepare_v2(st->db, SQL_USER_COLLISIONS, -1, &q, NULL) != SQLITE_OK)
		return db_error(st, "check user names");
	if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_text(q, 0)) {
		log_err("database: cannot upgrade to schema 3, where user names are unique without case:"
			" these users differ only in case: %s. Delete or rename all but one of each"
			" (sqlite3 FILE \"DELETE FROM users WHERE name = 'NAME'\") and start again",
			(const char *)sqlite3_column_text(q, 0));
		r = -EEXIST;
	}
	sqlite3_finalize(q);
	return r;
}

static int migrate(struct store_backend *st)
{
	sqlite3_stmt *q;
	int version, rc;
	char *err = NULL;
	const int latest = (int)(sizeof(migrations) / sizeof(migrations[0]));

	if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &q, NULL) != SQLITE_OK)
		return db_error(st, "read schema version");
	rc = sqlite3_step(q);
	version = rc == SQLITE_ROW ? sqlite3_column_int(q, 0) : -1;
	sqlite3_finalize(q);
	if (version < 0)
		return db_error(st, "read schema version");
	if (version > latest) {
		log_err("database schema version %d is newer than this p2p-dird knows (%d)", version, latest);
		return -EPROTO;
	}
	for (; version < latest; version++) {
		char sql[64];

		if (version + 1 == 3 && (rc = user_collisions(st)) < 0)
			return rc;

		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", version + 1);
		if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, &err) != SQLITE_OK ||
		    sqlite3_exec(st->db, migrations[version], NULL, NULL, &err) != SQLITE_OK ||
		    sqlite3_exec(st->db, sql, NULL, NULL, &err) != SQLITE_OK ||
		    sqlite3_exec(st->db, "COMMIT", NULL, NULL, &err) != SQLITE_OK) {
			log_err("database: migration to schema %d failed: %s", version + 1, err ? err : "?");
			sqlite3_free(err);
			sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
			return -EIO;
		}
		log_info("database schema migrated to version %d", version + 1);
	}
	return 0;
}

static void sqlite_close(struct store_backend *st);
static void watch_open(struct store_backend *st, const char *path);
static int64_t data_version(struct store_backend *st);

static int sqlite_open(const char *path, unsigned connections, struct store_backend **out)
{
	struct store_backend *st = calloc(1, sizeof(*st));
	char *err = NULL;
	int r;

	if (!st)
		return -ENOMEM;
	st->watch_fd = -1;
	if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
			    SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE, NULL) != SQLITE_OK) {
		log_err("cannot open database %s: %s", path, st->db ? sqlite3_errmsg(st->db) : "out of memory");
		r = -EIO;
		goto fail;
	}
	sqlite3_busy_timeout(st->db, 5000);
	if (sqlite3_exec(st->db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
			 "PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -8192;",
			 NULL, NULL, &err) != SQLITE_OK) {
		log_err("database %s: %s", path, err ? err : "?");
		sqlite3_free(err);
		r = -EIO;
		goto fail;
	}
	r = migrate(st);
	if (r < 0)
		goto fail;
	for (int i = 0; i < S_N; i++) {
		if (sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &st->stmt[i], NULL) != SQLITE_OK) {
			log_err("database: cannot prepare statement %d: %s", i, sqlite3_errmsg(st->db));
			r = -EIO;
			goto fail;
		}
	}
	r = view_load(st);
	if (r < 0)
		goto fail;
	st->view_version = data_version(st);
	if (sqlite3_open_v2(path, &st->ping_db, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
		log_err("cannot open database %s: %s", path, st->ping_db ? sqlite3_errmsg(st->ping_db) : "out of memory");
		r = -EIO;
		goto fail;
	}
	sqlite3_busy_timeout(st->ping_db, 5000);
	watch_open(st, path);
	*out = st;
	return 0;
fail:
	sqlite_close(st);
	return r;
}

static void sqlite_close(struct store_backend *st)
{
	if (!st)
		return;
	for (int i = 0; i < S_N; i++)
		sqlite3_finalize(st->stmt[i]);
	if (st->db && sqlite3_close(st->db) != SQLITE_OK)
		log_err("database close: %s", sqlite3_errmsg(st->db));
	sqlite3_close(st->ping_db);
	view_free(st->view);
	if (st->watch_fd >= 0)
		close(st->watch_fd);
	free(st);
}

static int sqlite_user_create(struct store_backend *st, const char *username, const char *hash, int64_t now)
{
	sqlite3_stmt *q = stmt_get(st, S_USER_CREATE);

	bind_text(q, 1, username);
	bind_text(q, 2, hash);
	sqlite3_bind_int64(q, 3, now);
	return stmt_exec(st, q, "create user");
}

static int sqlite_user_hash(struct store_backend *st, const char *username, char **hash_out)
{
	sqlite3_stmt *q = stmt_get(st, S_USER_HASH);
	int rc;

	bind_text(q, 1, username);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		*hash_out = strdup((const char *)sqlite3_column_text(q, 0));
		sqlite3_reset(q);
		return *hash_out ? 0 : -ENOMEM;
	}
	sqlite3_reset(q);
	return rc == SQLITE_DONE ? -ENOENT : db_error(st, "find user");
}

static int sqlite_user_delete(struct store_backend *st, const char *username)
{
	sqlite3_stmt *q = stmt_get(st, S_USER_DELETE);
	int64_t id;
	int rc;

	bind_text(q, 1, username);
	rc = sqlite3_step(q);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(q);
		return rc == SQLITE_DONE ? -ENOENT : db_error(st, "delete user");
	}
	id = sqlite3_column_int64(q, 0);
	rc = stmt_exec(st, q, "delete user");
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < SESSION_CACHE_SIZE; i++)
		if (strcasecmp(st->sessions[i].username, username) == 0)
			memset(&st->sessions[i], 0, sizeof(st->sessions[i]));
	/* Its peer row, files and sessions went with it (ON DELETE CASCADE). */
	view_drop_peer(st->view, id);
	return 0;
}

static int sqlite_user_list(struct store_backend *st, store_name_cb cb, void *ctx)
{
	sqlite3_stmt *q = stmt_get(st, S_USER_LIST);
	int rc, r = 0;

	while ((rc = sqlite3_step(q)) == SQLITE_ROW && r == 0)
		r = cb((const char *)sqlite3_column_text(q, 0), sqlite3_column_int64(q, 1), 0, ctx);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		r = db_error(st, "list users");
	sqlite3_reset(q);
	return r;
}

static int sqlite_session_create(struct store_backend *st, const char *username, const char *token_hash,
			 int64_t expires_at)
{
	sqlite3_stmt *q = stmt_get(st, S_SESSION_CREATE);
	int r;

	bind_text(q, 1, token_hash);
	bind_text(q, 2, username);
	sqlite3_bind_int64(q, 3, expires_at);
	r = stmt_exec(st, q, "create session");
	if (r == 0 && sqlite3_changes(st->db) == 0)
		return -ENOENT;
	return r;
}

/* Watch the directory holding the database file (see the session cache). */
static void watch_open(struct store_backend *st, const char *path)
{
	const char *slash = strrchr(path, '/');
	char dir[4096];

	st->watch_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (st->watch_fd < 0)
		return;
	if (slash)
		snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
	else
		snprintf(dir, sizeof(dir), ".");
	if (inotify_add_watch(st->watch_fd, dir, IN_MODIFY | IN_CREATE | IN_DELETE | IN_MOVED_TO) < 0) {
		close(st->watch_fd);
		st->watch_fd = -1;
	}
}

static int64_t data_version(struct store_backend *st)
{
	sqlite3_stmt *q = stmt_get(st, S_DATA_VERSION);
	int64_t v = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;

	sqlite3_reset(q);
	return v;
}

/* Has anything written to the database since the last call? Drops the
 * session cache if so, and has the view check who wrote. */
static void poll_touched(struct store_backend *st)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool touched = false;

	if (st->watch_fd >= 0) {
		while (read(st->watch_fd, buf, sizeof(buf)) > 0)
			touched = true;
	} else {
		int64_t v = data_version(st);

		touched = v < 0 || v != st->data_version;
		st->data_version = v;
	}
	if (touched) {
		memset(st->sessions, 0, sizeof(st->sessions));
		st->touched = true;
	}
}

/* The view, current with what another process wrote: PRAGMA
 * data_version moves only for other connections' commits, and is read
 * only after the watch fired (any write, ours included). */
static int sqlite_view(struct store_backend *st, struct view **out)
{
	int r;

	poll_touched(st);
	if (st->touched) {
		int64_t v = data_version(st);

		st->touched = false;
		if (v < 0 || v != st->view_version) {
			st->view_version = v;
			if (!st->view_stale && view_sync_peers(st) < 0)
				st->view_stale = true;
		}
	}
	if (st->view_stale && (r = view_load(st)) < 0)
		return r;
	*out = st->view;
	return 0;
}

static struct session_entry *session_slot(struct store_backend *st, const char *token_hash)
{
	return &st->sessions[strtoul((char[]){ token_hash[0], token_hash[1], token_hash[2], 0 }, NULL, 16) %
			     SESSION_CACHE_SIZE];
}

static int sqlite_session_lookup(struct store_backend *st, const char *token_hash, int64_t now,
			 char *username, int64_t *expires_at)
{
	struct session_entry *e = session_slot(st, token_hash);
	sqlite3_stmt *q;
	int rc;

	poll_touched(st);
	if (e->expires_at > now && strcmp(e->token_hash, token_hash) == 0) {
		memcpy(username, e->username, sizeof(e->username));
		if (expires_at)
			*expires_at = e->expires_at;
		return 0;
	}
	q = stmt_get(st, S_SESSION_LOOKUP);
	bind_text(q, 1, token_hash);
	sqlite3_bind_int64(q, 2, now);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		snprintf(username, USERNAME_MAX + 1, "%s", (const char *)sqlite3_column_text(q, 0));
		if (expires_at)
			*expires_at = sqlite3_column_int64(q, 1);
		snprintf(e->token_hash, sizeof(e->token_hash), "%s", token_hash);
		memcpy(e->username, username, sizeof(e->username));
		e->expires_at = sqlite3_column_int64(q, 1);
		sqlite3_reset(q);
		return 0;
	}
	sqlite3_reset(q);
	return rc == SQLITE_DONE ? -ENOENT : db_error(st, "find session");
}

static int sqlite_session_delete(struct store_backend *st, const char *token_hash)
{
	sqlite3_stmt *q;
	int64_t user_id;
	int rc, r;

	memset(session_slot(st, token_hash), 0, sizeof(struct session_entry));
	r = tx_begin(st);
	if (r < 0)
		return r;
	q = stmt_get(st, S_SESSION_DELETE);
	bind_text(q, 1, token_hash);
	rc = sqlite3_step(q);
	if (rc != SQLITE_ROW) {
		r = rc == SQLITE_DONE ? -ENOENT : db_error(st, "end session");
		sqlite3_reset(q);
		tx_rollback(st);
		return r;
	}
	user_id = sqlite3_column_int64(q, 0);
	sqlite3_reset(q);
	q = stmt_get(st, S_SESSION_PEER_OFFLINE);
	sqlite3_bind_int64(q, 1, user_id);
	r = stmt_exec(st, q, "take peer offline");
	if (r == 0)
		r = tx_commit(st);
	if (r < 0) {
		tx_rollback(st);
		return r;
	}
	view_peer_state(st->view, user_id, 0, false);
	return 0;
}

static int sqlite_index(struct store_backend *st, const char *username, const char *ip, int port,
		const char *folder, const struct store_file *files, size_t nfiles, int64_t now)
{
	struct view_peer vp = { .user = username, .ip = ip, .port = port, .folder = folder,
				.last_seen = now, .online = true };
	sqlite3_stmt *q;
	int64_t peer_id;
	int rc, r;

	r = tx_begin(st);
	if (r < 0)
		return r;
	q = stmt_get(st, S_PEER_UPSERT);
	bind_text(q, 1, username);
	bind_text(q, 2, ip);
	sqlite3_bind_int(q, 3, port);
	bind_text(q, 4, folder);
	sqlite3_bind_int64(q, 5, now);
	rc = sqlite3_step(q);
	if (rc != SQLITE_ROW) {
		r = rc == SQLITE_DONE ? -ENOENT : db_error(st, "index: peer");
		sqlite3_reset(q);
		goto fail;
	}
	peer_id = sqlite3_column_int64(q, 0);
	sqlite3_reset(q);

	q = stmt_get(st, S_FILES_CLEAR);
	sqlite3_bind_int64(q, 1, peer_id);
	r = stmt_exec(st, q, "index: clear files");
	if (r < 0)
		goto fail;
	q = st->stmt[S_FILE_INSERT];
	for (size_t i = 0; i < nfiles; i++) {
		sqlite3_reset(q);
		sqlite3_bind_int64(q, 1, peer_id);
		bind_text(q, 2, files[i].name);
		sqlite3_bind_int64(q, 3, files[i].size);
		bind_text(q, 4, files[i].sha256 ? files[i].sha256 : "");
		if (sqlite3_step(q) != SQLITE_DONE) {
			r = db_error(st, "index: insert file");
			sqlite3_reset(q);
			goto fail;
		}
	}
	sqlite3_reset(q);
	r = tx_commit(st);
	if (r < 0)
		goto fail;
	/* Committed: now the view follows. */
	view_failed(st, view_put_peer(st->view, peer_id, &vp, files, nfiles));
	return 0;
fail:
	tx_rollback(st);
	return r;
}

static int sqlite_heartbeat(struct store_backend *st, const char *username, int64_t now)
{
	sqlite3_stmt *q = stmt_get(st, S_HEARTBEAT);
	int64_t id;
	int rc;

	bind_text(q, 1, username);
	sqlite3_bind_int64(q, 2, now);
	rc = sqlite3_step(q);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(q);
		return rc == SQLITE_DONE ? -ENOENT : db_error(st, "heartbeat");
	}
	id = sqlite3_column_int64(q, 0);
	rc = stmt_exec(st, q, "heartbeat");
	if (rc < 0)
		return rc;
	view_peer_state(st->view, id, now, true);
	return 0;
}

/* A local commit takes microseconds: one per beat. */
static int sqlite_heartbeats(struct store_backend *st, const char *const *users, size_t n, int64_t now,
			     int *result)
{
	for (size_t i = 0; i < n; i++) {
		result[i] = sqlite_heartbeat(st, users[i], now);
		if (result[i] < 0 && result[i] != -ENOENT)
			return result[i];
	}
	return 0;
}

static int sqlite_peers_online(struct store_backend *st, int64_t alive_since, store_name_cb cb, void *ctx)
{
	sqlite3_stmt *q = stmt_get(st, S_PEERS_ONLINE);
	int rc, r = 0;

	sqlite3_bind_int64(q, 1, alive_since);
	while (r == 0 && (rc = sqlite3_step(q)) == SQLITE_ROW)
		r = cb((const char *)sqlite3_column_text(q, 0), sqlite3_column_int64(q, 1),
		       sqlite3_column_int64(q, 2), ctx);
	if (r == 0 && rc != SQLITE_DONE)
		r = db_error(st, "list peers");
	sqlite3_reset(q);
	return r;
}

static int sqlite_ticket_create(struct store_backend *st, const char *ticket_hash, const char *username,
			const char *peer, const char *file, int64_t expires_at)
{
	sqlite3_stmt *q = stmt_get(st, S_TICKET_CREATE);
	int r;

	bind_text(q, 1, ticket_hash);
	bind_text(q, 2, username);
	bind_text(q, 3, peer);
	bind_text(q, 4, file);
	sqlite3_bind_int64(q, 5, expires_at);
	r = stmt_exec(st, q, "create ticket");
	if (r == 0 && sqlite3_changes(st->db) == 0)
		return -ENOENT;
	return r;
}

static int sqlite_ticket_verify(struct store_backend *st, const char *ticket_hash, const char *peer,
			int64_t now, char *username, char *file)
{
	sqlite3_stmt *q = stmt_get(st, S_TICKET_VERIFY);
	int rc;

	bind_text(q, 1, ticket_hash);
	bind_text(q, 2, peer);
	sqlite3_bind_int64(q, 3, now);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		snprintf(username, USERNAME_MAX + 1, "%s", (const char *)sqlite3_column_text(q, 0));
		snprintf(file, FILENAME_MAX_BYTES + 1, "%s", (const char *)sqlite3_column_text(q, 1));
		sqlite3_reset(q);
		return 0;
	}
	sqlite3_reset(q);
	return rc == SQLITE_DONE ? -ENOENT : db_error(st, "verify ticket");
}

static int sqlite_sweep(struct store_backend *st, int64_t now)
{
	sqlite3_stmt *q = stmt_get(st, S_SWEEP_SESSIONS);
	int r;

	for (size_t i = 0; i < SESSION_CACHE_SIZE; i++)
		if (st->sessions[i].expires_at <= now)
			memset(&st->sessions[i], 0, sizeof(st->sessions[i]));
	sqlite3_bind_int64(q, 1, now);
	r = stmt_exec(st, q, "sweep sessions");
	if (r < 0)
		return r;
	q = stmt_get(st, S_SWEEP_TICKETS);
	sqlite3_bind_int64(q, 1, now);
	return stmt_exec(st, q, "sweep tickets");
}

static int count(struct store_backend *st, enum stmt s, int64_t arg, int64_t *out)
{
	sqlite3_stmt *q = stmt_get(st, s);
	int rc;

	if (sqlite3_bind_parameter_count(q) > 0)
		sqlite3_bind_int64(q, 1, arg);
	rc = sqlite3_step(q);
	if (rc != SQLITE_ROW) {
		rc = db_error(st, "count");
		sqlite3_reset(q);
		return rc;
	}
	*out = sqlite3_column_int64(q, 0);
	sqlite3_reset(q);
	return 0;
}

static int sqlite_counts(struct store_backend *st, int64_t alive_since, struct store_counts *out)
{
	struct view *v;
	int r;

	if ((r = count(st, S_COUNT_USERS, 0, &out->users)) < 0 ||
	    (r = count(st, S_COUNT_SESSIONS, 0, &out->sessions)) < 0)
		return r;
	if ((r = sqlite_view(st, &v)) < 0)
		return r;
	/* Online peers and their files, from the view. */
	view_counts(v, alive_since, &out->peers_online, &out->files_online);
	return 0;
}

/* Reads the schema on ping_db: proves the file is there and readable
 * without waiting for a write in progress. */
static int sqlite_ping(struct store_backend *st)
{
	int rc = sqlite3_exec(st->ping_db, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL);

	if (rc != SQLITE_OK) {
		log_err("database: ping: %s", sqlite3_errmsg(st->ping_db));
		return -EIO;
	}
	return 0;
}

const struct store_ops store_sqlite_ops = {
	.name = "SQLite",
	.thread_safe = false,
	.remote = false,
	.open = sqlite_open,
	.close = sqlite_close,
	.user_create = sqlite_user_create,
	.user_hash = sqlite_user_hash,
	.user_delete = sqlite_user_delete,
	.user_list = sqlite_user_list,
	.session_create = sqlite_session_create,
	.session_lookup = sqlite_session_lookup,
	.session_delete = sqlite_session_delete,
	.index = sqlite_index,
	.heartbeats = sqlite_heartbeats,
	.view = sqlite_view,
	.peers_online = sqlite_peers_online,
	.ticket_create = sqlite_ticket_create,
	.ticket_verify = sqlite_ticket_verify,
	.sweep = sqlite_sweep,
	.counts = sqlite_counts,
	.ping = sqlite_ping,
};
