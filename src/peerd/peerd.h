/* SPDX-License-Identifier: MIT */
/* peerd.h — p2p-peerd's settings and the pieces its modules share. */
#ifndef P2P_PEERD_H
#define P2P_PEERD_H

#include <pthread.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <json-c/json.h>

#include "conf.h"
#include "crypto.h"
#include "ratelimit.h"
#include "validate.h"
#include "dirclient.h"
#include "peer_iface.h"
#include "session.h"

struct peerd;

struct peerd_settings {
	char *name;            /* instance name (--name) */
	char *username;        /* the seed's "username" */
	char *password_file;
	char *directory;       /* http:// or https://HOST:PORT of p2p-dird */
	char *directory_ca;    /* PEM CA file for an https directory; NULL: the system's */
	char *tls_certificate; /* PEM chain: gRPC over TLS (with tls_key) */
	char *tls_key;
	char *tls_ca;          /* PEM CA of the peers: mutual TLS */
	char *folder;          /* the shared folder */
	char *ip;              /* address advertised to the directory (seed's "ip") */
	long long port;        /* gRPC port (seed's "port") */
	char *listen;          /* ADDR:PORT to bind; default ip:port, or 0.0.0.0:port */
	char *state_dir;
	char *control_socket;  /* path of the control socket */
	char *log_level;
	char *status;          /* seed's "status": accepted and ignored */
	struct conf_strlist files; /* allow-list; empty: share every regular file */
	long long heartbeat;   /* s between heartbeats */
	long long max_message; /* largest DownloadFile answer, bytes */
	long long chunk_size;  /* Read chunk, bytes */
	long long upload_rate;   /* bytes/s served to all peers together; 0: unlimited */
	long long download_rate; /* bytes/s received by all downloads together; 0: unlimited */
	long long retry_max;     /* s, the longest backoff while the directory is away */
	/* rpc.c's bounds (p2p-peerd(8) BOUNDS) */
	long long max_calls;               /* gRPC calls at once */
	long long max_calls_per_client;    /* ... from one client address */
	long long max_inflight;            /* reply bytes sent, not yet taken by clients */
	long long max_inflight_per_client; /* ... by one client address */
	long long send_timeout;            /* s a client may take nothing before its call is cancelled */
	char *metrics_listen;              /* ADDR:PORT of GET /metrics (metrics.c); NULL: off */
	long long download_progress_bytes;    /* a source delivers at least this much ... */
	long long download_progress_interval; /* ... per this many seconds of waiting, or is dropped */
};

extern const struct conf_key peerd_keys[];

/* Files are hashed in blocks of this size as well as whole (StatResponse
 * block_size/block_sha256), so a download verifies each range on arrival. */
#define BLOCK_SIZE (4u << 20)

/* The SHA-256 of each block of a file: n * SHA256_BYTES bytes at sha. */
struct block_list {
	uint64_t block_size;
	size_t n;
	unsigned char *sha; /* owned; NULL when n == 0 */
};

/* One shared file as indexed. */
struct shared_file {
	char name[FILENAME_MAX_BYTES + 1];
	uint64_t size;
	int64_t mtime;
	char sha256[SHA256_HEX_LEN + 1];
	struct block_list blocks; /* owned by the share's list; share_find leaves it empty */
};

/* A remembered hash: valid while (dev, ino, size, mtime) are unchanged. */
struct hash_entry {
	uint64_t dev, ino, size;
	int64_t mtime_ns;
	char sha256[SHA256_HEX_LEN + 1];
	struct block_list blocks; /* owned */
};

struct share {
	pthread_mutex_t lock;
	int dirfd;                 /* the folder, O_PATH|O_DIRECTORY */
	struct shared_file *files; /* sorted by name */
	size_t n;
	char *cache_path;          /* STATE_DIR/hashes, or NULL */
	struct hash_entry *cache;
	size_t ncache;
	size_t hashed;             /* files hashed by the last scan (not from the cache) */
	struct hash_entry *remembered; /* under lock: share_remember's, for the next scan */
	size_t nremembered;
};

