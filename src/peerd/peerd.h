/* peerd.h — p2p-peerd's settings and the pieces its modules share. */
#ifndef P2P_PEERD_H
#define P2P_PEERD_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <json-c/json.h>

#include "conf.h"
#include "crypto.h"
#include "ratelimit.h"
#include "validate.h"

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
};

/* share.c */
/* state_dir (may be NULL) keeps the SHA-256 cache across restarts. */
int share_open(struct share *sh, const char *folder, const char *state_dir);
void share_close(struct share *sh);
/* Re-scan the folder (regular files only, allow-list if given). */
int share_scan(struct share *sh, const struct conf_strlist *allow);
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

/* dirclient.c: one blocking REST call to the directory (its own event
 * base, so any thread may call it). Returns the HTTP status (0 when the
 * directory cannot be reached) and, when the answer is JSON, *reply. */
int dir_call(const char *base_url, const char *method, const char *path, const char *token,
	     struct json_object *body, struct json_object **reply, int timeout_s);

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

/* The session with the directory, shared by the threads. */
struct session {
	pthread_mutex_t lock;
	char token[SHA256_HEX_LEN + 1]; /* "" when logged out */
	char username[USERNAME_MAX + 1];
};

/* rpc.c */
struct rpc;
struct ticket_checker {
	const char *directory;
	struct session *session;
};
int rpc_start(struct rpc **out, const char *listen, struct share *sh, struct ticket_checker *tc,
	      long long max_message, long long chunk_size, long long upload_rate, int *bound_port);
/* Hand an accepted connection (socket activation) to the server. */
void rpc_add_fd(struct rpc *r, int fd);
void rpc_stop(struct rpc *r);

/* A download (download.c). Fields below lock are shared with the worker. */
#define MAX_SOURCES 16  /* sources used for one version */
#define MAX_VERSIONS 8  /* versions (size, SHA-256) tried for one name */
#define MAX_HITS 256    /* directory entries considered for one name */
#define DOWNLOAD_PROGRESS_BYTES (64 << 10) /* defaults of the progress deadline */
#define DOWNLOAD_PROGRESS_INTERVAL 10

/* One entry of the directory's answer for a name: a peer's claim. */
struct dir_hit {
	char peer[USERNAME_MAX + 1];
	char target[300]; /* gRPC host:port or [v6]:port */
	uint64_t size;
	char sha256[SHA256_HEX_LEN + 1];
};

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
	char token[SHA256_HEX_LEN + 1], directory[512];
	struct ratelimit_shared *limit; /* the download limit, or NULL */
	pthread_t thread;
	double started;
	bool reported;                 /* main loop: end already handled */
	int wake_fd;                   /* written once when the transfer ends */
	struct hash_entry landed;      /* the final file, for the hash cache */
	pthread_mutex_t lock;
	pthread_cond_t cond;           /* a range ended, a source quit, or cancel */
	enum transfer_state state;
	uint64_t received;
	int sources;                   /* streams running now */
	int sources_used;              /* sources that delivered verified ranges */
	bool cancel;
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
/* Search the directory for name and start fetching it into the directory
 * to (absolute); force: replace a file of that name with other content.
 * On failure *error names the control-socket error. */
int download_start(struct peerd *p, const char *name, const char *from, const char *to, bool force,
		   struct transfer **out, const char **error);
/* Choose the sources of t (name, to, lock set up) from the directory's
 * entries hits[n] (every entry with a size and SHA-256, in the directory's
 * order): not self, only from when given; grouped by version (size,
 * SHA-256), the versions with most sources first, then in the directory's
 * order. 0, or -ENOENT with *error = "NotFound". */
int download_plan(struct transfer *t, const struct dir_hit *hits, size_t n, const char *self, const char *from,
		  const char **error);
/* Start the worker thread of a planned transfer. 0 or -EAGAIN. */
int download_begin(struct transfer *t);
/* Keep STATE_DIR/transfers up to date with the running transfers (main
 * loop; not while stopping). */
void download_save(struct peerd *p);
/* Start again the transfers STATE_DIR/transfers lists (after login). */
void download_continue_saved(struct peerd *p);
/* Cancel and join every transfer (shutdown). */
void download_free_all(struct peerd *p);

/* The daemon (main.c). */
struct peerd {
	struct peerd_settings set;
	const char *name;
	struct event_base *base;
	struct share share;
	struct session session;
	struct ticket_checker tc;
	struct rpc *rpc;
	struct evconnlistener *activated; /* gRPC socket from systemd */
	struct control *control;
	struct transfer *transfers;
	struct ratelimit_shared download_limit;
	struct event *ev_term, *ev_int, *ev_hup, *ev_beat, *ev_watchdog;
	struct event *ev_inotify, *ev_settle; /* the folder changed; wait for quiet */
	struct event *ev_retry;               /* the directory is away: next try */
	unsigned dir_failures;                /* consecutive failures to reach it */
	bool continue_pending;                /* saved transfers not yet started again */
	bool stopping;                        /* shutting down: keep the saved transfer list */
	int inotify_fd;
	int wake_fd;                          /* eventfd: a transfer ended */
	int grpc_port;
};

/* main.c: the session with the directory. */
int directory_login_as(struct peerd *p, const char *user, const char *password, int *status_out,
		       struct json_object **reply_out);
int directory_index(struct peerd *p);
void directory_logout(struct peerd *p);
void update_status(struct peerd *p);

/* control.c: the control socket (docs/CONTROL.md). fd >= 0: a listening
 * socket passed by systemd; otherwise bind path. */
int control_start(struct peerd *p, const char *path, int fd, struct control **out);
void control_stop(struct control *c);

#endif
