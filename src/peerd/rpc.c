/* rpc.c — the peer's gRPC server on the core C API (grpc/grpc.h).
 *
 * Serves the seed's /FileService/DownloadFile (whole file in one message,
 * up to max_message bytes) and /p2p.v1.Peer/Stat and /p2p.v1.Peer/Read (a
 * byte range streamed in chunks). One thread runs the completion queue; each
 * call is a small state machine driven by its batches' completions. A Read
 * keeps exactly one SEND_MESSAGE in flight, so a slow reader holds at most
 * one chunk in memory and never blocks the others.
 *
 * Every call must carry metadata "authorization: Bearer TICKET"; the ticket
 * is checked with the directory's POST /tickets/verify (as this peer) and the
 * answer cached briefly. The check is handed off (struct ticket_checker):
 * the call is parked, the queue thread goes on serving everyone else, and
 * the answer comes back as a completion on the queue (an empty batch on the
 * parked call). Calls with the same unchecked ticket share one check; at
 * most MAX_VERIFYING distinct checks wait at once, past that a call with an
 * unchecked ticket is answered UNAVAILABLE at once.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "FileSharing.pb-c.h"
#include "chunk.h"
#include "log.h"
#include "p2p/v1/peer.pb-c.h"
#include "peerd.h"
#include "ratelimit.h"

#define TICKET_CACHE 256
#define TICKET_CACHE_SECONDS 20
#define MAX_REQUEST_BYTES 4096
#define MAX_VERIFYING 64 /* distinct tickets waiting for the directory */

enum kind { K_DOWNLOAD, K_STAT, K_READ, K_UNKNOWN, K_COUNT };

static const char *const method_paths[K_UNKNOWN] = {
	[K_DOWNLOAD] = "/FileService/DownloadFile",
	[K_STAT] = "/p2p.v1.Peer/Stat",
	[K_READ] = "/p2p.v1.Peer/Read",
};

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
	bool shutting_down;
	int shutdown_tag;
	bool shutdown_done;
	pthread_cond_t shutdown_cond;
	pthread_mutex_t cache_lock;
	struct cached_ticket cache[TICKET_CACHE];
	unsigned cache_next;
	struct ratelimit upload;  /* touched by the queue thread only */
	struct call *paced;       /* Reads waiting for upload tokens, soonest first */
	struct verify *verifying; /* queue thread only */
	int nverifying;           /* queue thread only: length of verifying */
	int outstanding;          /* checks whose done() has not returned (cache_lock) */
	pthread_cond_t outstanding_cond;
};

/* A completion-queue tag: which call, and which of its batches. */
struct tag {
	struct call *c;
	enum { T_REQUEST, T_CLOSE, T_SEND, T_FINISH, T_VERIFIED } op;
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
	struct tag t_request, t_close, t_send, t_finish, t_verified;
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
};

static void request_call(struct rpc *r, enum kind kind);

