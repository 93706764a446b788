/* SPDX-License-Identifier: MIT */
/* rpc.c — the peer's gRPC server on the core C API (grpc/grpc.h).
 *
 * Serves the seed's /FileService/DownloadFile (whole file in one message,
 * up to max_message bytes) and /p2p.v1.Peer/Stat and /p2p.v1.Peer/Read (a
 * byte range streamed in chunks); and, without a ticket, grpc.health.v1.Health
 * (Check, Watch) and server reflection (v1 and v1alpha; the answers are
 * reflection.c's). One thread runs the completion queue; each
 * call is a small state machine driven by its batches' completions. A Read
 * keeps exactly one SEND_MESSAGE in flight, so a slow reader holds at most
 * one chunk in memory and never blocks the others. Files are read on
 * READERS threads of their own (read_async), never on the queue thread, so
 * a slow disk delays only the calls that wait for it.
 *
 * Every call must carry metadata "authorization: Bearer TICKET"; the ticket
 * is checked with the directory's POST /tickets/verify (as this peer) and the
 * answer cached briefly. The check is handed off (struct ticket_checker):
 * the call is parked, the queue thread goes on serving everyone else, and
 * the answer comes back as a completion on the queue (an empty batch on the
 * parked call). Calls with the same unchecked ticket share one check; at
 * most MAX_VERIFYING distinct checks wait at once, past that a call with an
 * unchecked ticket is answered UNAVAILABLE at once.
 *
 * Bounds (p2p-peerd(8), BOUNDS): calls at once in total and per client
 * address (past them RESOURCE_EXHAUSTED); bytes of replies in flight (sent to
 * gRPC, not yet taken by the client) in total and per client: a call whose
 * next message does not fit waits, holding no data, until bytes come back; a
 * send the client does not take within send_timeout cancels the call. In
 * plain text the listening socket is ours (listener.c).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <stdatomic.h>

#include "FileSharing.pb-c.h"
#include "chunk.h"
#include "grpc/health/v1/health.pb-c.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "p2p/v1/peer.pb-c.h"
#include "peerd.h"
#include "pool.h"
#include "ratelimit.h"
#include "reflection.h"
#include "wire.h"

#define TICKET_CACHE 256
#define TICKET_CACHE_SECONDS 20
#define MAX_REQUEST_BYTES 4096
#define MAX_VERIFYING 64 /* distinct tickets waiting for the directory */
#define CLIENT_BUCKETS 256
#define READERS 4        /* threads reading shared files for replies */

enum kind { K_DOWNLOAD, K_STAT, K_READ, K_HEALTH_CHECK, K_HEALTH_WATCH, K_REFLECT, K_REFLECT_ALPHA, K_UNKNOWN, K_COUNT };

static const char *const method_paths[K_UNKNOWN] = {
	[K_DOWNLOAD] = "/FileService/DownloadFile",
	[K_STAT] = "/p2p.v1.Peer/Stat",
	[K_READ] = "/p2p.v1.Peer/Read",
	[K_HEALTH_CHECK] = "/grpc.health.v1.Health/Check",
	[K_HEALTH_WATCH] = "/grpc.health.v1.Health/Watch",
	[K_REFLECT] = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
	[K_REFLECT_ALPHA] = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
};

/* The services whose health is the peer's: "" is the whole server. */
static const char *const health_services[] = { "", "p2p.v1.Peer", "FileService" };
#define MAX_WATCHERS 64
#define HEALTH_SERVICE_UNKNOWN 3

static bool is_reflection(enum kind k)
{
	return k == K_REFLECT || k == K_REFLECT_ALPHA;
}

struct call;

/* One ticket check in progress: the calls waiting for it. The first call
 * (owner) carries the empty batch that brings the answer back. */
struct verify {
	struct rpc *r;
	char ticket[SHA256_HEX_LEN + 1];
	struct call *owner, *waiters;
	int result;
	char file[FILENAME_MAX_BYTES + 1];
	struct verify *next;
};

/* Calls and reply bytes in flight of one client address. */
struct client {
	char addr[INET6_ADDRSTRLEN];
	long long calls, inflight;
	struct client *next;
};

struct cached_ticket {
	char ticket[SHA256_HEX_LEN + 1];
	char file[FILENAME_MAX_BYTES + 1];
	time_t until;
};

struct rpc {
	grpc_server *srv;
	grpc_completion_queue *cq;
	pthread_t thread;
	void *methods[K_UNKNOWN];
	struct share *sh;
	struct ticket_checker *tc;
	long long max_message, chunk_size;
	long long max_calls, max_calls_client, max_inflight, max_inflight_client;
	double send_timeout;
	long long ncalls, inflight;    /* queue thread only */
	struct client *clients[CLIENT_BUCKETS];
	struct call *active;      /* calls admitted, for the send timeout */
	struct call *starved, **starved_tail; /* calls waiting for bytes, in order */
	bool bytes_back;          /* bytes came back since the starved were tried */
	double housekeeping;      /* next look at stuck sends */
	/* our listening socket (plain text) */
	int lfd;
	struct listener *listener;
	/* health */
	atomic_bool serving;      /* rpc_set_serving */
	char *folder;
	dev_t folder_dev;
	ino_t folder_ino;
	int last_health;          /* queue thread: SERVING (1) or NOT_SERVING (2) */
	struct call *watchers;
	int nwatchers;
	bool shutting_down;
	int shutdown_tag;
	bool shutdown_done;
	pthread_cond_t shutdown_cond;
	pthread_mutex_t cache_lock;
	struct cached_ticket cache[TICKET_CACHE];
	unsigned cache_next;
	struct ratelimit upload;  /* touched by the queue thread only */
	atomic_llong new_upload_rate; /* rpc_set_upload_rate's, for the queue thread; -1: none */
	struct call *paced;       /* Reads waiting for upload tokens, soonest first */
	struct verify *verifying; /* queue thread only */
	int nverifying;           /* queue thread only: length of verifying */
	int outstanding;          /* checks and reads not yet posted back (cache_lock) */
	struct pool *readers;     /* file reads, off the queue thread (read_async) */
	pthread_cond_t outstanding_cond;
};

/* A completion-queue tag: which call, and which of its batches. */
struct tag {
	struct call *c;
	enum { T_REQUEST, T_CLOSE, T_SEND, T_FINISH, T_VERIFIED, T_RECV, T_READ } op;
	struct verify *v; /* T_VERIFIED */
};