/* How a scan runs (share_scan_ex); NULL: hash everything, no progress. */
struct share_scan_opts {
	bool cache_only;   /* share only what the hash cache knows; hash nothing */
	const int *stop;   /* read atomically: nonzero gives up with -ECANCELED */
	/* After each file hashed, every 256 MiB and once the list is known. */
	void (*progress)(void *arg, size_t files_done, size_t files_todo, uint64_t bytes_done, uint64_t bytes_todo);
	void *arg;
};

/* share.c */
/* state_dir (may be NULL) keeps the SHA-256 cache across restarts. */
int share_open(struct share *sh, const char *folder, const char *state_dir);
void share_close(struct share *sh);
/* Re-scan the folder (regular files only, allow-list if given). */
int share_scan(struct share *sh, const struct conf_strlist *allow);
/* The same, run as o says. Any thread, one scan at a time: what the cache
 * knows is shared first, then each file as it is hashed (a file being
 * hashed is not shared). The number of files shared, or -errno. */
int share_scan_ex(struct share *sh, const struct conf_strlist *allow, const struct share_scan_opts *o);
/* Files shared and their bytes. */
void share_totals(struct share *sh, size_t *files, uint64_t *bytes);
/* The ListShared "files" array. */
struct json_object *share_list_json(struct share *sh);
/* Copy the entry for name (without its blocks); -ENOENT if not shared. */
int share_find(struct share *sh, const char *name, struct shared_file *out);
/* The same with a copy of its block hashes; out->blocks is always set
 * (free it with block_list_free). */
int share_stat(struct share *sh, const char *name, struct shared_file *out);
/* Open a shared file for reading, safely relative to the folder. 0 or -errno. */
int share_open_file(struct share *sh, const char *name, int *fd_out, uint64_t *size_out);
/* Remember a hash computed elsewhere (a verified download), so the next
 * scan does not read the file again. Takes e->blocks. */
void share_remember(struct share *sh, struct hash_entry *e);
/* Hash fd from its start: whole file and blocks of BLOCK_SIZE. */
int share_hash_fd(int fd, char out[SHA256_HEX_LEN + 1], uint64_t *size, struct block_list *blocks);
int block_list_copy(struct block_list *dst, const struct block_list *src);
void block_list_free(struct block_list *b);
/* The list as the JSON "files" array of POST /index. */
struct json_object *share_to_json(struct share *sh);

/* tls.c: TLS material read at start. peer_tls_setup: 0, or -errno with err
 * naming the key and the file. The credentials are new references. */
struct ssl_ctx_st;
struct grpc_server_credentials;
struct grpc_channel_credentials;
int peer_tls_setup(const struct peerd_settings *s, char *err, size_t errlen);
void peer_tls_free(void);
bool peer_tls_enabled(void);
struct ssl_ctx_st *peer_directory_tls(void); /* for an https:// directory */
struct grpc_server_credentials *peer_server_creds(void);
struct grpc_channel_credentials *peer_client_creds(void);

/* rpc.c */
struct rpc;
/* How rpc.c checks a ticket it has not cached: verify() may be called
 * from any thread and never blocks; done runs exactly once, on any thread
 * (here: the main loop's), possibly before verify() returns. result: 1 =
 * valid and file is the ticket's file; 0 = refused (403); -EHOSTUNREACH =
 * the directory is unreachable, timed out or answered 5xx; -ENOTCONN = not
 * logged in; -ENOMEM. (ticket_verify_done is in dirclient.h.) */
struct ticket_checker {
	void (*verify)(void *ctx, const char *ticket, ticket_verify_done *done, void *arg);
	void *ctx;
};
/* Serve gRPC on listen (ADDR:PORT) or, when listen_fd >= 0, on that
 * listening socket (from systemd). *bound_port: the port bound. */
int rpc_start(struct rpc **out, const char *listen, int listen_fd, struct share *sh, struct ticket_checker *tc,
	      const struct peerd_settings *set, int *bound_port);
void rpc_stop(struct rpc *r);
/* grpc.health.v1.Health says NOT_SERVING while serving is false (and while
 * the shared folder is gone or cannot be opened). Any thread. */
void rpc_set_serving(struct rpc *r, bool serving);
/* Change upload_rate (bytes/s, 0 unlimited) while serving; it applies within
 * a second, Reads waiting under the old rate go at once. Any thread. */