static void call_free(struct call *c)
{
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
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

static void maybe_free(struct call *c)
{
	if (c->pending == 0 && (c->finished || !c->call) && !c->paced_next && c->r->paced != c)
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
	if (last) {
		c->status_details = grpc_slice_from_static_string("");
		c->have_details = true;
		ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
		ops[n].data.send_status_from_server.status = GRPC_STATUS_OK;
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

/* Bytes of a varint. */
static size_t varint_size(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static bool varint_get(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; *p < end && shift < 64; shift += 7) {
		uint8_t b = *(*p)++;

		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

/* The length on the wire of the last occurrence of length-delimited field
 * `field` in the message buf (0 when absent); -1 when malformed. protobuf-c
 * hands a string field over as a C string, so "big.bin\0x" would arrive as
 * "big.bin": the caller compares this with strlen(). */
static long long wire_field_len(const uint8_t *buf, size_t len, uint32_t field)
{
	const uint8_t *p = buf, *end = buf + len;
	long long found = 0;
	uint64_t key, n;

	while (p < end) {
		if (!varint_get(&p, end, &key))
			return -1;
		switch (key & 7) {
		case 0:
			if (!varint_get(&p, end, &n))
				return -1;
			break;
		case 1:
			if (end - p < 8)
				return -1;
			p += 8;
			break;
		case 2:
			if (!varint_get(&p, end, &n) || n > (uint64_t)(end - p))
				return -1;
			if (key >> 3 == field)
				found = (long long)n;
			p += n;
			break;
		case 5:
			if (end - p < 4)
				return -1;
			p += 4;
			break;
		default:
			return -1;
		}
	}
	return found;
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

/* ---- handlers ----------------------------------------------------------- */

static void not_found(struct call *c, int r)
{
	finish(c, r == -ENOENT ? GRPC_STATUS_NOT_FOUND : GRPC_STATUS_INTERNAL,
	       r == -ENOENT ? "no such shared file" : "cannot open the file");
}

static void handle_download(struct call *c)
{
	FileResponse resp = FILE_RESPONSE__INIT;
	uint64_t size;
	uint8_t *data;
	char msg[256];
	int fd, r;

	r = share_open_file(c->r->sh, c->name, &fd, &size);
	if (r < 0) {
		not_found(c, r);
		return;
	}
	/* The limit counts the encoded reply (field tag and length too), which
	 * is what the client's receive limit (4 MiB by default) counts. */
	if ((size ? 1 + varint_size(size) + size : 0) > (uint64_t)c->r->max_message) {
		close(fd);
		snprintf(msg, sizeof(msg), "the file is %llu bytes; with its framing that is more than DownloadFile "
			 "sends (%lld): use the streaming p2p.v1.Peer/Read", (unsigned long long)size, c->r->max_message);
		finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
		return;
	}
	data = malloc(size ? size : 1);
	if (!data || pread(fd, data, size, 0) != (ssize_t)size) {
		free(data);
		close(fd);
		finish(c, GRPC_STATUS_INTERNAL, "cannot read the file");
		return;
	}
	close(fd);
	resp.file_content.data = data;
	resp.file_content.len = size;
	send_message(c, pack(&resp.base), true);
	free(data);
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
	uint64_t want = c->end - c->pos, got = 0;
	uint8_t head[CHUNK_HEADER_MAX];
	grpc_slice parts[2];
	ssize_t n = 0;

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
			pace(c, now + wait);
			return;
		}
	}
	c->charged = false;
	parts[1] = grpc_slice_malloc((size_t)want);
	while (got < want && (n = pread(c->fd, GRPC_SLICE_START_PTR(parts[1]) + got, want - got,
					(off_t)(c->pos + got))) > 0)
		got += (uint64_t)n;
	if (got < want) {
		grpc_slice_unref(parts[1]);
		/* The file shrank or failed under us: a clean error, never short data. */
		finish(c, GRPC_STATUS_INTERNAL, n == 0 ? "the file was truncated while being read"
						       : "read error");
		return;
	}
	parts[0] = grpc_slice_from_copied_buffer((const char *)head, chunk_header(head, c->pos, want));
	c->pos += want;
	send_message(c, grpc_raw_byte_buffer_create(parts, 2), false);
	grpc_slice_unref(parts[0]);
	grpc_slice_unref(parts[1]);
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
	if (c->kind == K_UNKNOWN) {
		finish(c, GRPC_STATUS_UNIMPLEMENTED, "no such method");
		return;
	}
	req = payload_bytes(c, &len);
	if (!req) {
		finish(c, GRPC_STATUS_INVALID_ARGUMENT, "missing or oversized request message");
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
	if (ticket_cached(c->r, c->ticket, file))
		serve(c, file);
	else
		park(c);
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
	grpc_metadata_array_init(&c->md);
	if (kind == K_UNKNOWN) {
		grpc_call_details_init(&c->details);
		e = grpc_server_request_call(r->srv, &c->call, &c->details, &c->md, r->cq, r->cq, &c->t_request);
	} else {
		e = grpc_server_request_registered_call(r->srv, r->methods[kind], &c->call, &c->deadline, &c->md,
							&c->payload, r->cq, r->cq, &c->t_request);
	}
	if (e != GRPC_CALL_OK) {
		log_err("cannot request a gRPC call: error %d", (int)e);
		call_free(c);
	}
}

static void *cq_thread(void *arg)
{
	struct rpc *r = arg;

	for (;;) {
		gpr_timespec until = gpr_inf_future(GPR_CLOCK_MONOTONIC);
		grpc_event ev;
		struct tag *t;
		struct call *c;

		if (r->paced) {
			double wait = r->paced->wake - mono_now();

			until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
					     gpr_time_from_micros(wait > 0 ? (int64_t)(wait * 1e6) : 0, GPR_TIMESPAN));
		}
		ev = grpc_completion_queue_next(r->cq, until, NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE) {
			run_paced(r);
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
			break;
		case T_SEND:
			c->pending--;
			if (!ev.success)
				c->cancelled = 1;
			if (!c->finished)
				read_next(c);
			break;
		case T_FINISH:
			c->pending--;
			break;
		case T_VERIFIED: /* each waiter's pending is settled there */
			verified(r, t->v);
			break;
		}
		maybe_free(c);
		if (r->paced)
			run_paced(r);
	}
	return NULL;
}

int rpc_start(struct rpc **out, const char *listen, struct share *sh, struct ticket_checker *tc,
	      long long max_message, long long chunk_size, long long upload_rate, int *bound_port)
{
	struct rpc *r = calloc(1, sizeof(*r));
	grpc_arg args[2];
	grpc_channel_args chargs = { 2, args };
	grpc_server_credentials *creds;

	if (!r)
		return -ENOMEM;
	r->sh = sh;
	r->tc = tc;
	r->max_message = max_message;
	r->chunk_size = chunk_size;
	ratelimit_init(&r->upload, (double)upload_rate, (double)chunk_size, mono_now());
	pthread_mutex_init(&r->cache_lock, NULL);
	pthread_cond_init(&r->shutdown_cond, NULL);
	pthread_cond_init(&r->outstanding_cond, NULL);
	args[0].type = GRPC_ARG_INTEGER;
	args[0].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
	args[0].value.integer = (int)(max_message > chunk_size ? max_message : chunk_size) + 4096;
	args[1].type = GRPC_ARG_INTEGER;
	args[1].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	args[1].value.integer = MAX_REQUEST_BYTES;
	r->cq = grpc_completion_queue_create_for_next(NULL);
	r->srv = grpc_server_create(&chargs, NULL);
	for (int k = 0; k < K_UNKNOWN; k++)
		r->methods[k] = grpc_server_register_method(r->srv, method_paths[k], NULL,
							    GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
	grpc_server_register_completion_queue(r->srv, r->cq, NULL);
	*bound_port = 0;
	if (listen) {
		creds = peer_server_creds();
		*bound_port = grpc_server_add_http2_port(r->srv, listen, creds);
		grpc_server_credentials_release(creds);
		if (*bound_port == 0) {
			log_err("cannot listen for gRPC on %s", listen);
			grpc_server_destroy(r->srv);
			grpc_completion_queue_shutdown(r->cq);
			while (grpc_completion_queue_next(r->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
			       GRPC_QUEUE_SHUTDOWN)
				;
			grpc_completion_queue_destroy(r->cq);
			free(r);
			return -EADDRINUSE;
		}
	}
	grpc_server_start(r->srv);
	/* A few outstanding requests per method so bursts are taken at once. */
	for (int k = 0; k < K_COUNT; k++)
		for (int i = 0; i < 4; i++)
			request_call(r, (enum kind)k);
	if (pthread_create(&r->thread, NULL, cq_thread, r) != 0) {
		log_err("cannot start the gRPC thread");
		return -EAGAIN;
	}
	*out = r;
	return 0;
}

/* Plain text only (gRPC 1.51); main.c refuses socket activation with TLS. */
void rpc_add_fd(struct rpc *r, int fd)
{
	grpc_server_credentials *creds = grpc_insecure_server_credentials_create();

	grpc_server_add_channel_from_fd(r->srv, fd, creds);
	grpc_server_credentials_release(creds);
}

void rpc_stop(struct rpc *r)
{
	if (!r)
		return;
	r->shutting_down = true;
	grpc_server_shutdown_and_notify(r->srv, r->cq, &r->shutdown_tag);
	grpc_server_cancel_all_calls(r->srv);
	/* The queue thread reports the shutdown tag; then close the queue. */
	pthread_mutex_lock(&r->cache_lock);
	while (!r->shutdown_done)
		pthread_cond_wait(&r->shutdown_cond, &r->cache_lock);
	/* A check still under way posts to the queue when it ends. */
	while (r->outstanding > 0)
		pthread_cond_wait(&r->outstanding_cond, &r->cache_lock);
	pthread_mutex_unlock(&r->cache_lock);
	grpc_server_destroy(r->srv);
	grpc_completion_queue_shutdown(r->cq);
	pthread_join(r->thread, NULL);
	grpc_completion_queue_destroy(r->cq);
	pthread_mutex_destroy(&r->cache_lock);
	pthread_cond_destroy(&r->shutdown_cond);
	pthread_cond_destroy(&r->outstanding_cond);
	free(r);
}