struct call {
	struct rpc *r;
	enum kind kind;
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array md;
	grpc_call_details details;      /* K_UNKNOWN only */
	grpc_byte_buffer *payload;
	ProtobufCMessage *req;          /* the unpacked request */
	const char *name;               /* the file it names (inside req) */
	char ticket[SHA256_HEX_LEN + 1];
	struct call *verify_next;       /* parked on a struct verify */
	struct client *cl;              /* set once admitted */
	struct call *active_prev, *active_next;
	long long inflight;             /* reply bytes this call has in flight */
	bool starved;                   /* on r->starved */
	struct call *starved_next;
	bool sending;                   /* a message batch is not complete yet */
	bool timed_out;                 /* cancelled: the client took nothing */
	double send_since;
	struct tag t_request, t_close, t_send, t_finish, t_verified, t_recv, t_read;
	/* Health/Watch */
	bool watching, watch_known;
	int sent_health;
	struct call *watch_next;
	int pending;                    /* batches started, not completed */
	int cancelled;                  /* from RECV_CLOSE_ON_SERVER */
	bool metadata_sent, finished;
	/* Read state */
	int fd;
	uint64_t pos, end;
	grpc_byte_buffer *send_buf;
	grpc_slice status_details;
	bool have_details;
	bool charged;                   /* the next chunk is paid for (upload limit) */
	double wake;                    /* when a paced Read may send */
	struct call *paced_next;
	/* A reply being read on a reader thread (read_async) */
	struct pool_job job;
	grpc_slice rd;                  /* the message: rd_head bytes of framing, then the data */
	size_t rd_head;
	uint64_t rd_off, rd_len, rd_got;
	int rd_err;                     /* 0, -ENODATA (the file is shorter) or -errno */
	bool no_nowait;                 /* RWF_NOWAIT is not supported for the file */
};

static void request_call(struct rpc *r, enum kind kind);
static void reflect_recv(struct call *c);
static void health_start(struct call *c, const uint8_t *req, size_t len);
static void health_poll(struct rpc *r);

static void bytes_give_back(struct call *c);

static void call_free(struct call *c)
{
	struct rpc *r = c->r;

	if (c->cl) {
		bytes_give_back(c);
		r->ncalls--;
		if (--c->cl->calls == 0 && c->cl->inflight == 0) {
			unsigned h = 0;

			for (const char *q = c->cl->addr; *q; q++)
				h = h * 31 + (unsigned char)*q;
			for (struct client **pp = &r->clients[h % CLIENT_BUCKETS]; *pp; pp = &(*pp)->next)
				if (*pp == c->cl) {
					*pp = c->cl->next;
					break;
				}
			free(c->cl);
		}
		if (c->active_prev)
			c->active_prev->active_next = c->active_next;
		else
			r->active = c->active_next;
		if (c->active_next)
			c->active_next->active_prev = c->active_prev;
	}
	if (c->watching) {
		for (struct call **pp = &r->watchers; *pp; pp = &(*pp)->watch_next)
			if (*pp == c) {
				*pp = c->watch_next;
				break;
			}
		r->nwatchers--;
	}
	if (c->call)
		grpc_call_unref(c->call);
	grpc_metadata_array_destroy(&c->md);
	if (c->kind == K_UNKNOWN)
		grpc_call_details_destroy(&c->details);
	if (c->payload)
		grpc_byte_buffer_destroy(c->payload);
	if (c->req)
		protobuf_c_message_free_unpacked(c->req, NULL);
	if (c->send_buf)
		grpc_byte_buffer_destroy(c->send_buf);
	if (c->have_details)
		grpc_slice_unref(c->status_details);
	grpc_slice_unref(c->rd);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

static void maybe_free(struct call *c)
{
	if (c->pending == 0 && (c->finished || !c->call) && !c->paced_next && c->r->paced != c && !c->starved)
		call_free(c);
}

static void start_batch(struct call *c, const grpc_op *ops, size_t n, struct tag *t)
{
	grpc_call_error e = grpc_call_start_batch(c->call, ops, n, t, NULL);

	if (e != GRPC_CALL_OK) {
		log_err("grpc_call_start_batch: error %d", (int)e);
		c->finished = true;
		return;
	}
	c->pending++;
}

/* End the call with a status (and the initial metadata if not sent yet). */
static void finish(struct call *c, grpc_status_code code, const char *msg)
{
	grpc_op ops[2];
	size_t n = 0;

	memset(ops, 0, sizeof(ops));
	if (!c->metadata_sent) {
		ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
		n++;
		c->metadata_sent = true;
	}
	c->status_details = grpc_slice_from_copied_string(msg ? msg : "");
	c->have_details = true;
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = code;
	metrics_grpc_handled((int)c->kind, (int)code);
	ops[n].data.send_status_from_server.status_details = &c->status_details;
	n++;
	c->finished = true;
	start_batch(c, ops, n, &c->t_finish);
}

/* Send one message (consumed) and, when last, the OK status with it. */
static void send_message(struct call *c, grpc_byte_buffer *buf, bool last)
{
	grpc_op ops[3];
	size_t n = 0;

	memset(ops, 0, sizeof(ops));
	if (!c->metadata_sent) {
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
		c->metadata_sent = true;
	}
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n].data.send_message.send_message = buf;
	n++;
	if (c->send_buf)
		grpc_byte_buffer_destroy(c->send_buf);
	c->send_buf = buf; /* destroyed once the batch completes */
	c->sending = true;
	c->send_since = mono_now();
	if (last) {
		c->status_details = grpc_slice_from_static_string("");
		c->have_details = true;
		ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
		ops[n].data.send_status_from_server.status = GRPC_STATUS_OK;
		metrics_grpc_handled((int)c->kind, GRPC_STATUS_OK);
		ops[n].data.send_status_from_server.status_details = &c->status_details;
		n++;
		c->finished = true;
		start_batch(c, ops, n, &c->t_finish);
	} else {
		start_batch(c, ops, n, &c->t_send);
	}
}

/* Pack a protobuf-c message into a byte buffer. */
static grpc_byte_buffer *pack(const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	grpc_slice s = grpc_slice_malloc(len);
	grpc_byte_buffer *b;

	protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
	b = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return b;
}

/* The request message as one contiguous copy (requests are tiny). */
static uint8_t *payload_bytes(struct call *c, size_t *len)
{
	grpc_byte_buffer_reader rd;
	grpc_slice all;
	uint8_t *copy;

	if (!c->payload || !grpc_byte_buffer_reader_init(&rd, c->payload))
		return NULL;
	all = grpc_byte_buffer_reader_readall(&rd);
	grpc_byte_buffer_reader_destroy(&rd);
	*len = GRPC_SLICE_LENGTH(all);
	if (*len > MAX_REQUEST_BYTES || !(copy = malloc(*len ? *len : 1))) {
		grpc_slice_unref(all);
		return NULL;
	}
	memcpy(copy, GRPC_SLICE_START_PTR(all), *len);
	grpc_slice_unref(all);
	return copy;
}

/* ---- bounds ------------------------------------------------------------- */

/* The client address of a call: from gRPC's peer string ("ipv4:A:P",
 * "ipv6:[A]:P"), or, for a connection we accepted ("fd:N"), as recorded
 * when it was accepted. */
