/* download.c — fetching a file from other peers (DESIGN.md, "Download
 * semantics").
 *
 * The control socket starts a transfer on the main loop (search the
 * directory, choose the sources that have the same size and SHA-256). A
 * worker thread then:
 *
 *  1. asks every source for the file's metadata and block hashes (p2p.v1
 *     Stat, block_size/block_sha256): a source that now has another
 *     version is not used, and neither is one whose block list differs
 *     from the one most sources send;
 *  2. verifies what DIR/.p2p-partial/NAME already holds, block by block, so
 *     a download interrupted in any way (cancel, SIGTERM, kill -9, a crash)
 *     continues from its verified ranges with no state file to trust;
 *  3. starts one stream thread per source; each claims the lowest range
 *     still to fetch (one range = one block, so a fast source simply takes
 *     more of them), reads it with p2p.v1 Read, pwrites the chunks in place
 *     and, with more than one source, hashes them as they arrive (with one
 *     there is no other source to refetch from). A range that does not
 *     match its block hash goes back to be fetched from another source and
 *     its source is dropped; so is a source that fails or stays silent;
 *  4. meanwhile hashes the whole file in order on a second core, so the
 *     final check costs no pass of its own: with one source the stream
 *     hands each chunk over in memory as soon as it is written; otherwise
 *     (ranges land out of order) and for ranges resumed from disk, it reads
 *     each range back from the page cache once it is done. The whole-file
 *     SHA-256 from the directory's index stays the authority: the block
 *     hashes come from a source and only steer which ranges to refetch.
 *
 * When every range is in and the SHA-256 matches, it fsyncs and renames the
 * file into place atomically; a corrupt or short file never appears under
 * the final name. Sources that predate block hashes still work: their
 * ranges are checked only by the whole-file hash, and a partial file
 * without block hashes to check it against is fetched again.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <openssl/evp.h>

#include "log.h"
#include "metrics.h"
#include "chunk.h"
#include "p2p/v1/peer.pb-c.h"
#include "peerd.h"
#include "ranges.h"

#define PARTIAL_DIR ".p2p-partial"
#define TICKET_REUSE_S 30     /* tickets live 60 s by default; take a new one well before */
#define IDLE_TIMEOUT_S 60     /* a source silent this long in a call is dropped */
#define WAIT_SLICE_MS 250     /* how often a waiting stream looks at cancel */
#define RECV_WINDOW (4 << 20) /* per-stream HTTP/2 receive window: caps memory per source */
#define MAX_IOV 1024
#define HASHQ_BYTES (8u << 20) /* chunks waiting for the whole-file hash, at most */
#define HASHQ_LEN 256
#define MIN_BLOCK (64u << 10)
#define MAX_BLOCK (1u << 30)

struct fetch;

/* One source and the thread that streams ranges from it. */
struct stream {
	struct fetch *f;
	unsigned idx;
	pthread_t thread;
	bool started, used;
	char ticket[SHA256_HEX_LEN + 1];
	double ticket_at;
	grpc_channel *ch;
	grpc_completion_queue *cq;
	EVP_MD_CTX *md;
	struct iovec iov[MAX_IOV];
};

/* What the worker and its stream threads share; fields marked so are under
 * t->lock. */
struct fetch {
	struct transfer *t;
	int fd;
	struct block_list blocks; /* expected block hashes; n == 0: none known */
	bool check_ranges;        /* several sources: verify each range as it lands */
	bool hash_inline;         /* one source: chunks go to the whole-file hash from memory */
	struct ranges rg;         /* locked */
	uint32_t alive;           /* locked: sources not dropped */
	int running;              /* locked: stream threads still running */
	int io_error;             /* locked: first local write error, -errno */
	bool bad_range;           /* locked: some range failed its block hash */
	/* The whole-file hash: bytes before hash_end are hashed or queued
	 * (in order) in hashq; the rest is read back from the file once its
	 * range is done. All locked. */
	uint64_t hash_end, hashq_bytes;
	uint64_t hashed_in_memory; /* the hasher's own: bytes taken from the queue */
	struct hashq_entry {
		grpc_byte_buffer *buf;
		uint64_t len;
	} hashq[HASHQ_LEN];
	unsigned hashq_head, hashq_len;
	bool hasher_done;
	struct stream s[MAX_SOURCES];
};

static void fail(struct transfer *t, const char *error, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(struct transfer *t, const char *error, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&t->lock);
	snprintf(t->error, sizeof(t->error), "%s", error);
	va_start(ap, fmt);
	vsnprintf(t->message, sizeof(t->message), fmt, ap);
	va_end(ap);
	t->state = t->cancel ? TRANSFER_CANCELLED : TRANSFER_FAILED;
	metrics_add(t->cancel ? M_TRANSFERS_CANCELLED : M_TRANSFERS_FAILED, 1);
	t->seconds = mono_now() - t->started;
	pthread_mutex_unlock(&t->lock);
}