void rpc_set_upload_rate(struct rpc *r, long long rate);

/* A download (download.c). Fields below lock are shared with the worker. */
#define MAX_SOURCES 16  /* sources used for one version */
#define MAX_VERSIONS 8  /* versions (size, SHA-256) tried for one name */
#define MAX_HITS 256    /* directory entries considered for one name */
#define DOWNLOAD_PROGRESS_BYTES (64 << 10) /* defaults of the progress deadline */
#define DOWNLOAD_PROGRESS_INTERVAL 10

enum transfer_state { TRANSFER_RUNNING, TRANSFER_DONE, TRANSFER_FAILED, TRANSFER_CANCELLED };

struct source {
	char peer[USERNAME_MAX + 1];
	char target[300]; /* host:port for gRPC */
};

struct transfer {
	char id[17];
	char name[FILENAME_MAX_BYTES + 1];
	char to[4096];
	char sha256[SHA256_HEX_LEN + 1];
	uint64_t size;
	struct source src[MAX_SOURCES];
	int nsrc;
	struct dirclient *dc;          /* tickets (dirclient_ticket_wait) */
	struct ratelimit_shared *limit; /* the download limit (rate 0: none), or NULL */
	pthread_t thread;
	double started;
	bool reported;                 /* main loop: end already handled */
	double ended_at;               /* main loop: when the end was handled */
	bool has_thread;               /* main loop: download_begin started its worker */
	int wake_fd;                   /* written once when the transfer ends */
	struct hash_entry landed;      /* the final file, for the hash cache */
	pthread_mutex_t lock;
	pthread_cond_t cond;           /* a range ended, a source quit, or cancel */
	enum transfer_state state;
	uint64_t received;
	int sources;                   /* streams running now */
	int sources_used;              /* sources that delivered verified ranges */
	bool cancel;
	bool paused;                   /* cancelled by Pause: kept, listed, resumable */
	double seconds;
	char error[64], message[1024];
	struct transfer *next;
	/* The directory's entries grouped by version, in the order tried
	 * (download_plan); src[] holds the version being fetched. */
	struct dir_hit *plan;
	size_t nplan;
	bool force;                    /* replace an existing file of other content */
	bool retry;                    /* locked: on failure, trying again later can help */
	long long progress_bytes;      /* a source must deliver this many bytes ... */
	long long progress_interval;   /* ... per this many seconds of waiting */
};

/* Ask a transfer to stop (its lock not held); the partial file and its
 * verified ranges stay for the next Download of the same name. */
void download_cancel(struct transfer *t);
/* Choose the sources of t (name, to, lock set up) from the directory's
 * entries hits[n] (every entry with a size and SHA-256, in the directory's
 * order): not self, only from when given; grouped by version (size,
 * SHA-256), the versions with most sources first, then in the directory's
 * order. 0, or -ENOENT with *error = "NotFound" (-ENOMEM: "TransferFailed").
 * Fills t's size, sha256, sources and plan. */
int download_plan(struct transfer *t, const struct dir_hit *hits, size_t n, const char *self, const char *from,
		  const char **error);
/* Start the worker thread of a planned transfer. 0 or -EAGAIN. */
int download_begin(struct transfer *t);

/* transfers.c: the downloads (start, save, resume, reap), with or without
 * a control socket. Main loop only. */
struct transfers;
/* t, or NULL and err/message. */
typedef void transfers_started(void *arg, struct transfer *t, enum peer_error err, const char *message);
int transfers_new(struct peerd *p, struct transfers **out);
/* Search for name and start fetching it into to (absolute); the same
 * name into the same folder already running is followed instead. force:
 * replace a file of that name with other content (kept otherwise). */
void transfers_start(struct transfers *tr, const char *name, const char *from, const char *to, bool force,
		     transfers_started *cb, void *arg);
/* Start again what STATE_DIR/transfers lists (once, after the first login). */
void transfers_continue_saved(struct transfers *tr);
/* 0, or -ENOENT when no running transfer has that id. */
int transfers_cancel(struct transfers *tr, const char *id);
/* Stop a running transfer but keep it listed (also in STATE_DIR/transfers)
 * as "paused", its partial file kept: 0, or -ENOENT. */