static void call_address(struct call *c, char out[INET6_ADDRSTRLEN])
{
	char *peer = grpc_call_get_peer(c->call);
	const char *a = peer ? peer : "";
	size_t n;
	int fd;

	if (strncmp(a, "fd:", 3) == 0 && (fd = atoi(a + 3)) >= 0 && listener_address(c->r->listener, fd, out)) {
		;
	} else {
		if (strncmp(a, "ipv4:", 5) == 0 || strncmp(a, "ipv6:", 5) == 0)
			a += 5;
		if (*a == '[')
			a++;
		n = strcspn(a, "]");
		if (n == strlen(a) && strchr(a, ':')) /* ipv4:A:P */
			n = (size_t)(strrchr(a, ':') - a);
		if (n >= INET6_ADDRSTRLEN)
			n = INET6_ADDRSTRLEN - 1;
		memcpy(out, a, n);
		out[n] = '\0';
	}
	gpr_free(peer);
}

/* Count the call against the caps; false when it is over one (answered). */
static bool admit_call(struct call *c)
{
	struct rpc *r = c->r;
	char addr[INET6_ADDRSTRLEN];
	struct client *cl;
	unsigned h = 0;

	call_address(c, addr);
	for (const char *q = addr; *q; q++)
		h = h * 31 + (unsigned char)*q;
	for (cl = r->clients[h % CLIENT_BUCKETS]; cl && strcmp(cl->addr, addr) != 0; cl = cl->next)
		;
	if (r->ncalls >= r->max_calls) {
		finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "this peer serves too many calls now (max_calls); try again");
		return false;
	}
	if (cl && cl->calls >= r->max_calls_client) {
		finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
		       "too many calls from your address now (max_calls_per_client); try again");
		return false;
	}
	if (!cl) {
		if (!(cl = calloc(1, sizeof(*cl)))) {
			finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
			return false;
		}
		memcpy(cl->addr, addr, sizeof(cl->addr));
		cl->next = r->clients[h % CLIENT_BUCKETS];
		r->clients[h % CLIENT_BUCKETS] = cl;
	}
	cl->calls++;
	r->ncalls++;
	c->cl = cl;
	c->active_next = r->active;
	if (r->active)
		r->active->active_prev = c;
	r->active = c;
	return true;
}

/* Take n bytes of the reply budgets for c. Whoever has nothing in flight
 * may always take, so a message larger than a budget still goes alone. */
static bool bytes_take(struct call *c, long long n)
{
	struct rpc *r = c->r;

	if ((r->inflight && r->inflight + n > r->max_inflight) ||
	    (c->cl->inflight && c->cl->inflight + n > r->max_inflight_client))
		return false;
	r->inflight += n;
	c->cl->inflight += n;
	c->inflight += n;
	return true;
}

static void bytes_give_back(struct call *c)
{
	if (!c->inflight)
		return;
	c->r->inflight -= c->inflight;
	c->cl->inflight -= c->inflight;
	c->inflight = 0;
	c->r->bytes_back = true;
}

/* Wait, holding no data, until bytes come back. */
static void starve(struct call *c)
{
	c->starved = true;
	c->starved_next = NULL;
	*c->r->starved_tail = c;
	c->r->starved_tail = &c->starved_next;
}

static void unstarve(struct call *c)
{
	struct rpc *r = c->r;

	for (struct call **pp = &r->starved; *pp; pp = &(*pp)->starved_next)
		if (*pp == c) {
			*pp = c->starved_next;
			if (!*pp)
				r->starved_tail = pp;
			break;
		}
	c->starved = false;
	c->starved_next = NULL;
}

static void handle_download(struct call *c);
static void read_next(struct call *c);

/* Bytes came back: try the waiting calls again, in the order they came. */
static void run_starved(struct rpc *r)
{
	struct call *list = r->starved, *c;

	r->bytes_back = false;
	r->starved = NULL;
	r->starved_tail = &r->starved;
	while ((c = list)) {
		list = c->starved_next;
		c->starved = false;
		c->starved_next = NULL;
		if (c->cancelled || r->shutting_down)
			finish(c, GRPC_STATUS_CANCELLED, "cancelled");
		else if (c->kind == K_DOWNLOAD)
			handle_download(c);
		else
			read_next(c);
		maybe_free(c);
	}
}

/* Once a second: cancel the calls whose client took nothing for
 * send_timeout, so their bytes come back. */
static void housekeeping(struct rpc *r)
{
	double now = mono_now();

	if (now < r->housekeeping)
		return;
	r->housekeeping = now + 1;
	health_poll(r);
	for (struct call *c = r->active; c; c = c->active_next)
		if (c->sending && now - c->send_since > r->send_timeout && !c->timed_out) {
			log_debug("gRPC: a client took nothing for %.0fs; cancelling its call", r->send_timeout);
			grpc_call_cancel_with_status(c->call, GRPC_STATUS_RESOURCE_EXHAUSTED,
						     "the client read nothing for send_timeout", NULL);
			c->timed_out = true;
		}
}

/* ---- tickets ------------------------------------------------------------ */

static bool ticket_cached(struct rpc *r, const char *ticket, char *file)
{
	time_t now = time(NULL);
	bool hit = false;

	pthread_mutex_lock(&r->cache_lock);
	for (int i = 0; i < TICKET_CACHE; i++)
		if (r->cache[i].until > now && crypto_equal(r->cache[i].ticket, ticket, SHA256_HEX_LEN)) {
			strcpy(file, r->cache[i].file);
			hit = true;
			break;
		}
	pthread_mutex_unlock(&r->cache_lock);
	return hit;
}

static void ticket_remember(struct rpc *r, const char *ticket, const char *file)
{
	struct cached_ticket *e;

	pthread_mutex_lock(&r->cache_lock);
	e = &r->cache[r->cache_next++ % TICKET_CACHE];
	snprintf(e->ticket, sizeof(e->ticket), "%s", ticket);
	snprintf(e->file, sizeof(e->file), "%s", file);
	e->until = time(NULL) + TICKET_CACHE_SECONDS;
	pthread_mutex_unlock(&r->cache_lock);
}

/* The call's ticket from its metadata "authorization: Bearer TICKET". */
static bool ticket_of(struct call *c)
{
	c->ticket[0] = '\0';
	for (size_t i = 0; i < c->md.count; i++) {
		const grpc_metadata *m = &c->md.metadata[i];
		size_t klen = GRPC_SLICE_LENGTH(m->key), vlen = GRPC_SLICE_LENGTH(m->value);
		const char *val = (const char *)GRPC_SLICE_START_PTR(m->value);

		if (klen == 13 && memcmp(GRPC_SLICE_START_PTR(m->key), "authorization", 13) == 0 &&
		    vlen == 7 + SHA256_HEX_LEN && strncasecmp(val, "Bearer ", 7) == 0) {
			memcpy(c->ticket, val + 7, SHA256_HEX_LEN);
			c->ticket[SHA256_HEX_LEN] = '\0';
		}
	}
	return valid_sha256_hex(c->ticket);
}