/* A ticket for this file from this source (asked on the main loop; this
 * worker thread waits for it). */
static int get_ticket(struct transfer *t, const char *peer, char out[SHA256_HEX_LEN + 1])
{
	return dirclient_ticket_wait(t->dc, peer, t->name, out);
}

static bool cancelled(struct transfer *t)
{
	bool c;

	pthread_mutex_lock(&t->lock);
	c = t->cancel;
	pthread_mutex_unlock(&t->lock);
	return c;
}

void download_cancel(struct transfer *t)
{
	pthread_mutex_lock(&t->lock);
	t->cancel = true;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

/* The one place that makes a channel to another peer. The receive window
 * is capped so that each source holds at most RECV_WINDOW bytes in flight
 * whatever the file size (GRPC-NOTES: lookahead + no BDP probing). */
static grpc_channel *open_channel(const char *target)
{
	grpc_arg args[5] = {
		{ GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, { .integer = 16 << 20 } },
		{ GRPC_ARG_INTEGER, (char *)GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, { .integer = RECV_WINDOW } },
		{ GRPC_ARG_INTEGER, (char *)GRPC_ARG_HTTP2_BDP_PROBE, { .integer = 0 } },
		/* A link that drops silently is noticed by HTTP/2 pings. */
		{ GRPC_ARG_INTEGER, (char *)GRPC_ARG_KEEPALIVE_TIME_MS, { .integer = 10000 } },
		{ GRPC_ARG_INTEGER, (char *)GRPC_ARG_KEEPALIVE_TIMEOUT_MS, { .integer = 10000 } },
	};
	grpc_channel_args chargs = { 5, args };
	grpc_channel_credentials *creds = peer_client_creds();
	grpc_channel *ch = grpc_channel_create(target, creds, &chargs);

	grpc_channel_credentials_release(creds);
	return ch;
}

static int stream_ticket(struct stream *s)
{
	struct transfer *t = s->f->t;

	if (*s->ticket && mono_now() - s->ticket_at < TICKET_REUSE_S)
		return 0;
	if (get_ticket(t, t->src[s->idx].peer, s->ticket) < 0) {
		s->ticket[0] = '\0';
		return -EACCES;
	}
	s->ticket_at = mono_now();
	return 0;
}

/* ---- one call on a stream's channel ---------------------------------------- */

struct rcall {
	grpc_call *call;
	grpc_metadata md;
	grpc_metadata_array initial, trailing;
	grpc_byte_buffer *sendbuf;
	grpc_status_code status;
	grpc_slice details;
	bool gave_up;
};

/* Wait for a batch. Cancels the call when the transfer is cancelled or the
 * source stays silent for IDLE_TIMEOUT_S; the batch then completes. */
static bool rcall_wait(struct stream *s, struct rcall *rc, void *tag)
{
	double since = mono_now();

	for (;;) {
		gpr_timespec until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
						  gpr_time_from_millis(WAIT_SLICE_MS, GPR_TIMESPAN));
		grpc_event ev = grpc_completion_queue_pluck(s->cq, tag, until, NULL);

		if (ev.type == GRPC_OP_COMPLETE)
			return ev.success;
		if (!rc->gave_up && (cancelled(s->f->t) || mono_now() - since > IDLE_TIMEOUT_S)) {
			grpc_call_cancel(rc->call, NULL);
			rc->gave_up = true;
		}
	}
}

