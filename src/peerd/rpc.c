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
 * answer cached briefly.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
#include "log.h"
#include "p2p/v1/peer.pb-c.h"
#include "peerd.h"

#define TICKET_CACHE 256
#define TICKET_CACHE_SECONDS 20
#define MAX_REQUEST_BYTES 4096

enum kind { K_DOWNLOAD, K_STAT, K_READ, K_UNKNOWN, K_COUNT };

static const char *const method_paths[K_UNKNOWN] = {
	[K_DOWNLOAD] = "/FileService/DownloadFile",
	[K_STAT] = "/p2p.v1.Peer/Stat",
	[K_READ] = "/p2p.v1.Peer/Read",
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
};

struct call;

/* A completion-queue tag: which call, and which of its batches. */
struct tag {
	struct call *c;
	enum { T_REQUEST, T_CLOSE, T_SEND, T_FINISH } op;
};

struct call {
	struct rpc *r;
	enum kind kind;
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array md;
	grpc_call_details details;      /* K_UNKNOWN only */
	grpc_byte_buffer *payload;
	struct tag t_request, t_close, t_send, t_finish;
	int pending;                    /* batches started, not completed */
	int cancelled;                  /* from RECV_CLOSE_ON_SERVER */
	bool metadata_sent, finished;
	/* Read state */
	int fd;
	uint64_t pos, end;
	grpc_byte_buffer *send_buf;
	grpc_slice status_details;
	bool have_details;
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
	if (c->pending == 0 && (c->finished || !c->call))
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

/* Check the call's ticket for name. Returns GRPC_STATUS_OK or the status to
 * answer, with msg set. */
static grpc_status_code check_ticket(struct call *c, const char *name, const char **msg)
{
	struct rpc *r = c->r;
	char ticket[SHA256_HEX_LEN + 1] = "", file[FILENAME_MAX_BYTES + 1] = "", token[SHA256_HEX_LEN + 1];
	struct json_object *body, *reply = NULL, *v;
	int status;

	for (size_t i = 0; i < c->md.count; i++) {
		const grpc_metadata *m = &c->md.metadata[i];
		size_t klen = GRPC_SLICE_LENGTH(m->key), vlen = GRPC_SLICE_LENGTH(m->value);
		const char *val = (const char *)GRPC_SLICE_START_PTR(m->value);

		if (klen == 13 && memcmp(GRPC_SLICE_START_PTR(m->key), "authorization", 13) == 0 &&
		    vlen == 7 + SHA256_HEX_LEN && strncasecmp(val, "Bearer ", 7) == 0) {
			memcpy(ticket, val + 7, SHA256_HEX_LEN);
			ticket[SHA256_HEX_LEN] = '\0';
		}
	}
	if (!valid_sha256_hex(ticket)) {
		*msg = "missing or malformed ticket: send metadata \"authorization: Bearer TICKET\" from POST /tickets";
		return GRPC_STATUS_UNAUTHENTICATED;
	}
	if (!ticket_cached(r, ticket, file)) {
		pthread_mutex_lock(&r->tc->session->lock);
		snprintf(token, sizeof(token), "%s", r->tc->session->token);
		pthread_mutex_unlock(&r->tc->session->lock);
		if (!*token) {
			*msg = "this peer is not logged in to the directory, so it cannot check tickets";
			return GRPC_STATUS_UNAVAILABLE;
		}
		body = json_object_new_object();
		json_object_object_add(body, "ticket", json_object_new_string(ticket));
		status = dir_call(r->tc->directory, "POST", "/tickets/verify", token, body, &reply, 10);
		json_object_put(body);
		if (status == 0 || status >= 500) {
			json_object_put(reply);
			*msg = "the directory cannot be reached to check the ticket";
			return GRPC_STATUS_UNAVAILABLE;
		}
		if (status != 200 || !json_object_object_get_ex(reply, "file", &v) ||
		    !json_object_is_type(v, json_type_string)) {
			json_object_put(reply);
			*msg = "the ticket is unknown, expired, or for another peer";
			return GRPC_STATUS_UNAUTHENTICATED;
		}
		snprintf(file, sizeof(file), "%s", json_object_get_string(v));
		json_object_put(reply);
		ticket_remember(r, ticket, file);
	}
	if (strcmp(file, name) != 0) {
		*msg = "the ticket is for another file";
		return GRPC_STATUS_PERMISSION_DENIED;
	}
	return GRPC_STATUS_OK;
}

/* ---- handlers ----------------------------------------------------------- */

/* Validate the name and the ticket; on failure the call is finished. */
static bool admit(struct call *c, const char *name)
{
	const char *msg = NULL;
	grpc_status_code code;

	if (!name || !valid_filename(name, strlen(name))) {
		finish(c, GRPC_STATUS_INVALID_ARGUMENT,
		       "invalid file name: 1-255 bytes of UTF-8 without '/', not \".\" or \"..\"");
		return false;
	}
	code = check_ticket(c, name, &msg);
	if (code != GRPC_STATUS_OK) {
		finish(c, code, msg);
		return false;
	}
	return true;
}

static void not_found(struct call *c, int r)
{
	finish(c, r == -ENOENT ? GRPC_STATUS_NOT_FOUND : GRPC_STATUS_INTERNAL,
	       r == -ENOENT ? "no such shared file" : "cannot open the file");
}

static void handle_download(struct call *c, const uint8_t *req, size_t len)
{
	FileRequest *m = file_request__unpack(NULL, len, req);
	FileResponse resp = FILE_RESPONSE__INIT;
	uint64_t size;
	uint8_t *data;
	char msg[256];
	int fd, r;

	if (!m) {
		finish(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed FileRequest");
		return;
	}
	if (!admit(c, m->file_name))
		goto out;
	r = share_open_file(c->r->sh, m->file_name, &fd, &size);
	if (r < 0) {
		not_found(c, r);
		goto out;
	}
	if (size > (uint64_t)c->r->max_message) {
		close(fd);
		snprintf(msg, sizeof(msg), "the file is %llu bytes, more than DownloadFile sends (%lld): "
			 "use the streaming p2p.v1.Peer/Read", (unsigned long long)size, c->r->max_message);
		finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
		goto out;
	}
	data = malloc(size ? size : 1);
	if (!data || pread(fd, data, size, 0) != (ssize_t)size) {
		free(data);
		close(fd);
		finish(c, GRPC_STATUS_INTERNAL, "cannot read the file");
		goto out;
	}
	close(fd);
	resp.file_content.data = data;
	resp.file_content.len = size;
	send_message(c, pack(&resp.base), true);
	free(data);
out:
	file_request__free_unpacked(m, NULL);
}

static void handle_stat(struct call *c, const uint8_t *req, size_t len)
{
	P2p__V1__StatRequest *m = p2p__v1__stat_request__unpack(NULL, len, req);
	P2p__V1__StatResponse resp = P2P__V1__STAT_RESPONSE__INIT;
	struct shared_file f;
	int r;

	if (!m) {
		finish(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed StatRequest");
		return;
	}
	if (admit(c, m->name)) {
		r = share_find(c->r->sh, m->name, &f);
		if (r < 0) {
			not_found(c, r);
		} else {
			resp.name = f.name;
			resp.size = f.size;
			resp.sha256 = f.sha256;
			resp.mtime = f.mtime;
			send_message(c, pack(&resp.base), true);
		}
	}
	p2p__v1__stat_request__free_unpacked(m, NULL);
}

/* Send the next chunk of a Read, or the final status. */
static void read_next(struct call *c)
{
	P2p__V1__Chunk chunk = P2P__V1__CHUNK__INIT;
	uint64_t want = c->end - c->pos;
	uint8_t *buf;
	ssize_t n;

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
	buf = malloc(want);
	if (!buf) {
		finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	n = pread(c->fd, buf, want, (off_t)c->pos);
	if (n <= 0) {
		free(buf);
		/* The file shrank or failed under us: a clean error, never short data. */
		finish(c, GRPC_STATUS_INTERNAL, n == 0 ? "the file was truncated while being read"
						       : "read error");
		return;
	}
	chunk.offset = c->pos;
	chunk.data.data = buf;
	chunk.data.len = (size_t)n;
	c->pos += (uint64_t)n;
	send_message(c, pack(&chunk.base), false);
	free(buf);
}

static void handle_read(struct call *c, const uint8_t *req, size_t len)
{
	P2p__V1__ReadRequest *m = p2p__v1__read_request__unpack(NULL, len, req);
	uint64_t size;
	int r;

	if (!m) {
		finish(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed ReadRequest");
		return;
	}
	if (!admit(c, m->name))
		goto out;
	r = share_open_file(c->r->sh, m->name, &c->fd, &size);
	if (r < 0) {
		not_found(c, r);
		goto out;
	}
	if (m->offset > size || (m->length && m->length > size - m->offset)) {
		finish(c, GRPC_STATUS_INVALID_ARGUMENT, "the range is outside the file");
		goto out;
	}
	c->pos = m->offset;
	c->end = m->length ? m->offset + m->length : size;
	read_next(c);
out:
	p2p__v1__read_request__free_unpacked(m, NULL);
}

static void start_call(struct call *c)
{
	grpc_op close_op;
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
	case K_DOWNLOAD: handle_download(c, req, len); break;
	case K_STAT: handle_stat(c, req, len); break;
	case K_READ: handle_read(c, req, len); break;
	default: break;
	}
	free(req);
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
	c->t_request = (struct tag){ c, T_REQUEST };
	c->t_close = (struct tag){ c, T_CLOSE };
	c->t_send = (struct tag){ c, T_SEND };
	c->t_finish = (struct tag){ c, T_FINISH };
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
		grpc_event ev = grpc_completion_queue_next(r->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		struct tag *t;
		struct call *c;

		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
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
		}
		maybe_free(c);
	}
	return NULL;
}

int rpc_start(struct rpc **out, const char *listen, struct share *sh, struct ticket_checker *tc,
	      long long max_message, long long chunk_size, int *bound_port)
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
	pthread_mutex_init(&r->cache_lock, NULL);
	pthread_cond_init(&r->shutdown_cond, NULL);
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
	pthread_mutex_unlock(&r->cache_lock);
	grpc_server_destroy(r->srv);
	grpc_completion_queue_shutdown(r->cq);
	pthread_join(r->thread, NULL);
	grpc_completion_queue_destroy(r->cq);
	pthread_mutex_destroy(&r->cache_lock);
	pthread_cond_destroy(&r->shutdown_cond);
	free(r);
}