static void serve(struct call *c, const char *file);

/* Runs on any thread, exactly once per check: keep the answer and wake the
 * queue thread with an empty batch on the owner call (posted at once).
 * v belongs to the queue thread as soon as the batch is started. */
static void verify_done(void *arg, int result, const char *file)
{
	struct verify *v = arg;
	struct rpc *r = v->r;
	grpc_call_error e;

	v->result = result;
	if (result == 1 && (!file || strlen(file) > FILENAME_MAX_BYTES))
		v->result = 0;
	if (v->result == 1)
		memcpy(v->file, file, strlen(file) + 1);
	e = grpc_call_start_batch(v->owner->call, NULL, 0, &v->owner->t_verified, NULL);
	if (e != GRPC_CALL_OK)
		log_err("cannot resume a call after its ticket check: grpc error %d", (int)e);
	pthread_mutex_lock(&r->cache_lock);
	r->outstanding--;
	pthread_cond_broadcast(&r->outstanding_cond);
	pthread_mutex_unlock(&r->cache_lock);
}

/* Park c until its ticket is checked, sharing a check already under way. */
static void park(struct call *c)
{
	struct rpc *r = c->r;
	struct verify *v;

	for (v = r->verifying; v; v = v->next)
		if (strcmp(v->ticket, c->ticket) == 0) {
			c->verify_next = v->waiters;
			v->waiters = c;
			c->pending++;
			return;
		}
	if (r->nverifying >= MAX_VERIFYING) {
		metrics_add(M_TICKETS_UNAVAILABLE, 1);
		finish(c, GRPC_STATUS_UNAVAILABLE, "too many ticket checks are waiting for the directory; try again");
		return;
	}
	if (!(v = calloc(1, sizeof(*v)))) {
		finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	v->r = r;
	memcpy(v->ticket, c->ticket, sizeof(v->ticket));
	v->owner = v->waiters = c;
	c->t_verified.v = v;
	c->pending++;
	v->next = r->verifying;
	r->verifying = v;
	r->nverifying++;
	pthread_mutex_lock(&r->cache_lock);
	r->outstanding++;
	pthread_mutex_unlock(&r->cache_lock);
	r->tc->verify(r->tc->ctx, v->ticket, verify_done, v);
}

/* The directory answered the check v (queue thread): go on with its calls. */
static void verified(struct rpc *r, struct verify *v)
{
	struct call *c, *next;

	for (struct verify **pp = &r->verifying; *pp; pp = &(*pp)->next)
		if (*pp == v) {
			*pp = v->next;
			break;
		}
	r->nverifying--;
	if (v->result == 1)
		ticket_remember(r, v->ticket, v->file);
	for (c = v->waiters; c; c = next) {
		next = c->verify_next;
		c->verify_next = NULL;
		c->pending--;
		metrics_add(v->result == 1 ? M_TICKETS_VALID : v->result == 0 ? M_TICKETS_REFUSED : M_TICKETS_UNAVAILABLE, 1);
		if (c->cancelled || r->shutting_down)
			finish(c, GRPC_STATUS_CANCELLED, "cancelled");
		else if (v->result == 1)
			serve(c, v->file);
		else if (v->result == 0)
			finish(c, GRPC_STATUS_UNAUTHENTICATED, "the ticket is unknown, expired, or for another peer");
		else if (v->result == -ENOTCONN)
			finish(c, GRPC_STATUS_UNAVAILABLE,
			       "this peer is not logged in to the directory, so it cannot check tickets");
		else if (v->result == -EHOSTUNREACH)
			finish(c, GRPC_STATUS_UNAVAILABLE, "the directory cannot be reached to check the ticket");
		else
			finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot check the ticket now (out of memory)");
		if (c != v->owner)
			maybe_free(c);
	}
	free(v);
}

/* ---- file reads, on the reader threads ----------------------------------- */

/* On a reader thread: read the call's bytes into its slice, then post the
 * call back to the queue (an empty batch) — the queue thread never waits
 * on a disk. The call is not touched once the batch is started. */
/* Read c's bytes from rd_got on with preadv2's flags: 0 once all are in,
 * -ENODATA at the end of the file (it shrank), or -errno. */
static int read_rest(struct call *c, int flags)
{
	uint8_t *p = GRPC_SLICE_START_PTR(c->rd) + c->rd_head;

	while (c->rd_got < c->rd_len) {
		struct iovec iov = { p + c->rd_got, (size_t)(c->rd_len - c->rd_got) };
		ssize_t n = preadv2(c->fd, &iov, 1, (off_t)(c->rd_off + c->rd_got), flags);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == 0 ? -ENODATA : -errno;
		c->rd_got += (uint64_t)n;
	}
	return 0;
}

static void read_run(struct pool_job *job)
{
	struct call *c = (struct call *)(void *)((char *)job - offsetof(struct call, job));
	struct rpc *r = c->r;
	grpc_call_error e;

	c->rd_err = read_rest(c, 0);
	e = grpc_call_start_batch(c->call, NULL, 0, &c->t_read, NULL);
	if (e != GRPC_CALL_OK)
		log_err("cannot resume a call after reading its file: grpc error %d", (int)e);
	pthread_mutex_lock(&r->cache_lock);
	r->outstanding--;
	pthread_cond_broadcast(&r->outstanding_cond);
	pthread_mutex_unlock(&r->cache_lock);
}

static void read_done(struct call *c);

/* Read len bytes at off of c->fd after hl bytes of framing (head) into one
 * slice, then read_done(). The reply's bytes are already taken from the
 * budgets. What the page cache holds is read here at once (RWF_NOWAIT
 * never waits on the disk); the rest, or all of it where the file system
 * cannot say (EOPNOTSUPP: tmpfs), on a reader thread. A handoff costs two
 * thread wake-ups per chunk, measured at twice the queue thread's CPU per
 * GiB, so it is kept for the reads that may wait. */
static void read_async(struct call *c, const uint8_t *head, size_t hl, uint64_t off, uint64_t len)
{
	struct rpc *r = c->r;
	int e;

	c->rd = grpc_slice_malloc_large(hl + (size_t)len);
	memcpy(GRPC_SLICE_START_PTR(c->rd), head, hl);
	c->rd_head = hl;
	c->rd_off = off;
	c->rd_len = len;
	c->rd_got = 0;
	c->rd_err = 0;
	if (!c->no_nowait) {
		if ((e = read_rest(c, RWF_NOWAIT)) == 0) {
			read_done(c);
			return;
		}
		if (e == -EOPNOTSUPP)
			c->no_nowait = true; /* not for this file */
	}
	c->job = (struct pool_job){ .run = read_run };
	c->pending++;
	pthread_mutex_lock(&r->cache_lock);
	r->outstanding++;
	pthread_mutex_unlock(&r->cache_lock);
	if (!pool_submit(r->readers, &c->job)) { /* stopping */
		pthread_mutex_lock(&r->cache_lock);
		r->outstanding--;
		pthread_mutex_unlock(&r->cache_lock);
		c->pending--;
		grpc_slice_unref(c->rd);
		c->rd = grpc_empty_slice();
		finish(c, GRPC_STATUS_CANCELLED, "cancelled");
	}
}

/* Back on the queue thread: send what was read, or end the call. */
static void read_done(struct call *c)
{
	grpc_slice s = c->rd;
	grpc_byte_buffer *buf;

	c->rd = grpc_empty_slice();
	if (c->kind == K_DOWNLOAD) { /* the whole file is in the message */
		close(c->fd);
		c->fd = -1;
	}
	if (c->cancelled || c->r->shutting_down) {
		grpc_slice_unref(s);
		finish(c, GRPC_STATUS_CANCELLED, "cancelled");
		return;
	}
	if (c->rd_err) { /* the file shrank or failed under us: a clean error, never short data */
		grpc_slice_unref(s);
		finish(c, GRPC_STATUS_INTERNAL, c->rd_err == -ENODATA ? "the file was truncated while being read"
					       : c->kind == K_DOWNLOAD ? "cannot read the file" : "read error");
		return;
	}
	metrics_add(M_BYTES_SERVED, c->rd_len);
	if (c->kind == K_READ)
		c->pos += c->rd_len;
	buf = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	send_message(c, buf, c->kind == K_DOWNLOAD || c->pos == c->end);
}

/* ---- handlers ----------------------------------------------------------- */

static void not_found(struct call *c, int r)
{
	if (r == -ENOENT)
		finish(c, GRPC_STATUS_NOT_FOUND, "no such shared file");
	else if (r == -EMFILE || r == -ENFILE || r == -ENOMEM)
		finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "this peer is out of file descriptors or memory now; try again");
	else
		finish(c, GRPC_STATUS_INTERNAL, "cannot open the file");
}