static int rcall_begin(struct stream *s, struct rcall *rc, const char *method, const ProtobufCMessage *req)
{
	char auth[SHA256_HEX_LEN + 8];
	grpc_slice body;
	grpc_op ops[4];

	memset(rc, 0, sizeof(*rc));
	rc->details = grpc_empty_slice();
	rc->status = GRPC_STATUS_UNKNOWN;
	grpc_metadata_array_init(&rc->initial);
	grpc_metadata_array_init(&rc->trailing);
	snprintf(auth, sizeof(auth), "Bearer %s", s->ticket);
	rc->md.key = grpc_slice_from_static_string("authorization");
	rc->md.value = grpc_slice_from_copied_string(auth);
	rc->call = grpc_channel_create_call(s->ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq,
					    grpc_slice_from_static_string(method), NULL,
					    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	if (!rc->call)
		return -ENOMEM;
	body = grpc_slice_malloc(protobuf_c_message_get_packed_size(req));
	protobuf_c_message_pack(req, GRPC_SLICE_START_PTR(body));
	rc->sendbuf = grpc_raw_byte_buffer_create(&body, 1);
	grpc_slice_unref(body);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = 1;
	ops[0].data.send_initial_metadata.metadata = &rc->md;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = rc->sendbuf;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &rc->initial;
	if (grpc_call_start_batch(rc->call, ops, 4, (void *)1, NULL) != GRPC_CALL_OK)
		return -EIO;
	return rcall_wait(s, rc, (void *)1) ? 0 : -EIO;
}

/* The next message, or NULL at the end of the stream or on failure. */
static grpc_byte_buffer *rcall_recv(struct stream *s, struct rcall *rc)
{
	grpc_byte_buffer *buf = NULL;
	grpc_op op;

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &buf;
	if (grpc_call_start_batch(rc->call, &op, 1, (void *)2, NULL) != GRPC_CALL_OK)
		return NULL;
	if (!rcall_wait(s, rc, (void *)2) && buf) {
		grpc_byte_buffer_destroy(buf);
		buf = NULL;
	}
	return buf;
}

/* Collect the status and release the call. */
static grpc_status_code rcall_end(struct stream *s, struct rcall *rc)
{
	grpc_op op;

	if (rc->call) {
		memset(&op, 0, sizeof(op));
		op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
		op.data.recv_status_on_client.trailing_metadata = &rc->trailing;
		op.data.recv_status_on_client.status = &rc->status;
		op.data.recv_status_on_client.status_details = &rc->details;
		if (grpc_call_start_batch(rc->call, &op, 1, (void *)3, NULL) == GRPC_CALL_OK)
			rcall_wait(s, rc, (void *)3);
		if (rc->status != GRPC_STATUS_OK && !rc->gave_up) {
			char *d = grpc_slice_to_c_string(rc->details);

			log_warn("download %s from %s: status %d %s", s->f->t->name, s->f->t->src[s->idx].peer,
				 (int)rc->status, d);
			gpr_free(d);
		}
		grpc_call_unref(rc->call);
	}
	grpc_slice_unref(rc->details);
	grpc_slice_unref(rc->md.value);
	if (rc->sendbuf)
		grpc_byte_buffer_destroy(rc->sendbuf);
	grpc_metadata_array_destroy(&rc->initial);
	grpc_metadata_array_destroy(&rc->trailing);
	return rc->status;
}

/* ---- Stat: the block hashes ------------------------------------------------ */

/* Ask source s for the file's metadata. 0 with *out filled (n == 0 when
 * the source sends no block hashes), -ESTALE when it now has another
 * version (drop it), -EPROTO for a malformed block list, -EIO otherwise. */
static int stream_stat(struct stream *s, struct block_list *out)
{
	struct transfer *t = s->f->t;
	P2p__V1__StatRequest req = P2P__V1__STAT_REQUEST__INIT;
	P2p__V1__StatResponse *m = NULL;
	grpc_byte_buffer *buf = NULL;
	struct rcall rc;
	int r = -EIO;

	*out = (struct block_list){ 0, 0, NULL };
	if (stream_ticket(s) < 0)
		return -EIO;
	req.name = t->name;
	if (rcall_begin(s, &rc, "/p2p.v1.Peer/Stat", &req.base) == 0 && (buf = rcall_recv(s, &rc))) {
		grpc_byte_buffer_reader rd;
		grpc_slice all;

		if (grpc_byte_buffer_reader_init(&rd, buf)) {
			all = grpc_byte_buffer_reader_readall(&rd);
			grpc_byte_buffer_reader_destroy(&rd);
			m = p2p__v1__stat_response__unpack(NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
			grpc_slice_unref(all);
		}
		grpc_byte_buffer_destroy(buf);
	}
	if (rcall_end(s, &rc) != GRPC_STATUS_OK || !m)
		goto out;
	if (m->size != t->size || !m->sha256 || strcmp(m->sha256, t->sha256) != 0) {
		log_warn("download %s: %s now has another version of the file; not using it", t->name,
			 t->src[s->idx].peer);
		r = -ESTALE;
		goto out;
	}
	r = 0;
	if (m->block_size == 0)
		goto out;
	r = -EPROTO;
	if (m->block_size < MIN_BLOCK || m->block_size > MAX_BLOCK ||
	    m->n_block_sha256 != (t->size + m->block_size - 1) / m->block_size)
		goto out;
	for (size_t i = 0; i < m->n_block_sha256; i++)
		if (m->block_sha256[i].len != SHA256_BYTES)
			goto out;
	if (m->n_block_sha256 && !(out->sha = malloc(m->n_block_sha256 * SHA256_BYTES))) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < m->n_block_sha256; i++)
		memcpy(out->sha + i * SHA256_BYTES, m->block_sha256[i].data, SHA256_BYTES);
	out->n = m->n_block_sha256;
	out->block_size = m->block_size;
	r = 0;
out:
	if (m)
		p2p__v1__stat_response__free_unpacked(m, NULL);
	return r;
}

/* ---- Read: one range --------------------------------------------------------- */

static int pwrite_all(int fd, struct iovec *iov, int n, uint64_t pos)
{
	while (n > 0) {
		ssize_t w = pwritev(fd, iov, n > IOV_MAX ? IOV_MAX : n, (off_t)pos);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (w == 0)
			return -ENOSPC; /* no progress: the disk is full */
		pos += (uint64_t)w;
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/* Hold the download to its rate: sleep off what this chunk costs. A rate
 * changed meanwhile (SetRates) ends the wait: the chunk counts as paid. */
static void throttle(struct transfer *t, uint64_t n)
{
	double wait, until, rate;

	if (!t->limit)
		return;
	pthread_mutex_lock(&t->limit->lock);
	wait = ratelimit_charge(&t->limit->rl, n, mono_now());
	rate = t->limit->rl.rate;
	pthread_mutex_unlock(&t->limit->lock);
	if (wait > 0) metrics_add(M_RATELIMIT_DOWNLOAD_WAITS, 1);
	until = mono_now() + wait;
	while (wait > 0 && !cancelled(t)) {
		struct timespec ts = { 0, 0 };
		double step = wait < 0.1 ? wait : 0.1;
		bool changed;

		ts.tv_sec = (time_t)step;
		ts.tv_nsec = (long)((step - (double)ts.tv_sec) * 1e9);
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&t->limit->lock);
		changed = t->limit->rl.rate != rate;
		pthread_mutex_unlock(&t->limit->lock);
		if (changed)
			break;
		wait = until - mono_now();
	}
}

/* Hand a chunk just written at offset pos to the whole-file hash, when it
 * is the next thing that hash needs, so that its bytes are hashed from
 * memory instead of read back from the file. Waits while the queue is full
 * (the hash is the slower side; HTTP/2 flow control then holds the source
 * back). Returns NULL when the queue took buf, else buf. Only with a
 * single source (hash_inline): a range is hashed before it is complete,
 * which is right only when no other source could refetch it. */
static grpc_byte_buffer *hashq_push(struct fetch *f, grpc_byte_buffer *buf, uint64_t pos, uint64_t len)
{
	struct transfer *t = f->t;

	pthread_mutex_lock(&t->lock);
	/* Only the next bytes the hash needs, and only while it runs. */
	while (f->hash_end == pos && !f->hasher_done && !t->cancel) {
		if (f->hashq_len < HASHQ_LEN && f->hashq_bytes + len <= HASHQ_BYTES) {
			f->hashq[(f->hashq_head + f->hashq_len++) % HASHQ_LEN] = (struct hashq_entry){ buf, len };
			f->hashq_bytes += len;
			f->hash_end += len;
			buf = NULL;
			pthread_cond_broadcast(&t->cond);
			break;
		}
		pthread_cond_wait(&t->cond, &t->lock);
	}
	pthread_mutex_unlock(&t->lock);
	return buf;
}

/* Fetch range i (offset, length) from source s into the partial file and
 * check it against its block hash. 0, -EBADMSG (wrong bytes), -ECANCELED,
 * a local write error (-ENOSPC, ...; *local set) or -EIO. */
static int stream_range(struct stream *s, size_t i, uint64_t offset, uint64_t length, bool *local)
{
	struct fetch *f = s->f;
	struct transfer *t = f->t;
	P2p__V1__ReadRequest req = P2P__V1__READ_REQUEST__INIT;
	unsigned char digest[SHA256_BYTES];
	unsigned int dlen = 0;
	uint64_t pos = offset, end = offset + length;
	struct rcall rc;
	int r = -EIO;

	*local = false;
	if (stream_ticket(s) < 0)
		return -EIO;
	req.name = t->name;
	req.offset = offset;
	req.length = length;
	if (f->check_ranges)
		EVP_DigestInit_ex(s->md, EVP_sha256(), NULL);
	if (rcall_begin(s, &rc, "/p2p.v1.Peer/Read", &req.base) < 0)
		goto status;
	while (pos < end) {
		grpc_byte_buffer *buf = rcall_recv(s, &rc);
		grpc_byte_buffer_reader rd;
		grpc_slice *piece;
		uint64_t coff, clen;
		int n = 0, k = -EPROTO;

		if (!buf)
			break;
		if (grpc_byte_buffer_reader_init(&rd, buf)) {
			while (n < MAX_IOV && grpc_byte_buffer_reader_peek(&rd, &piece))
				s->iov[n++] = (struct iovec){ GRPC_SLICE_START_PTR(*piece), GRPC_SLICE_LENGTH(*piece) };
			if (n < MAX_IOV)
				k = chunk_parse(s->iov, n, &coff, &clen);
		}
		if (k < 0 || coff != pos || clen > end - pos || clen == 0) {
			log_warn("download %s: malformed chunk from %s", t->name, t->src[s->idx].peer);
			r = -EBADMSG;
		} else {
			/* Hash before writing: pwrite_all advances the iovecs. */
			for (int j = 0; f->check_ranges && j < k; j++)
				EVP_DigestUpdate(s->md, s->iov[j].iov_base, s->iov[j].iov_len);
			if ((r = pwrite_all(f->fd, s->iov, k, pos)) < 0)
				*local = true;
		}
		if (r == 0) {
			pos += clen;
			pthread_mutex_lock(&t->lock);
			t->received += clen;
			pthread_mutex_unlock(&t->lock);
			metrics_add(M_BYTES_RECEIVED, clen);
		}
		if (n)
			grpc_byte_buffer_reader_destroy(&rd);
		if (r == 0 && f->hash_inline)
			buf = hashq_push(f, buf, pos - clen, clen);
		if (buf)
			grpc_byte_buffer_destroy(buf);
		if (r == -EBADMSG || *local) {
			grpc_call_cancel(rc.call, NULL);
			rc.gave_up = true;
			break;
		}
		throttle(t, clen);
	}
status:
	/* A range counts only with all its bytes and an OK status. */
	if (rcall_end(s, &rc) != GRPC_STATUS_OK || pos != end) {
		if (!*local && r != -EBADMSG)
			r = cancelled(t) ? -ECANCELED : -EIO;
	} else if (!*local && r != -EBADMSG) {
		r = 0;
		if (f->check_ranges)
			EVP_DigestFinal_ex(s->md, digest, &dlen);
		if (f->check_ranges && !crypto_equal(digest, f->blocks.sha + i * SHA256_BYTES, SHA256_BYTES)) {
			log_warn("download %s: range %zu (bytes %llu-%llu) from %s does not match its SHA-256; "
				 "dropping that source", t->name, i, (unsigned long long)offset,
				 (unsigned long long)(end - 1), t->src[s->idx].peer);
			r = -EBADMSG;
		}
	}
	if (r < 0) {
		pthread_mutex_lock(&t->lock);
		t->received -= pos - offset;
		pthread_mutex_unlock(&t->lock);
	}
	return r;
}

static void *stream_main(void *arg)
{
	struct stream *s = arg;
	struct fetch *f = s->f;
	struct transfer *t = f->t;
	uint32_t bit = 1u << s->idx;

	for (;;) {
		uint64_t offset, length;
		bool local;
		long i = -1;
		int r;

		pthread_mutex_lock(&t->lock);
		while (!t->cancel && !f->io_error && (f->alive & bit) && f->rg.done < f->rg.n) {
			i = ranges_take(&f->rg, s->idx);
			if (i >= 0 || ranges_stuck(&f->rg, f->alive))
				break;
			pthread_cond_wait(&t->cond, &t->lock);
		}
		if (i >= 0)
			t->sources++;
		pthread_mutex_unlock(&t->lock);
		if (i < 0)
			break;
		ranges_span(&f->rg, (size_t)i, &offset, &length);
		r = stream_range(s, (size_t)i, offset, length, &local);
		pthread_mutex_lock(&t->lock);
		t->sources--;
		ranges_finish(&f->rg, (size_t)i, r == 0, s->idx);
		if (r == 0 && !s->used) {
			s->used = true;
			t->sources_used++;
		}
		if (r == -EBADMSG)
			f->bad_range = true;
		if (local && !f->io_error)
			f->io_error = r;
		if (r < 0)
			f->alive &= ~bit;
		if (r < 0) metrics_add(r == -EBADMSG ? M_SOURCES_DROPPED_HASH : r == -ETIMEDOUT ? M_SOURCES_DROPPED_SLOW : M_SOURCES_DROPPED_ERROR, 1);
		pthread_cond_broadcast(&t->cond);
		pthread_mutex_unlock(&t->lock);
		if (r == -EIO)
			log_warn("download %s: source %s failed; the others go on", t->name, t->src[s->idx].peer);
		if (r < 0)
			break;
	}
	pthread_mutex_lock(&t->lock);
	f->alive &= ~bit;
	f->running--;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

/* ---- the worker ------------------------------------------------------------------ */

/* Feed len bytes of fd at off into md (and, when check is given, compare
 * their own SHA-256 with it). 0, -EBADMSG or -EIO. */
static int hash_span(int fd, uint64_t off, uint64_t len, unsigned char *buf, EVP_MD_CTX *md, EVP_MD_CTX *own,
		     const unsigned char *check)
{
	unsigned char digest[SHA256_BYTES];
	unsigned int dlen = 0;
	uint64_t end = off + len;

	if (own)
		EVP_DigestInit_ex(own, EVP_sha256(), NULL);
	while (off < end) {
		ssize_t n = pread(fd, buf, end - off < (1 << 20) ? end - off : (1 << 20), (off_t)off);

		if (n <= 0)
			return -EIO;
		if (md)
			EVP_DigestUpdate(md, buf, (size_t)n);
		if (own)
			EVP_DigestUpdate(own, buf, (size_t)n);
		off += (uint64_t)n;
	}
	if (own) {
		EVP_DigestFinal_ex(own, digest, &dlen);
		if (!crypto_equal(digest, check, SHA256_BYTES))
			return -EBADMSG;
	}
	return 0;
}

static bool same_blocks(const struct block_list *a, const struct block_list *b)
{
	return a->block_size == b->block_size && a->n == b->n && memcmp(a->sha, b->sha, a->n * SHA256_BYTES) == 0;
}

/* Ask every source for the block hashes and take the list most of them
 * send (the first on a tie). A source that sends another list for the same
 * SHA-256 is lying or broken: it is not used. So is one that now has
 * another version. Sources that send none (older peers) stay. */
static void fetch_blocks(struct fetch *f)
{
	struct transfer *t = f->t;
	struct block_list lists[MAX_SOURCES];
	int votes[MAX_SOURCES] = { 0 }, best = -1;

	memset(lists, 0, sizeof(lists));
	for (int i = 0; i < t->nsrc && t->size > 0 && !cancelled(t); i++) {
		int r = stream_stat(&f->s[i], &lists[i]);

		if (r == -ESTALE)
			f->alive &= ~(1u << i);
		else if (r == -EPROTO)
			log_warn("download %s: %s sent a malformed block list", t->name, t->src[i].peer);
	}
	for (int i = 0; i < t->nsrc; i++) {
		if (!lists[i].n)
			continue;
		for (int j = 0; j < t->nsrc; j++)
			votes[i] += lists[j].n && same_blocks(&lists[i], &lists[j]);
		if (best < 0 || votes[i] > votes[best])
			best = i;
	}
	for (int i = 0; i < t->nsrc; i++) {
		if (lists[i].n && best >= 0 && i != best && !same_blocks(&lists[i], &lists[best])) {
			log_warn("download %s: %s sends other block hashes than %d other source(s); not using it",
				 t->name, t->src[i].peer, votes[best]);
			f->alive &= ~(1u << i);
		}
		if (i != best)
			block_list_free(&lists[i]);
	}
	if (best >= 0) {
		f->blocks = lists[best];
		return;
	}
	if (t->size > 0)
		log_notice("download %s: no source sent block hashes; ranges are checked by the whole-file SHA-256 "
			   "only", t->name);
	f->blocks = (struct block_list){ BLOCK_SIZE, 0, NULL };
}

/* Mark the ranges the partial file already holds, verified by their block
 * hashes. */
static int resume_ranges(struct fetch *f, unsigned char *buf, EVP_MD_CTX *own)
{
	struct transfer *t = f->t;
	struct stat st;
	size_t kept = 0;

	if (fstat(f->fd, &st) < 0)
		return -errno;
	if (st.st_size > 0 && f->blocks.n) {
		for (size_t i = 0; i < f->rg.n && !cancelled(t); i++) {
			uint64_t off, len;

			ranges_span(&f->rg, i, &off, &len);
			if (off + len > (uint64_t)st.st_size)
				break;
			if (hash_span(f->fd, off, len, buf, NULL, own, f->blocks.sha + i * SHA256_BYTES) == 0) {
				pthread_mutex_lock(&t->lock);
				ranges_mark_done(&f->rg, i);
				t->received += len;
				pthread_mutex_unlock(&t->lock);
				kept++;
			}
		}
		log_info("download %s: resuming, %zu of %zu ranges verified on disk", t->name, kept, f->rg.n);
	} else if (st.st_size > 0) {
		log_notice("download %s: no block hashes to verify the partial file by; starting over", t->name);
		if (ftruncate(f->fd, 0) < 0)
			return -errno;
	}
	/* Ranges land anywhere: give the file its size now (sparse). */
	return ftruncate(f->fd, (off_t)t->size) < 0 ? -errno : 0;
}

/* Feed the data of a queued chunk into md. */
static void hash_chunk(grpc_byte_buffer *buf, EVP_MD_CTX *md)
{
	struct iovec iov[MAX_IOV];
	grpc_byte_buffer_reader rd;
	grpc_slice *piece;
	uint64_t off, len;
	int n = 0, k;

	if (!grpc_byte_buffer_reader_init(&rd, buf))
		return;
	while (n < MAX_IOV && grpc_byte_buffer_reader_peek(&rd, &piece))
		iov[n++] = (struct iovec){ GRPC_SLICE_START_PTR(*piece), GRPC_SLICE_LENGTH(*piece) };
	/* The stream thread parsed this chunk already: it cannot fail now. */
	k = chunk_parse(iov, n, &off, &len);
	for (int j = 0; j < k; j++)
		EVP_DigestUpdate(md, iov[j].iov_base, iov[j].iov_len);
	grpc_byte_buffer_reader_destroy(&rd);
}

/* The whole-file SHA-256, in file order, while the streams fetch: queued
 * chunks are hashed from memory, the rest read back from the file once
 * its range is done (ranges resumed from disk, or fetched by several
 * sources out of order). Returns with f->hash_end == t->size when every
 * byte went in, earlier when the transfer stops. */
static void hash_file(struct fetch *f, EVP_MD_CTX *md, unsigned char *buf)
{
	struct transfer *t = f->t;
	uint64_t off, len;

	pthread_mutex_lock(&t->lock);
	for (;;) {
		size_t i;

		if (f->hashq_len) {
			struct hashq_entry e = f->hashq[f->hashq_head];

			f->hashq_head = (f->hashq_head + 1) % HASHQ_LEN;
			f->hashq_len--;
			pthread_mutex_unlock(&t->lock);
			hash_chunk(e.buf, md);
			grpc_byte_buffer_destroy(e.buf);
			f->hashed_in_memory += e.len;
			pthread_mutex_lock(&t->lock);
			f->hashq_bytes -= e.len;
			pthread_cond_broadcast(&t->cond);
			continue;
		}
		if (f->hash_end >= t->size || t->cancel || f->io_error)
			break;
		i = (size_t)(f->hash_end / f->rg.block_size);
		if (f->rg.state[i] != RANGE_DONE) {
			if (f->running == 0)
				break;
			pthread_cond_wait(&t->cond, &t->lock);
			continue;
		}
		/* Range i is done and nothing more of it will be queued: take
		 * the rest of it from the file. */
		ranges_span(&f->rg, i, &off, &len);
		len -= f->hash_end - off;
		off = f->hash_end;
		f->hash_end += len;
		pthread_mutex_unlock(&t->lock);
		if (hash_span(f->fd, off, len, buf, md, NULL, NULL) < 0) {
			pthread_mutex_lock(&t->lock);
			f->io_error = f->io_error ? f->io_error : -EIO;
			f->hash_end = off; /* not hashed after all */
			break;
		}
		pthread_mutex_lock(&t->lock);
	}
	f->hasher_done = true;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

static void *worker(void *arg)
{
	struct transfer *t = arg;
	struct fetch *f = calloc(1, sizeof(*f));
	char got[SHA256_HEX_LEN + 1];
	unsigned char digest[SHA256_BYTES], *buf = malloc(1 << 20);
	unsigned int dlen = 0;
	EVP_MD_CTX *md = EVP_MD_CTX_new(), *own = EVP_MD_CTX_new();
	struct stat st;
	int dirfd = -1, pdirfd = -1, r;

	if (!f || !buf || !md || !own || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		fail(t, "TransferFailed", "out of memory");
		goto out;
	}
	f->t = t;
	f->fd = -1;
	dirfd = open(t->to, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		fail(t, "TransferFailed", "cannot open %s: %s", t->to, strerror(errno));
		goto out;
	}
	if (mkdirat(dirfd, PARTIAL_DIR, 0700) < 0 && errno != EEXIST) {
		fail(t, "TransferFailed", "cannot create %s/%s: %s", t->to, PARTIAL_DIR, strerror(errno));
		goto out;
	}
	pdirfd = openat(dirfd, PARTIAL_DIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	f->fd = pdirfd < 0 ? -1 : openat(pdirfd, t->name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (f->fd < 0 || fstat(f->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		fail(t, "TransferFailed", "cannot open the partial file: %s", strerror(errno));
		goto out;
	}
	for (int i = 0; i < t->nsrc; i++) {
		struct stream *s = &f->s[i];

		s->f = f;
		s->idx = (unsigned)i;
		s->ch = open_channel(t->src[i].target);
		s->cq = grpc_completion_queue_create_for_pluck(NULL);
		s->md = EVP_MD_CTX_new();
		if (!s->ch || !s->cq || !s->md) {
			fail(t, "TransferFailed", "out of memory");
			goto out;
		}
		f->alive |= 1u << i;
	}
	fetch_blocks(f);
	/* With one source there is nowhere else to fetch a bad range from:
	 * the whole-file SHA-256 decides, and each byte is hashed once. */
	f->check_ranges = f->blocks.n && __builtin_popcount(f->alive) > 1;
	f->hash_inline = __builtin_popcount(f->alive) == 1;
	if (ranges_init(&f->rg, t->size, f->blocks.block_size) < 0) {
		fail(t, "TransferFailed", "out of memory");
		goto out;
	}
	r = resume_ranges(f, buf, own);
	if (r < 0) {
		fail(t, "TransferFailed", "cannot prepare the partial file: %s", strerror(-r));
		goto out;
	}
	pthread_mutex_lock(&t->lock);
	for (int i = 0; i < t->nsrc; i++) {
		if (!(f->alive & (1u << i)))
			continue;
		f->s[i].started = pthread_create(&f->s[i].thread, NULL, stream_main, &f->s[i]) == 0;
		if (f->s[i].started)
			f->running++;
		else
			f->alive &= ~(1u << i);
	}
	pthread_mutex_unlock(&t->lock);
	hash_file(f, md, buf);
	for (int i = 0; i < t->nsrc; i++)
		if (f->s[i].started) {
			pthread_join(f->s[i].thread, NULL);
			f->s[i].started = false;
		}
	if (cancelled(t)) {
		/* A checkpoint: the verified ranges survive a crash as well. */
		fsync(f->fd);
		fail(t, "Cancelled", "cancelled (%zu of %zu ranges verified and kept)", f->rg.done, f->rg.n);
		goto out;
	}
	if (f->io_error) {
		fail(t, "TransferFailed", "cannot write into %s: %s", t->to, strerror(-f->io_error));
		goto out;
	}
	if (f->hash_end < t->size || f->rg.done < f->rg.n) {
		fsync(f->fd);
		if (f->bad_range && f->rg.done == 0)
			unlinkat(pdirfd, t->name, 0);
		if (f->bad_range)
			fail(t, "VerificationFailed",
			     "ranges arrived damaged (not matching their SHA-256, or malformed) and no other "
			     "source could deliver them "
			     "(%zu of %zu ranges verified)", f->rg.done, f->rg.n);
		else
			fail(t, "TransferFailed",
			     "no source could complete the transfer (%zu of %zu ranges verified and kept to resume)",
			     f->rg.done, f->rg.n);
		goto out;
	}
	EVP_DigestFinal_ex(md, digest, &dlen);
	crypto_hex(digest, SHA256_BYTES, got);
	if (strcmp(got, t->sha256) != 0) {
		unlinkat(pdirfd, t->name, 0);
		fail(t, "VerificationFailed", "no source delivered bytes matching SHA-256 %s", t->sha256);
		goto out;
	}
	if (fsync(f->fd) < 0 || renameat(pdirfd, t->name, dirfd, t->name) < 0) {
		fail(t, "TransferFailed", "cannot put %s into place: %s", t->name, strerror(errno));
		goto out;
	}
	{
		int dfd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	if (fstat(f->fd, &st) == 0) {
		t->landed = (struct hash_entry){ (uint64_t)st.st_dev, (uint64_t)st.st_ino, (uint64_t)st.st_size,
						 (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec, "",
						 { 0, 0, NULL } };
		memcpy(t->landed.sha256, t->sha256, sizeof(t->sha256));
		/* Block hashes of our own size only (else the next scan hashes it). */
		if (f->blocks.n && f->blocks.block_size == BLOCK_SIZE) {
			t->landed.blocks = f->blocks;
			f->blocks = (struct block_list){ 0, 0, NULL };
		}
	}
	pthread_mutex_lock(&t->lock);
	t->state = TRANSFER_DONE;
	metrics_add(M_TRANSFERS_DONE, 1);
	t->seconds = mono_now() - t->started;
	pthread_mutex_unlock(&t->lock);
	log_info("downloaded %s (%llu bytes, verified; %llu hashed as they arrived) into %s from %d source(s)",
		 t->name, (unsigned long long)t->size, (unsigned long long)f->hashed_in_memory, t->to,
		 t->sources_used);
out:
	if (f) {
		for (int i = 0; i < t->nsrc; i++) {
			struct stream *s = &f->s[i];

			if (s->cq) {
				grpc_completion_queue_shutdown(s->cq);
				while (grpc_completion_queue_pluck(s->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
					       .type != GRPC_QUEUE_SHUTDOWN)
					;
				grpc_completion_queue_destroy(s->cq);
			}
			if (s->ch)
				grpc_channel_destroy(s->ch);
			EVP_MD_CTX_free(s->md);
		}
		for (; f->hashq_len; f->hashq_len--, f->hashq_head = (f->hashq_head + 1) % HASHQ_LEN)
			grpc_byte_buffer_destroy(f->hashq[f->hashq_head].buf);
		if (f->fd >= 0)
			close(f->fd);
		ranges_free(&f->rg);
		block_list_free(&f->blocks);
		free(f);
	}
	free(buf);
	EVP_MD_CTX_free(md);
	EVP_MD_CTX_free(own);
	if (pdirfd >= 0)
		close(pdirfd);
	if (dirfd >= 0)
		close(dirfd);
	/* Tell the main loop now rather than at its next progress tick. */
	if (t->wake_fd >= 0) {
		uint64_t one = 1;

		if (write(t->wake_fd, &one, sizeof(one)) < 0)
			log_debug("could not wake the main loop");
	}
	return NULL;
}

int download_plan(struct transfer *t, const struct dir_hit *hits, size_t n, const char *self, const char *from,
		  const char **error)
{
	bool chosen = false;

	for (size_t i = 0; i < n && t->nsrc < MAX_SOURCES; i++) {
		const struct dir_hit *h = &hits[i];

		if (!strcmp(h->peer, self) || (from && strcmp(h->peer, from)))
			continue;
		if (!chosen) {
			chosen = true;
			memcpy(t->sha256, h->sha256, sizeof(t->sha256));
			t->size = h->size;
		} else if (strcmp(h->sha256, t->sha256) || h->size != t->size) {
			continue; /* another version of the file */
		}
		snprintf(t->src[t->nsrc].peer, sizeof(t->src[0].peer), "%s", h->peer);
		snprintf(t->src[t->nsrc].target, sizeof(t->src[0].target), "%s", h->target);
		t->nsrc++;
	}
	if (t->nsrc == 0) {
		*error = "NotFound";
		return -ENOENT;
	}
	return 0;
}

int download_begin(struct transfer *t)
{
	int r = pthread_create(&t->thread, NULL, worker, t);

	return r ? -r : 0;
}