int transfers_pause(struct transfers *tr, const char *id);
/* Start a paused transfer again under its id; cb as for transfers_start
 * (PEER_E_NOT_FOUND when no paused transfer has that id). */
void transfers_resume(struct transfers *tr, const char *id, transfers_started *cb, void *arg);
struct json_object *transfers_list_json(struct transfers *tr);
int transfers_active(struct transfers *tr);
/* What a watcher of t is told: 1 = running (*out: progress), 0 = done
 * (*out: the last reply), -1 = ended otherwise (*error: the error's short
 * name, *out its parameters). */
int transfer_report(struct transfer *t, struct json_object **out, const char **error);
/* download_rate, bytes/s for all downloads together (0: unlimited): at
 * start and from SetRates; running downloads follow from their next chunk.
 * Main loop only (p->set.download_rate is updated). */
void transfers_set_download_rate(struct peerd *p, long long rate);
/* fn runs on every progress tick and whenever a transfer ends. */
void transfers_set_observer(struct transfers *tr, void (*fn)(void *arg), void *arg);
/* Shutting down: keep STATE_DIR/transfers as it is, to continue them. */
void transfers_stopping(struct transfers *tr);
/* Cancel and join every transfer. */
void transfers_free(struct transfers *tr);

/* watch.c: the shared folder's changes (inotify) and its scans, which
 * hash on a worker thread; each scan is followed by an index. */
struct watch;
typedef void watch_done(void *arg, int n, enum dir_status index_status, const char *message);
int watch_new(struct peerd *p, struct watch **out);
/* The first scan, on the loop, of what the hash cache knows (no hashing):
 * the peer can serve that at once. Then a full scan starts on the worker. */
int watch_start(struct watch *w);
/* Re-scan (coalesced with one running) and index; cb (may be NULL) gets
 * the number of shared files or -errno, and how the index went. */
void watch_rescan(struct watch *w, watch_done *cb, void *arg);
/* "hashing N of M files", or NULL when no scan is hashing. */
const char *watch_progress(struct watch *w);
void watch_free(struct watch *w);

/* The daemon (main.c). */
struct peerd {
	struct peerd_settings set;
	const char *name;
	struct event_base *base;
	struct share share;
	struct dirclient *dc;
	struct session *session;
	struct ticket_checker tc;
	struct rpc *rpc;
	struct control *control;
	struct transfers *transfers;
	struct watch *watch;
	struct ratelimit_shared download_limit;
	struct event *ev_term, *ev_int, *ev_hup, *ev_watchdog;
	int grpc_port;                    /* advertised */
	char bound[300];                  /* the gRPC address bound, ADDR:PORT */
};

/* settings.c: the configuration keys, defaults, checks and --help. */
void settings_defaults(struct peerd_settings *s);
int settings_check(const struct peerd_settings *s, char *err, size_t len);
void settings_usage(FILE *f);

/* control.c: the control socket (docs/CONTROL.md). fd >= 0: a listening
 * socket passed by systemd; otherwise bind path. find: the method table
 * (control_method_find; passed in, so that control.c and
 * control_methods.c do not call each other in a circle). */
struct control;
struct control_call;
typedef void control_method(struct control_call *call, struct json_object *params);
int control_start(struct peerd *p, const char *path, int fd, control_method *(*find)(const char *name),
		  struct control **out);
void control_stop(struct control *c);
/* Answers to a call (control_methods.c): each ends it, except
 * control_continue; a call whose client left is answered into the void. */
void control_reply(struct control_call *call, struct json_object *params);
/* error: a full name, or a short one in io.p2p.Peer. */
void control_error(struct control_call *call, const char *error, struct json_object *params);
void control_continue(struct control_call *call, struct json_object *params);
bool control_call_gone(const struct control_call *call);
bool control_call_more(const struct control_call *call);
bool control_call_oneway(const struct control_call *call); /* "oneway": nothing is sent back */
struct peerd *control_peerd(const struct control_call *call);

/* control_methods.c: one handler per method. */
control_method *control_method_find(const char *name);
/* Start and stop what the methods keep between calls (Download watchers). */
void control_methods_start(struct peerd *p);
void control_methods_stop(void);

#endif