static void handle_download(struct call *c)
{
	uint8_t head[16], *p = head;
	uint64_t size, v;
	long long need;
	char msg[256];
	int fd, r;

	r = share_open_file(c->r->sh, c->name, &fd, &size);
	if (r < 0) {
		not_found(c, r);
		return;
	}
	/* The limit counts the encoded reply (field tag and length too), which
	 * is what the client's receive limit (4 MiB by default) counts. */
	need = size ? (long long)(1 + wire_varint_size(size) + size) : 0;
	if (need > c->r->max_message) {
		close(fd);
		snprintf(msg, sizeof(msg), "the file is %llu bytes; with its framing that is more than DownloadFile "
			 "sends (%lld): use the streaming p2p.v1.Peer/Read", (unsigned long long)size, c->r->max_message);
		finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
		return;
	}
	if (!bytes_take(c, need)) {
		close(fd);
		starve(c); /* opened again when bytes come back */
		return;
	}
	if (!size) { /* FileResponse{} is empty */
		close(fd);
		send_message(c, grpc_raw_byte_buffer_create(NULL, 0), true);
		return;
	}
	/* FileResponse{file_content = 1}, encoded by hand straight into the
	 * slice gRPC sends: one copy of the file in memory, not three. */
	*p++ = 0x0a;
	for (v = size; v >= 0x80; v >>= 7)
		*p++ = (uint8_t)(v | 0x80);
	*p++ = (uint8_t)v;
	c->fd = fd;
	read_async(c, head, (size_t)(p - head), 0, size);
}

/* What Stat says must hold when Read opens the file: it is still there,
 * with the size and mtime it was hashed with. -ENOENT, -ESTALE or 0. */
static int still_there(struct rpc *r, const struct shared_file *f)
{
	struct stat st;
	uint64_t size;
	int fd, e = share_open_file(r->sh, f->name, &fd, &size);

	if (e < 0)
		return e;
	e = fstat(fd, &st) < 0 ? -errno : 0;
	close(fd);
	if (e == 0 && ((uint64_t)st.st_size != f->size || (int64_t)st.st_mtim.tv_sec != f->mtime))
		e = -ESTALE;
	return e;
}

static void handle_stat(struct call *c)
{
	P2p__V1__StatResponse resp = P2P__V1__STAT_RESPONSE__INIT;
	ProtobufCBinaryData *blocks = NULL;
	struct shared_file f;
	int r;

	{
		r = share_stat(c->r->sh, c->name, &f);
		if (r == 0)
			r = still_there(c->r, &f);
		if (r == -ESTALE) {
			finish(c, GRPC_STATUS_UNAVAILABLE, "the file changed since it was hashed; try again shortly");
		} else if (r < 0) {
			not_found(c, r);
		} else if (f.blocks.n && !(blocks = calloc(f.blocks.n, sizeof(*blocks)))) {
			finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		} else {
			resp.name = f.name;
			resp.size = f.size;
			resp.sha256 = f.sha256;
			resp.mtime = f.mtime;
			resp.block_size = f.blocks.block_size;
			for (size_t i = 0; i < f.blocks.n; i++)
				blocks[i] = (ProtobufCBinaryData){ SHA256_BYTES, f.blocks.sha + i * SHA256_BYTES };
			resp.n_block_sha256 = f.blocks.n;
			resp.block_sha256 = blocks;
			send_message(c, pack(&resp.base), true);
		}
		free(blocks);
		block_list_free(&f.blocks);
	}
}

/* Wait for upload tokens: keep the call on the paced list (sorted by wake
 * time), which the queue thread serves between completions. */
static void pace(struct call *c, double wake)
{
	struct call **pp = &c->r->paced;

	c->wake = wake;
	while (*pp && (*pp)->wake <= wake)
		pp = &(*pp)->paced_next;
	c->paced_next = *pp;
	*pp = c;
}

/* Send the next chunk of a Read, or the final status. */
static void read_next(struct call *c)
{
	uint64_t want = c->end - c->pos;
	uint8_t head[CHUNK_HEADER_MAX];

	if (c->cancelled || c->r->shutting_down) {
		finish(c, GRPC_STATUS_CANCELLED, "cancelled");
		return;
	}
	if (want == 0) {
		finish(c, GRPC_STATUS_OK, "");
		return;
	}
	if (want > (uint64_t)c->r->chunk_size)
		want = (uint64_t)c->r->chunk_size;
	if (c->r->upload.rate > 0 && !c->charged) {
		double now = mono_now(), wait = ratelimit_charge(&c->r->upload, want, now);

		c->charged = true;
		if (wait > 0) {
			metrics_add(M_RATELIMIT_UPLOAD_WAITS, 1);
			pace(c, now + wait);
			return;
		}
	}
	if (!bytes_take(c, (long long)want + CHUNK_HEADER_MAX)) {
		starve(c);
		return;
	}
	c->charged = false;
	read_async(c, head, chunk_header(head, c->pos, want), c->pos, want);
}

/* Serve the paced Reads whose time has come (all of them when stopping). */
static void run_paced(struct rpc *r)
{
	double now = mono_now();

	while (r->paced && (r->paced->wake <= now || r->shutting_down)) {
		struct call *c = r->paced;

		r->paced = c->paced_next;
		c->paced_next = NULL;
		read_next(c);
		maybe_free(c);
	}
	/* A cancelled call need not wait for its tokens. */
	for (struct call **pp = &r->paced; *pp;) {
		struct call *c = *pp;

		if (!c->cancelled) {
			pp = &c->paced_next;
			continue;
		}
		*pp = c->paced_next;
		c->paced_next = NULL;
		read_next(c);
		maybe_free(c);
	}
}

static void handle_read(struct call *c)
{
	const P2p__V1__ReadRequest *m = (const P2p__V1__ReadRequest *)c->req;
	uint64_t size;
	int r;

	r = share_open_file(c->r->sh, c->name, &c->fd, &size);
	if (r < 0) {
		not_found(c, r);
		return;
	}
	if (m->offset > size || (m->length && m->length > size - m->offset)) {
		finish(c, GRPC_STATUS_INVALID_ARGUMENT, "the range is outside the file");
		return;
	}
	c->pos = m->offset;
	c->end = m->length ? m->offset + m->length : size;
	read_next(c);
}

/* The ticket is good for file: serve the call if it names that file. */
static void serve(struct call *c, const char *file)
{
	if (strcmp(file, c->name) != 0) {
		finish(c, GRPC_STATUS_PERMISSION_DENIED, "the ticket is for another file");
		return;
	}
	switch (c->kind) {
	case K_DOWNLOAD: handle_download(c); break;
	case K_STAT: handle_stat(c); break;
	case K_READ: handle_read(c); break;
	default: finish(c, GRPC_STATUS_INTERNAL, "no handler"); break;
	}
}

static void start_call(struct call *c)
{
	grpc_op close_op;
	char file[FILENAME_MAX_BYTES + 1];
	uint8_t *req;
	size_t len = 0;

	memset(&close_op, 0, sizeof(close_op));
	close_op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	close_op.data.recv_close_on_server.cancelled = &c->cancelled;
	start_batch(c, &close_op, 1, &c->t_close);
	metrics_grpc_started((int)c->kind);
	if (c->kind == K_UNKNOWN) {
		finish(c, GRPC_STATUS_UNIMPLEMENTED, "no such method");
		return;
	}
	if (!admit_call(c))
		return;
	if (is_reflection(c->kind)) {
		reflect_recv(c);
		return;
	}
	req = payload_bytes(c, &len);
	if (!req) {
		finish(c, GRPC_STATUS_INVALID_ARGUMENT, "missing or oversized request message");
		return;
	}
	if (c->kind == K_HEALTH_CHECK || c->kind == K_HEALTH_WATCH) {
		health_start(c, req, len);
		free(req);
		return;
	}
	switch (c->kind) {
	case K_DOWNLOAD:
		if ((c->req = (ProtobufCMessage *)file_request__unpack(NULL, len, req)))
			c->name = ((FileRequest *)c->req)->file_name;
		break;
	case K_STAT:
		if ((c->req = (ProtobufCMessage *)p2p__v1__stat_request__unpack(NULL, len, req)))
			c->name = ((P2p__V1__StatRequest *)c->req)->name;
		break;
	case K_READ:
		if ((c->req = (ProtobufCMessage *)p2p__v1__read_request__unpack(NULL, len, req)))
			c->name = ((P2p__V1__ReadRequest *)c->req)->name;
		break;
	default: break;
	}
	/* The name is field 1 in all three requests. */
	if (c->req && c->name && wire_field_len(req, len, 1) != (long long)strlen(c->name))
		c->name = NULL;
	free(req);
	if (!c->req) {
		finish(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed request message");
		return;
	}
	if (!c->name || !valid_filename(c->name, strlen(c->name))) {
		finish(c, GRPC_STATUS_INVALID_ARGUMENT,
		       "invalid file name: 1-255 bytes of UTF-8 without '/', not \".\" or \"..\"");
		return;
	}
	if (!ticket_of(c)) {
		finish(c, GRPC_STATUS_UNAUTHENTICATED,
		       "missing or malformed ticket: send metadata \"authorization: Bearer TICKET\" from POST /tickets");
		return;
	}
	if (ticket_cached(c->r, c->ticket, file)) {
		metrics_add(M_TICKETS_VALID, 1);
		metrics_add(M_TICKETS_CACHED, 1);
		serve(c, file);
	} else {
		park(c);
	}
}

/* ---- health and reflection ---------------------------------------------- */

/* SERVING (1) while main says so and the folder is still the one we
 * opened and can be opened; else NOT_SERVING (2). */
static int health_now(struct rpc *r)
{
	struct stat st;
	int fd, ok;

	if (!atomic_load(&r->serving))
		return 2;
	fd = open(r->folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ok = fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == r->folder_dev && st.st_ino == r->folder_ino;
	if (fd >= 0)
		close(fd);
	return ok ? 1 : 2;
}

static void watch_next(struct call *c)
{
	Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	int st = c->watch_known ? c->r->last_health : HEALTH_SERVICE_UNKNOWN;

	if (c->finished || c->sending)
		return;
	if (c->cancelled || c->r->shutting_down) {
		finish(c, GRPC_STATUS_CANCELLED, "cancelled");
		return;
	}
	if (st == c->sent_health)
		return;
	resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)st;
	c->sent_health = st;
	send_message(c, pack(&resp.base), false);
}

/* Once a second (housekeeping): tell the watchers of a change. */
static void health_poll(struct rpc *r)
{
	int st;

	if (!r->watchers)
		return;
	st = health_now(r);
	if (st == r->last_health)
		return;
	r->last_health = st;
	log_info("gRPC health: %s", st == 1 ? "SERVING" : "NOT_SERVING");
	for (struct call *c = r->watchers; c; c = c->watch_next)
		watch_next(c);
}

static void health_start(struct call *c, const uint8_t *req, size_t len)
{
	struct rpc *r = c->r;
	Grpc__Health__V1__HealthCheckRequest *m = grpc__health__v1__health_check_request__unpack(NULL, len, req);
	Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	bool known = false;

	if (!m || !m->service || wire_field_len(req, len, 1) != (long long)strlen(m->service)) {
		finish(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed HealthCheckRequest");
		goto out;
	}
	for (size_t i = 0; i < sizeof(health_services) / sizeof(health_services[0]); i++)
		if (strcmp(m->service, health_services[i]) == 0)
			known = true;
	r->last_health = health_now(r);
	if (c->kind == K_HEALTH_CHECK) {
		if (!known) {
			finish(c, GRPC_STATUS_NOT_FOUND, "unknown service");
		} else {
			resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)r->last_health;
			send_message(c, pack(&resp.base), true);
		}
		goto out;
	}
	if (r->nwatchers >= MAX_WATCHERS) {
		finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many health watchers");
		goto out;
	}
	c->watching = true;
	c->watch_known = known;
	c->sent_health = -1;
	c->watch_next = r->watchers;
	r->watchers = c;
	r->nwatchers++;
	watch_next(c);
out:
	if (m)
		grpc__health__v1__health_check_request__free_unpacked(m, NULL);
}

/* ServerReflectionInfo: one request, one answer, until the client closes. */
static void reflect_recv(struct call *c)
{
	grpc_op op;

	if (c->cancelled || c->r->shutting_down) {
		finish(c, GRPC_STATUS_CANCELLED, "cancelled");
		return;
	}
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &c->payload;
	start_batch(c, &op, 1, &c->t_recv);
}

static void reflect_received(struct call *c, int success)
{
	uint8_t *req;
	size_t len = 0;

	if (c->finished)
		return;
	if (!success || c->cancelled) {
		finish(c, GRPC_STATUS_CANCELLED, "cancelled");
		return;
	}
	if (!c->payload) { /* the client is done */
		finish(c, GRPC_STATUS_OK, "");
		return;
	}
	req = payload_bytes(c, &len);
	grpc_byte_buffer_destroy(c->payload);
	c->payload = NULL;
	if (!req) {
		finish(c, GRPC_STATUS_INVALID_ARGUMENT, "oversized request message");
		return;
	}
	send_message(c, reflection_answer(req, len), false);
	free(req);
}

/* A message went out: the call's next step. */
static void next_step(struct call *c)
{
	if (c->kind == K_HEALTH_WATCH)
		watch_next(c);
	else if (is_reflection(c->kind))
		reflect_recv(c);
	else
		read_next(c);
}

/* ---- the completion queue ----------------------------------------------- */

static void request_call(struct rpc *r, enum kind kind)
{
	struct call *c = calloc(1, sizeof(*c));
	grpc_call_error e;

	if (!c)
		return;
	c->r = r;
	c->kind = kind;
	c->fd = -1;
	c->t_request = (struct tag){ c, T_REQUEST, NULL };
	c->t_close = (struct tag){ c, T_CLOSE, NULL };
	c->t_send = (struct tag){ c, T_SEND, NULL };
	c->t_finish = (struct tag){ c, T_FINISH, NULL };
	c->t_verified = (struct tag){ c, T_VERIFIED, NULL };
	c->t_recv = (struct tag){ c, T_RECV, NULL };
	c->t_read = (struct tag){ c, T_READ, NULL };
	c->rd = grpc_empty_slice();
	grpc_metadata_array_init(&c->md);
	if (kind == K_UNKNOWN) {
		grpc_call_details_init(&c->details);
		e = grpc_server_request_call(r->srv, &c->call, &c->details, &c->md, r->cq, r->cq, &c->t_request);
	} else {
		e = grpc_server_request_registered_call(r->srv, r->methods[kind], &c->call, &c->deadline, &c->md,
							is_reflection(kind) ? NULL : &c->payload, r->cq, r->cq,
							&c->t_request);
	}
	if (e != GRPC_CALL_OK) {
		log_err("cannot request a gRPC call: error %d", (int)e);
		call_free(c);
	}
}

/* A new upload_rate (rpc_set_upload_rate) takes effect here, on the queue
 * thread: the bucket starts again full, and the Reads waiting for tokens
 * under the old rate go at once (their chunk is paid for). */
static void apply_upload_rate(struct rpc *r)
{
	long long rate = atomic_exchange(&r->new_upload_rate, -1);
	double now;

	if (rate < 0)
		return;
	now = mono_now();
	ratelimit_init(&r->upload, (double)rate, (double)r->chunk_size, now);
	for (struct call *c = r->paced; c; c = c->paced_next)
		c->wake = now;
	run_paced(r);
}

void rpc_set_upload_rate(struct rpc *r, long long rate)
{
	if (r && rate >= 0)
		atomic_store(&r->new_upload_rate, rate);
}

static void *cq_thread(void *arg)
{
	struct rpc *r = arg;

	for (;;) {
		gpr_timespec until;
		grpc_event ev;
		struct tag *t;
		struct call *c;
		double wait = 1.0; /* housekeeping */

		apply_upload_rate(r);
		if (r->paced && r->paced->wake - mono_now() < wait)
			wait = r->paced->wake - mono_now();
		until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
				     gpr_time_from_micros(wait > 0 ? (int64_t)(wait * 1e6) : 0, GPR_TIMESPAN));
		ev = grpc_completion_queue_next(r->cq, until, NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE) {
			run_paced(r);
			housekeeping(r);
			continue;
		}
		if (ev.tag == &r->shutdown_tag) {
			pthread_mutex_lock(&r->cache_lock);
			r->shutdown_done = true;
			pthread_cond_signal(&r->shutdown_cond);
			pthread_mutex_unlock(&r->cache_lock);
			continue;
		}
		t = ev.tag;
		c = t->c;
		switch (t->op) {
		case T_REQUEST:
			if (!ev.success) { /* shutting down: no call arrived */
				call_free(c);
				continue;
			}
			if (!r->shutting_down)
				request_call(r, c->kind);
			start_call(c);
			break;
		case T_CLOSE:
			c->pending--;
			if (c->cancelled && c->starved) {
				unstarve(c);
				finish(c, GRPC_STATUS_CANCELLED, "cancelled");
			} else if (c->cancelled && c->watching && !c->sending && !c->finished) {
				finish(c, GRPC_STATUS_CANCELLED, "cancelled");
			}
			break;
		case T_SEND:
		case T_FINISH:
			c->pending--;
			if (c->send_buf) { /* taken by the client, or dropped */
				grpc_byte_buffer_destroy(c->send_buf);
				c->send_buf = NULL;
			}
			c->sending = false;
			bytes_give_back(c);
			if (t->op == T_FINISH)
				break;
			if (!ev.success)
				c->cancelled = 1;
			if (!c->finished)
				next_step(c);
			break;
		case T_RECV:
			c->pending--;
			reflect_received(c, ev.success);
			break;
		case T_READ:
			c->pending--;
			read_done(c);
			break;
		case T_VERIFIED: /* each waiter's pending is settled there */
			verified(r, t->v);
			break;
		}
		maybe_free(c);
		if (r->paced)
			run_paced(r);
		if (r->bytes_back && r->starved)
			run_starved(r);
		housekeeping(r);
	}
	return NULL;
}

static void set_int(grpc_arg *a, const char *key, long long v)
{
	a->type = GRPC_ARG_INTEGER;
	a->key = (char *)key;
	a->value.integer = v > 0x7fffffff ? 0x7fffffff : (int)v;
}

int rpc_start(struct rpc **out, const char *listen, int listen_fd, struct share *sh, struct ticket_checker *tc,
	      const struct peerd_settings *set, int *bound_port)
{
	struct rpc *r = calloc(1, sizeof(*r));
	grpc_arg args[4];
	grpc_channel_args chargs = { 4, args };
	grpc_server_credentials *creds;

	if (!r)
		return -ENOMEM;
	r->sh = sh;
	r->tc = tc;
	r->lfd = -1;
	r->max_message = set->max_message;
	r->chunk_size = set->chunk_size;
	r->max_calls = set->max_calls;
	r->max_calls_client = set->max_calls_per_client;
	r->max_inflight = set->max_inflight;
	r->max_inflight_client = set->max_inflight_per_client;
	r->send_timeout = (double)set->send_timeout;
	r->starved_tail = &r->starved;
	atomic_init(&r->serving, true);
	atomic_init(&r->new_upload_rate, -1);
	r->folder = strdup(set->folder);
	{
		struct stat st;

		if (fstat(sh->dirfd, &st) == 0) {
			r->folder_dev = st.st_dev;
			r->folder_ino = st.st_ino;
		}
	}
	r->last_health = 1;
	metrics_grpc_init(method_paths, K_UNKNOWN);
	if (!r->folder || reflection_init() < 0 || pool_new(NULL, READERS, &r->readers) < 0) {
		free(r->folder);
		free(r);
		return -ENOMEM;
	}
	ratelimit_init(&r->upload, (double)set->upload_rate, (double)set->chunk_size, mono_now());
	pthread_mutex_init(&r->cache_lock, NULL);
	pthread_cond_init(&r->shutdown_cond, NULL);
	pthread_cond_init(&r->outstanding_cond, NULL);
	set_int(&args[0], GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
		(set->max_message > set->chunk_size ? set->max_message : set->chunk_size) + 4096);
	set_int(&args[1], GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, MAX_REQUEST_BYTES);
	/* A client queues its calls past this on its side, not ours. */
	set_int(&args[2], GRPC_ARG_MAX_CONCURRENT_STREAMS, set->max_calls_per_client);
	/* A connection without calls for 5 minutes is closed (GOAWAY). */
	set_int(&args[3], GRPC_ARG_MAX_CONNECTION_IDLE_MS, 300000);
	r->cq = grpc_completion_queue_create_for_next(NULL);
	r->srv = grpc_server_create(&chargs, NULL);
	for (int k = 0; k < K_UNKNOWN; k++)
		r->methods[k] = grpc_server_register_method(r->srv, method_paths[k], NULL,
							    is_reflection((enum kind)k) ? GRPC_SRM_PAYLOAD_NONE
										: GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
							    0);
	grpc_server_register_completion_queue(r->srv, r->cq, NULL);
	*bound_port = 0;
	if (listen_fd < 0 && listen && peer_tls_enabled()) {
		/* gRPC 1.51 adopts connections we accept in plain text only. */
		creds = peer_server_creds();
		*bound_port = grpc_server_add_http2_port(r->srv, listen, creds);
		grpc_server_credentials_release(creds);
	} else if (listen_fd >= 0 || listen) {
		r->lfd = listen_fd >= 0 ? listen_fd : listener_bind(listen);
		if (r->lfd >= 0) {
			*bound_port = listener_port(r->lfd);
			if (!*bound_port && listen_fd >= 0)
				*bound_port = -1; /* a UNIX socket from systemd: still served */
		}
	}
	if (*bound_port == 0 && (listen || listen_fd >= 0)) {
		log_err("cannot listen for gRPC on %s", listen ? listen : "the socket passed by systemd");
		if (r->lfd >= 0 && listen_fd < 0)
			close(r->lfd);
		grpc_server_destroy(r->srv);
		grpc_completion_queue_shutdown(r->cq);
		while (grpc_completion_queue_next(r->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
		       GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(r->cq);
		pool_free(r->readers);
		free(r->folder);
		free(r);
		return -EADDRINUSE;
	}
	if (*bound_port < 0)
		*bound_port = 0;
	grpc_server_start(r->srv);
	/* A few outstanding requests per method so bursts are taken at once. */
	for (int k = 0; k < K_COUNT; k++)
		for (int i = 0; i < 4; i++)
			request_call(r, (enum kind)k);
	if (pthread_create(&r->thread, NULL, cq_thread, r) != 0) {
		log_err("cannot start the gRPC thread");
		return -EAGAIN;
	}
	if (r->lfd >= 0 && listener_start(&r->listener, r->lfd, r->srv) < 0) {
		log_err("cannot start the gRPC accept thread");
		return -EAGAIN;
	}
	*out = r;
	return 0;
}

void rpc_set_serving(struct rpc *r, bool serving)
{
	if (r)
		atomic_store(&r->serving, serving);
}

void rpc_stop(struct rpc *r)
{
	if (!r)
		return;
	listener_stop(r->listener);
	if (r->lfd >= 0)
		close(r->lfd);
	r->shutting_down = true;
	grpc_server_shutdown_and_notify(r->srv, r->cq, &r->shutdown_tag);
	grpc_server_cancel_all_calls(r->srv);
	/* The queue thread reports the shutdown tag; then close the queue. */
	pthread_mutex_lock(&r->cache_lock);
	while (!r->shutdown_done)
		pthread_cond_wait(&r->shutdown_cond, &r->cache_lock);
	/* A check or a read still under way posts to the queue when it ends. */
	while (r->outstanding > 0)
		pthread_cond_wait(&r->outstanding_cond, &r->cache_lock);
	pthread_mutex_unlock(&r->cache_lock);
	pool_free(r->readers);
	grpc_server_destroy(r->srv);
	grpc_completion_queue_shutdown(r->cq);
	pthread_join(r->thread, NULL);
	grpc_completion_queue_destroy(r->cq);
	pthread_mutex_destroy(&r->cache_lock);
	pthread_cond_destroy(&r->shutdown_cond);
	pthread_cond_destroy(&r->outstanding_cond);
	for (int i = 0; i < CLIENT_BUCKETS; i++)
		while (r->clients[i]) {
			struct client *cl = r->clients[i];

			r->clients[i] = cl->next;
			free(cl);
		}
	free(r->folder);
	free(r);
}
