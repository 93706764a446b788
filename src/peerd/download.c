/* SPDX-License-Identifier: MIT */
/* download.c — the fetch engine: which sources to trust, fetching their
 * ranges, and proving the file on disk before it gets its name (DESIGN.md,
 * "Download semantics"; p2pctl(1) and p2p-peerd(8) say it for users).
 *
 * download_plan groups the directory's entries for a name by the (size,
 * SHA-256) they were indexed with: each group is one version, and the
 * directory's entries are only claims by peers. The groups are tried in
 * order — most sources first, then the directory's order — and the worker
 * moves on to the next when one cannot deliver bytes matching its SHA-256.
 * For one version the worker thread:
 *
 *  1. asks every source for its block hashes (p2p.v1 Stat): a source that
 *     now has another version is not used. Sources that send the same list
 *     form a class; the class most sources agree on is used first, and a
 *     class whose bytes then fail the whole-file SHA-256 is dropped and the
 *     next one tried, its ranges on disk checked again against its list;
 *  2. verifies what DIR/.p2p-partial/NAME already holds, block by block, so
 *     a download interrupted in any way continues from its verified ranges;
 *  3. runs one stream thread per source; each claims the lowest range still
 *     to fetch, reads it with p2p.v1 Read, pwrites the chunks in place and,
 *     with more than one source, checks each range against its block hash.
 *     A source whose range fails, that sends a malformed chunk, a chunk past
 *     the range or a message over the channel's limit, or that does not
 *     deliver progress_bytes per progress_interval seconds of waiting, is
 *     dropped for this transfer and its range goes to the others;
 *  4. meanwhile hashes the whole file in order on a second core: from
 *     memory as a single source writes it, else read back from the file.
 *
 * The file on disk is what is verified. The partial file is held by one
 * transfer: an OFD write lock, and it is opened O_NONBLOCK so that opening
 * it while another transfer holds its lease fails at once. That lease (a
 * write lease, F_SETLEASE) is taken when the file is opened and makes the
 * kernel report any other open of the file; while it stays unbroken, every
 * byte in the file was written by this transfer, so the hash of what it
 * wrote is the hash of the disk. When the lease cannot be taken or was
 * broken, the whole file is read back and hashed again under a fresh lease
 * before the rename, or the transfer fails if some other process still has
 * the file open. The rename never replaces a file: renameat2
 * RENAME_NOREPLACE, and an existing file with other content is kept and
 * the transfer fails with FileExists (unless force).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <openssl/evp.h>

#include "log.h"
#include "metrics.h"
#include "chunk.h"
#include "p2p/v1/peer.pb-c.h"
#include "peerclient.h"
#include "peerd.h"
#include "ranges.h"

#define PARTIAL_DIR ".p2p-partial"
#define TICKET_REUSE_S 30     /* tickets live 60 s by default; take a new one well before */
#define MAX_IOV 1024
#define HASHQ_BYTES (8u << 20) /* chunks waiting for the whole-file hash, at most */
#define HASHQ_LEN 256
#define MIN_BLOCK (64u << 10)
#define MAX_BLOCK (1u << 30)
/* A lease break is reported by a signal to the holder; it is turned off
 * (F_SETOWN 0) right after the lease is taken, and this one, ignored by
 * default, covers the moment between. F_GETLEASE tells what happened. */
#define LEASE_SIGNAL SIGWINCH

struct fetch;

/* Why a source was dropped, for the error message and its retry hint. */
enum why { WHY_NONE, WHY_TRANSIENT, WHY_BAD };

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
	struct block_list list; /* the block hashes it sent; n == 0: none */
	/* The progress deadline: seconds waited in calls and bytes received
	 * since the window began. */
	double waited;
	uint64_t win_bytes;
	bool stalled;
	enum why why;
	char whytext[160]; /* locked once the stream runs */
	struct iovec iov[MAX_IOV];
};

/* What the worker and its stream threads share; fields marked so are under
 * t->lock. */
struct fetch {
	struct transfer *t;
	int fd;
	bool lease;               /* the write lease was taken at open */
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
	/* What went wrong with each version tried, for the final message. */
	char report[1024];
	bool any_transient, any_bad;
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

/* Source s is dropped for this transfer: say why (the first reason wins). */
static void drop(struct stream *s, enum why why, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void drop(struct stream *s, enum why why, const char *fmt, ...)
{
	struct transfer *t = s->f->t;
	va_list ap;

	pthread_mutex_lock(&t->lock);
	if (s->why == WHY_NONE) {
		s->why = why;
		va_start(ap, fmt);
		vsnprintf(s->whytext, sizeof(s->whytext), fmt, ap);
		va_end(ap);
		log_warn("download %s: %s %s; not using it for this transfer", t->name, t->src[s->idx].peer,
			 s->whytext);
	}
	s->f->alive &= ~(1u << s->idx);
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

/* ---- the progress deadline -------------------------------------------------- */

/* Close the window when it is over: false when the source delivered too
 * little in it (stalled). */
static bool progress_ok(struct stream *s)
{
	struct transfer *t = s->f->t;

	if (s->waited < (double)t->progress_interval)
		return true;
	if (s->win_bytes >= (uint64_t)t->progress_bytes) {
		s->waited = 0;
		s->win_bytes = 0;
		return true;
	}
	return false;
}

/* rcall's stop(): the transfer was cancelled, or the source stalls. */
static bool stream_stop(void *arg, double waited, bool done)
{
	struct stream *s = arg;

	s->waited += waited;
	if (done)
		return false; /* what arrived is counted by the caller */
	if (cancelled(s->f->t))
		return true;
	if (!progress_ok(s))
		s->stalled = true;
	return s->stalled;
}

static void stalled(struct stream *s)
{
	struct transfer *t = s->f->t;

	drop(s, WHY_TRANSIENT, "stalled (%llu bytes in %lld s of waiting, fewer than the %lld required)",
	     (unsigned long long)s->win_bytes, t->progress_interval, t->progress_bytes);
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

/* The end of a call that failed: say why the source goes. */
static void call_failed(struct stream *s, struct rcall *rc, grpc_status_code st, const char *details)
{
	if (cancelled(s->f->t))
		return;
	if (s->stalled)
		stalled(s);
	else if (st == GRPC_STATUS_RESOURCE_EXHAUSTED && strstr(details, "larger than max"))
		drop(s, WHY_BAD, "sent a message larger than the limit (%s)", details);
	else if (st == GRPC_STATUS_RESOURCE_EXHAUSTED && strstr(details, "Buffers full"))
		/* The channel's memory quota (peerclient.h): an announced
		 * message larger than the limit fills it before it is whole. */
		drop(s, WHY_BAD, "sent or announced a message larger than the limit (its channel's buffers are full)");
	else if (st != GRPC_STATUS_OK)
		drop(s, WHY_TRANSIENT, "failed (gRPC status %d: %s)", (int)st, details);
	else
		drop(s, WHY_TRANSIENT, "ended the stream early");
	(void)rc;
}

/* ---- Stat: the block hashes ------------------------------------------------ */

/* Ask source s for the file's metadata, on a channel of its own (a Stat
 * reply may be larger than a chunk). 0 with s->list filled (n == 0 when
 * the source sends no block hashes), or -1 with the source dropped. */
static int stream_stat(struct stream *s)
{
	struct transfer *t = s->f->t;
	P2p__V1__StatRequest req = P2P__V1__STAT_REQUEST__INIT;
	P2p__V1__StatResponse *m = NULL;
	grpc_byte_buffer *buf = NULL;
	grpc_channel *ch;
	grpc_status_code st;
	struct rcall rc = { .stop = stream_stop, .arg = s };
	char details[128];
	int r = -1;

	s->list = (struct block_list){ 0, 0, NULL };
	if (stream_ticket(s) < 0) {
		drop(s, WHY_TRANSIENT, "could not be given a ticket by the directory");
		return -1;
	}
	if (!(ch = peer_channel(t->src[s->idx].target, PEER_MAX_STAT_MESSAGE))) {
		drop(s, WHY_TRANSIENT, "could not be reached (out of memory)");
		return -1;
	}
	req.name = t->name;
	if (rcall_begin(&rc, ch, s->cq, "/p2p.v1.Peer/Stat", s->ticket, &req.base) == 0 &&
	    (buf = rcall_recv(&rc))) {
		grpc_byte_buffer_reader rd;
		grpc_slice all;

		s->win_bytes += grpc_byte_buffer_length(buf);
		if (grpc_byte_buffer_reader_init(&rd, buf)) {
			all = grpc_byte_buffer_reader_readall(&rd);
			grpc_byte_buffer_reader_destroy(&rd);
			m = p2p__v1__stat_response__unpack(NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
			grpc_slice_unref(all);
		}
		grpc_byte_buffer_destroy(buf);
	}
	st = rcall_end(&rc, details, sizeof(details));
	grpc_channel_destroy(ch);
	if (st == GRPC_STATUS_UNIMPLEMENTED && !s->stalled)
		return 0; /* a server without Stat: no block hashes, Read may work */
	if (st != GRPC_STATUS_OK || !buf) {
		call_failed(s, &rc, st, details);
		goto out;
	}
	if (!m) {
		drop(s, WHY_BAD, "sent a malformed Stat reply");
		goto out;
	}
	if (m->size != t->size || !m->sha256 || strcmp(m->sha256, t->sha256) != 0) {
		drop(s, WHY_TRANSIENT, "now has another version of the file");
		goto out;
	}
	r = 0;
	if (m->block_size == 0)
		goto out;
	if (m->block_size < MIN_BLOCK || m->block_size > MAX_BLOCK ||
	    m->n_block_sha256 != (t->size + m->block_size - 1) / m->block_size) {
		drop(s, WHY_BAD, "sent a malformed block list");
		r = -1;
		goto out;
	}
	for (size_t i = 0; i < m->n_block_sha256; i++)
		if (m->block_sha256[i].len != SHA256_BYTES) {
			drop(s, WHY_BAD, "sent a malformed block list");
			r = -1;
			goto out;
		}
	if (m->n_block_sha256 && !(s->list.sha = malloc(m->n_block_sha256 * SHA256_BYTES))) {
		drop(s, WHY_TRANSIENT, "sent a block list we have no memory for");
		r = -1;
		goto out;
	}
	for (size_t i = 0; i < m->n_block_sha256; i++)
		memcpy(s->list.sha + i * SHA256_BYTES, m->block_sha256[i].data, SHA256_BYTES);
	s->list.n = m->n_block_sha256;
	s->list.block_size = m->block_size;
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
 * check it against its block hash. 0; -EBADMSG (the source sent something
 * wrong and is dropped), -EIO (it failed or stalled and is dropped),
 * -ECANCELED, or a local write error (-ENOSPC, ...; *local set). */
static int stream_range(struct stream *s, size_t i, uint64_t offset, uint64_t length, bool *local)
{
	struct fetch *f = s->f;
	struct transfer *t = f->t;
	P2p__V1__ReadRequest req = P2P__V1__READ_REQUEST__INIT;
	unsigned char digest[SHA256_BYTES];
	unsigned int dlen = 0;
	uint64_t pos = offset, end = offset + length;
	struct rcall rc = { .stop = stream_stop, .arg = s };
	grpc_status_code st;
	char details[128];
	int r = -EIO;

	*local = false;
	if (stream_ticket(s) < 0) {
		drop(s, WHY_TRANSIENT, "could not be given a ticket by the directory");
		return -EIO;
	}
	req.name = t->name;
	req.offset = offset;
	req.length = length;
	if (f->check_ranges)
		EVP_DigestInit_ex(s->md, EVP_sha256(), NULL);
	if (rcall_begin(&rc, s->ch, s->cq, "/p2p.v1.Peer/Read", s->ticket, &req.base) < 0)
		goto status;
	while (pos < end) {
		grpc_byte_buffer *buf = rcall_recv(&rc);
		grpc_byte_buffer_reader rd;
		grpc_slice *piece;
		uint64_t coff = 0, clen = 0;
		int n = 0, k = -EPROTO;

		if (!buf)
			break;
		s->win_bytes += grpc_byte_buffer_length(buf);
		if (grpc_byte_buffer_reader_init(&rd, buf)) {
			while (n < MAX_IOV && grpc_byte_buffer_reader_peek(&rd, &piece))
				s->iov[n++] = (struct iovec){ GRPC_SLICE_START_PTR(*piece), GRPC_SLICE_LENGTH(*piece) };
			if (n < MAX_IOV)
				k = chunk_parse(s->iov, n, &coff, &clen);
		}
		if (k < 0 || coff != pos || clen > end - pos || clen == 0) {
			log_warn("download %s: malformed chunk from %s", t->name, t->src[s->idx].peer);
			if (k < 0 || clen == 0)
				drop(s, WHY_BAD, "sent a malformed chunk");
			else if (coff != pos)
				drop(s, WHY_BAD, "sent a chunk at offset %llu where %llu was due", (unsigned long long)coff,
				     (unsigned long long)pos);
			else
				drop(s, WHY_BAD, "sent a chunk past the requested range (%llu bytes at %llu, the range ends "
				     "at %llu)", (unsigned long long)clen, (unsigned long long)coff, (unsigned long long)end);
			r = -EBADMSG;
		} else {
			/* Hash before writing: pwrite_all advances the iovecs. */
			for (int j = 0; f->check_ranges && j < k; j++)
				EVP_DigestUpdate(s->md, s->iov[j].iov_base, s->iov[j].iov_len);
			r = pwrite_all(f->fd, s->iov, k, pos);
			if (r < 0)
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
			rcall_cancel(&rc);
			break;
		}
		if (!progress_ok(s)) {
			s->stalled = true;
			rcall_cancel(&rc);
			break;
		}
		throttle(t, clen);
	}
	if (pos == end && r == 0) {
		/* The range is in: the stream must end here. */
		grpc_byte_buffer *more = rcall_recv(&rc);

		if (more) {
			grpc_byte_buffer_destroy(more);
			drop(s, WHY_BAD, "sent data past the requested range");
			rcall_cancel(&rc);
			r = -EBADMSG;
		}
	}
status:
	st = rcall_end(&rc, details, sizeof(details));
	/* A range counts only with all its bytes and an OK status. */
	if (r == -EBADMSG || *local) {
		/* said already */
	} else if (st != GRPC_STATUS_OK || pos != end) {
		call_failed(s, &rc, st, details);
		r = cancelled(t) ? -ECANCELED : -EIO;
	} else {
		r = 0;
		if (f->check_ranges)
			EVP_DigestFinal_ex(s->md, digest, &dlen);
		if (f->check_ranges && !crypto_equal(digest, f->blocks.sha + i * SHA256_BYTES, SHA256_BYTES)) {
			log_warn("download %s: range %zu (bytes %llu-%llu) from %s does not match its SHA-256; "
				 "dropping that source", t->name, i, (unsigned long long)offset,
				 (unsigned long long)(end - 1), t->src[s->idx].peer);
			drop(s, WHY_BAD, "sent range %zu not matching its block hash", i);
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

/* ---- the partial file: lock, lease, final check --------------------------- */

/* Take the write lease on fd: from now on the kernel notes any other open
 * of the file. false when the file system has no leases or someone else
 * has the file open. */
static bool lease_take(int fd)
{
	if (fcntl(fd, F_SETSIG, LEASE_SIGNAL) < 0 || fcntl(fd, F_SETLEASE, F_WRLCK) < 0)
		return false;
	if (fcntl(fd, F_SETOWN, 0) < 0)
		log_debug("cannot turn off the lease signal: %s", strerror(errno));
	return true;
}

static bool lease_held(int fd)
{
	return fcntl(fd, F_GETLEASE) == F_WRLCK;
}

/* Open DIR/.p2p-partial/NAME for this transfer alone. 0, or -EBUSY when
 * another transfer (of this or another peerd) holds it, or -errno. */
static int partial_open(struct fetch *f, int pdirfd)
{
	struct transfer *t = f->t;
	struct flock lk = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
	struct stat st;

	/* O_NONBLOCK: a file under another transfer's lease fails with
	 * EWOULDBLOCK at once instead of waiting for the lease to break. */
	f->fd = openat(pdirfd, t->name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0600);
	if (f->fd < 0)
		return errno == EWOULDBLOCK ? -EBUSY : -errno;
	if (fstat(f->fd, &st) < 0 || !S_ISREG(st.st_mode))
		return -EINVAL;
	if (fcntl(f->fd, F_OFD_SETLK, &lk) < 0)
		return errno == EAGAIN || errno == EACCES ? -EBUSY : -errno;
	f->lease = lease_take(f->fd);
	if (!f->lease)
		log_info("download %s: no write lease on the partial file (%s); it is read back before the rename",
			 t->name, strerror(errno));
	return 0;
}

/* The proof that the bytes on disk are the hashed ones. With the lease
 * unbroken since the file was opened, nobody else could write it: what
 * this transfer hashed is the disk. Otherwise the file is hashed again,
 * as read back, under a new lease (so that nobody can open it while it is
 * read and renamed). 0, -EBUSY (another process has the file open) or
 * -EBADMSG (the disk holds other bytes). */
static int prove_disk(struct fetch *f, unsigned char *buf, bool *reread)
{
	struct transfer *t = f->t;
	unsigned char digest[SHA256_BYTES];
	unsigned int dlen = 0;
	char got[SHA256_HEX_LEN + 1];
	EVP_MD_CTX *md;
	bool leased;
	int r;

	*reread = false;
	if (f->lease && lease_held(f->fd))
		return 0;
	*reread = true;
	if (f->lease)
		log_warn("download %s: another process opened the partial file during the download; "
			 "reading it back to check it", t->name);
	fcntl(f->fd, F_SETLEASE, F_UNLCK);
	leased = lease_take(f->fd);
	if (!leased && errno == EAGAIN)
		return -EBUSY;
	if (!(md = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(md);
		return -ENOMEM;
	}
	r = hash_span(f->fd, 0, t->size, buf, md, NULL, NULL);
	EVP_DigestFinal_ex(md, digest, &dlen);
	EVP_MD_CTX_free(md);
	if (r < 0)
		return r;
	crypto_hex(digest, SHA256_BYTES, got);
	if (strcmp(got, t->sha256) != 0)
		return -EBADMSG;
	if (leased && !lease_held(f->fd))
		return -EBUSY;
	f->lease = leased;
	return 0;
}

/* Does DIR/NAME exist, and with which content? The index in t->plan of
 * a version it holds; -ENOENT: no such file; -EEXIST: a regular file with
 * other content; -EISDIR: something else. */
static int existing(int dirfd, const struct transfer *t)
{
	char got[SHA256_HEX_LEN + 1];
	struct block_list bl = { 0, 0, NULL };
	struct stat st;
	uint64_t got_size = 0;
	int fd, r = -EEXIST;
	bool sized = false;

	if (fstatat(dirfd, t->name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? -ENOENT : -EISDIR;
	if (!S_ISREG(st.st_mode))
		return -EISDIR;
	for (size_t i = 0; i < t->nplan; i++)
		sized |= t->plan[i].size == (uint64_t)st.st_size;
	if (!sized || (fd = openat(dirfd, t->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)) < 0)
		return -EEXIST;
	if (share_hash_fd(fd, got, &got_size, &bl) == 0)
		for (size_t i = 0; i < t->nplan && r < 0; i++)
			if (t->plan[i].size == got_size && !strcmp(t->plan[i].sha256, got))
				r = (int)i;
	block_list_free(&bl);
	close(fd);
	return r;
}

/* ---- one version ------------------------------------------------------------ */

static void report(struct fetch *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void report(struct fetch *f, const char *fmt, ...)
{
	size_t used = strlen(f->report);
	va_list ap;

	if (used >= sizeof(f->report) - 1)
		return;
	va_start(ap, fmt);
	vsnprintf(f->report + used, sizeof(f->report) - used, fmt, ap);
	va_end(ap);
}

/* Start the stream threads of the sources in f->alive, hash while they
 * fetch, and wait for them. */
static void run_streams(struct fetch *f, EVP_MD_CTX *md, unsigned char *buf)
{
	struct transfer *t = f->t;

	pthread_mutex_lock(&t->lock);
	f->running = 0;
	f->hash_end = 0;
	f->hasher_done = false;
	f->bad_range = false;
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
	for (; f->hashq_len; f->hashq_len--, f->hashq_head = (f->hashq_head + 1) % HASHQ_LEN)
		grpc_byte_buffer_destroy(f->hashq[f->hashq_head].buf);
	f->hashq_bytes = 0;
}

/* Outcomes of one version. */
enum outcome { GOT_IT, NEXT_VERSION, STOP };

/* Fetch the version now in t->sha256/size/src[] into f->fd. GOT_IT: the
 * whole-file hash matches (digest in *match); NEXT_VERSION: these sources
 * could not deliver it (f->report says why); STOP: cancelled or a local
 * error (t failed already). */
static enum outcome fetch_version(struct fetch *f, unsigned char *buf, EVP_MD_CTX *own)
{
	struct transfer *t = f->t;
	uint32_t tried = 0, listless = 0, all;
	enum outcome out = NEXT_VERSION;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int r;

	if (!md) {
		fail(t, "TransferFailed", "out of memory");
		return STOP;
	}
	f->alive = 0;
	for (int i = 0; i < t->nsrc; i++) {
		struct stream *s = &f->s[i];

		memset(s, 0, sizeof(*s));
		s->f = f;
		s->idx = (unsigned)i;
		s->ch = peer_channel(t->src[i].target, PEER_MAX_CHUNK_MESSAGE);
		s->cq = grpc_completion_queue_create_for_pluck(NULL);
		s->md = EVP_MD_CTX_new();
		if (!s->ch || !s->cq || !s->md) {
			fail(t, "TransferFailed", "out of memory");
			out = STOP;
			goto out;
		}
		f->alive |= 1u << i;
	}
	for (int i = 0; i < t->nsrc && t->size > 0 && !cancelled(t); i++)
		stream_stat(&f->s[i]);
	for (int i = 0; i < t->nsrc; i++)
		if ((f->alive & (1u << i)) && !f->s[i].list.n)
			listless |= 1u << i;
	all = f->alive;
	/* Each pass uses one block list: the one most sources send that has not
	 * been tried (the first in the directory's order on a tie), with the
	 * sources that send it and those that send none. */
	for (int pass = 0; !cancelled(t); pass++) {
		int best = -1, votes = 0;
		uint32_t use;
		unsigned char digest[SHA256_BYTES];
		unsigned int dlen = 0;
		char got[SHA256_HEX_LEN + 1];

		/* A dropped source stays dropped. */
		for (int i = 0; i < t->nsrc; i++)
			if (f->s[i].why != WHY_NONE)
				all &= ~(1u << i);
		listless &= all;
		use = listless;

		for (int i = 0; i < t->nsrc; i++) {
			int v = 0;

			if (!(all & ~tried & ~listless & (1u << i)))
				continue;
			for (int j = 0; j < t->nsrc; j++)
				v += (all & ~tried & (1u << j)) && f->s[j].list.n && same_blocks(&f->s[i].list, &f->s[j].list);
			if (best < 0 || v > votes) {
				best = i;
				votes = v;
			}
		}
		if (best < 0 && pass > 0)
			break;
		block_list_free(&f->blocks);
		if (best >= 0) {
			for (int j = 0; j < t->nsrc; j++)
				if ((all & ~tried & (1u << j)) && f->s[j].list.n && same_blocks(&f->s[best].list, &f->s[j].list))
					use |= 1u << j;
			for (int j = 0; j < t->nsrc; j++)
				if ((all & ~tried & ~listless & ~use & (1u << j)))
					log_warn("download %s: %s sends other block hashes than %d other source(s); "
						 "it is used only if they fail", t->name, t->src[j].peer, votes);
			if (block_list_copy(&f->blocks, &f->s[best].list) < 0) {
				fail(t, "TransferFailed", "out of memory");
				out = STOP;
				goto out;
			}
		} else {
			if (t->size > 0)
				log_notice("download %s: no source sent block hashes; ranges are checked by the "
					   "whole-file SHA-256 only", t->name);
			f->blocks = (struct block_list){ BLOCK_SIZE, 0, NULL };
		}
		tried |= use & ~listless;
		pthread_mutex_lock(&t->lock);
		f->alive = use & all;
		pthread_mutex_unlock(&t->lock);
		if (!f->alive)
			break;
		/* With one source there is nowhere else to fetch a bad range from:
		 * the whole-file SHA-256 decides, and each byte is hashed once. */
		f->check_ranges = f->blocks.n && __builtin_popcount(f->alive) > 1;
		f->hash_inline = __builtin_popcount(f->alive) == 1;
		ranges_free(&f->rg);
		if (ranges_init(&f->rg, t->size, f->blocks.block_size) < 0) {
			fail(t, "TransferFailed", "out of memory");
			out = STOP;
			goto out;
		}
		pthread_mutex_lock(&t->lock);
		t->received = 0;
		pthread_mutex_unlock(&t->lock);
		if ((r = resume_ranges(f, buf, own)) < 0) {
			fail(t, "TransferFailed", "cannot prepare the partial file in %s/%s: %s", t->to, PARTIAL_DIR,
			     strerror(-r));
			out = STOP;
			goto out;
		}
		EVP_DigestInit_ex(md, EVP_sha256(), NULL);
		f->hashed_in_memory = 0;
		run_streams(f, md, buf);
		if (cancelled(t)) {
			/* A checkpoint: the verified ranges survive a crash as well. */
			fsync(f->fd);
			fail(t, "Cancelled", "cancelled (%zu of %zu ranges verified and kept)", f->rg.done, f->rg.n);
			out = STOP;
			goto out;
		}
		if (f->io_error) {
			fail(t, "TransferFailed", "cannot write into %s: %s", t->to, strerror(-f->io_error));
			out = STOP;
			goto out;
		}
		if (f->hash_end < t->size || f->rg.done < f->rg.n)
			continue; /* its sources are gone; those of another list may do */
		EVP_DigestFinal_ex(md, digest, &dlen);
		crypto_hex(digest, SHA256_BYTES, got);
		if (!strcmp(got, t->sha256)) {
			out = GOT_IT;
			goto out;
		}
		/* The ranges matched the list, the file does not match its
		 * SHA-256: the list and the bytes were false. */
		for (int j = 0; j < t->nsrc; j++)
			if (use & (1u << j))
				drop(&f->s[j], WHY_BAD, "sent bytes whose whole-file SHA-256 is %.12s…, not the indexed one",
				     got);
		if (!f->blocks.n)
			break;
	}
	/* This version could not be had: say from whom and why. */
	report(f, "%sversion of %llu bytes, SHA-256 %.12s…:", f->report[0] ? "; " : "", (unsigned long long)t->size,
	       t->sha256);
	for (int i = 0; i < t->nsrc; i++) {
		struct stream *s = &f->s[i];

		report(f, " %s %s%s", t->src[i].peer, s->why ? s->whytext : "was not tried", i + 1 < t->nsrc ? "," : "");
		f->any_transient |= s->why == WHY_TRANSIENT;
		f->any_bad |= s->why == WHY_BAD;
	}
out:
	for (int i = 0; i < t->nsrc; i++) {
		struct stream *s = &f->s[i];

		peer_cq_destroy(s->cq);
		if (s->ch)
			grpc_channel_destroy(s->ch);
		EVP_MD_CTX_free(s->md);
		block_list_free(&s->list);
		s->cq = NULL;
		s->ch = NULL;
		s->md = NULL;
	}
	EVP_MD_CTX_free(md);
	return out;
}

/* Make the i-th version of t->plan the one fetched. */
static void use_version(struct transfer *t, size_t first, size_t end)
{
	pthread_mutex_lock(&t->lock);
	snprintf(t->sha256, sizeof(t->sha256), "%s", t->plan[first].sha256);
	t->size = t->plan[first].size;
	t->nsrc = 0;
	for (size_t k = first; k < end && t->nsrc < MAX_SOURCES; k++, t->nsrc++) {
		snprintf(t->src[t->nsrc].peer, sizeof(t->src[0].peer), "%s", t->plan[k].peer);
		snprintf(t->src[t->nsrc].target, sizeof(t->src[0].target), "%s", t->plan[k].target);
	}
	t->received = 0;
	pthread_mutex_unlock(&t->lock);
}

static size_t version_end(const struct transfer *t, size_t first)
{
	size_t k = first;

	while (k < t->nplan && t->plan[k].size == t->plan[first].size && !strcmp(t->plan[k].sha256, t->plan[first].sha256))
		k++;
	return k;
}

static void *worker(void *arg)
{
	struct transfer *t = arg;
	struct fetch *f = calloc(1, sizeof(*f));
	unsigned char *buf = malloc(1 << 20);
	EVP_MD_CTX *own = EVP_MD_CTX_new();
	enum outcome got = NEXT_VERSION;
	struct stat st;
	bool reread = false;
	int dirfd = -1, pdirfd = -1, r;

	if (!f || !buf || !own) {
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
	/* A file of that name is there already: one of the versions offered
	 * is the download done; other content is the user's and stays. */
	r = existing(dirfd, t);
	if (r >= 0) {
		use_version(t, (size_t)r, version_end(t, (size_t)r));
		log_info("download %s: %s/%s holds this version already", t->name, t->to, t->name);
		f->fd = openat(dirfd, t->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		goto landed;
	}
	if (r == -EEXIST && !t->force) {
		t->retry = false;
		fail(t, "FileExists",
		     "%s/%s exists with other content; it is kept (move it away, download --to another folder, "
		     "or use --force to replace it)", t->to, t->name);
		goto out;
	}
	if (r == -EISDIR) {
		t->retry = false;
		fail(t, "FileExists", "%s/%s exists and is not a regular file; it is kept", t->to, t->name);
		goto out;
	}
	if (mkdirat(dirfd, PARTIAL_DIR, 0700) < 0 && errno != EEXIST) {
		fail(t, "TransferFailed", "cannot create %s/%s: %s", t->to, PARTIAL_DIR, strerror(errno));
		goto out;
	}
	pdirfd = openat(dirfd, PARTIAL_DIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	r = pdirfd < 0 ? -errno : partial_open(f, pdirfd);
	if (r == -EBUSY) {
		t->retry = true;
		fail(t, "TransferFailed",
		     "another download of %s into %s is running (by another p2p-peerd sharing the folder?); "
		     "try again when it has ended", t->name, t->to);
		goto out;
	}
	if (r < 0) {
		fail(t, "TransferFailed", "cannot open the partial file %s/%s/%s: %s", t->to, PARTIAL_DIR, t->name,
		     strerror(-r));
		goto out;
	}
	for (size_t first = 0, v = 0; first < t->nplan && got == NEXT_VERSION; first = version_end(t, first), v++) {
		use_version(t, first, version_end(t, first));
		if (v > 0)
			log_notice("download %s: trying the next version (%llu bytes, SHA-256 %s) from %d source(s)",
				   t->name, (unsigned long long)t->size, t->sha256, t->nsrc);
		got = fetch_version(f, buf, own);
	}
	if (got == STOP)
		goto out;
	if (got == NEXT_VERSION) {
		bool verify = f->any_bad && !f->any_transient;

		t->retry = f->any_transient;
		fsync(f->fd);
		if (verify)
			unlinkat(pdirfd, t->name, 0); /* nothing in it was verified */
		if (verify)
			fail(t, "VerificationFailed",
			     "no source delivered bytes matching the SHA-256 it is indexed with (%s); retrying will "
			     "not help until other sources are online", f->report);
		else
			fail(t, "TransferFailed", "no source could complete the transfer (%s; %zu of %zu ranges "
			     "verified and kept to resume)", f->report, f->rg.done, f->rg.n);
		goto out;
	}
	if (fsync(f->fd) < 0) {
		fail(t, "TransferFailed", "cannot write %s/%s/%s: %s", t->to, PARTIAL_DIR, t->name, strerror(errno));
		goto out;
	}
	r = prove_disk(f, buf, &reread);
	if (r == -EBUSY) {
		t->retry = true;
		fail(t, "TransferFailed",
		     "another process has %s/%s/%s open; it is not put into place while that process may write to it",
		     t->to, PARTIAL_DIR, t->name);
		goto out;
	}
	if (r == -EBADMSG) {
		t->retry = true;
		fail(t, "TransferFailed",
		     "the partial file %s/%s/%s changed on disk while downloading (another process wrote into it); "
		     "not put into place: the next try checks its ranges again", t->to, PARTIAL_DIR, t->name);
		goto out;
	}
	if (r < 0) {
		fail(t, "TransferFailed", "cannot read back %s/%s/%s: %s", t->to, PARTIAL_DIR, t->name, strerror(-r));
		goto out;
	}
	/* Never over a file: another one may have appeared since the start. */
	if (renameat2(pdirfd, t->name, dirfd, t->name, t->force ? 0 : RENAME_NOREPLACE) < 0) {
		int e = errno == EEXIST ? existing(dirfd, t) : -1;

		if (e >= 0 && t->plan[e].size == t->size && !strcmp(t->plan[e].sha256, t->sha256)) {
			unlinkat(pdirfd, t->name, 0); /* the same bytes landed meanwhile */
		} else if (errno == EEXIST || e != -1) {
			t->retry = false;
			fail(t, "FileExists",
			     "%s/%s appeared during the download with other content; it is kept, and the verified "
			     "download stays in %s/ (move the file away and download again, or use --force)",
			     t->to, t->name, PARTIAL_DIR);
			goto out;
		} else {
			fail(t, "TransferFailed", "cannot put %s into place: %s", t->name, strerror(errno));
			goto out;
		}
	}
	{
		int dfd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
landed:
	if (f->fd >= 0 && fstat(f->fd, &st) == 0) {
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
	t->received = t->size;
	t->seconds = mono_now() - t->started;
	pthread_mutex_unlock(&t->lock);
	log_info("downloaded %s (%llu bytes, verified%s; %llu hashed as they arrived) into %s from %d source(s)",
		 t->name, (unsigned long long)t->size, reread ? " as read back from disk" : "",
		 (unsigned long long)f->hashed_in_memory, t->to, t->sources_used);
out:
	if (f) {
		if (f->fd >= 0)
			close(f->fd);
		ranges_free(&f->rg);
		block_list_free(&f->blocks);
		free(f);
	}
	free(buf);
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

/* ---- the plan ------------------------------------------------------------------ */

int download_plan(struct transfer *t, const struct dir_hit *hits, size_t n, const char *self, const char *from,
		  const char **error)
{
	struct dir_hit *keep = calloc(n ? n : 1, sizeof(*keep)), *plan = calloc(n ? n : 1, sizeof(*plan));
	size_t *count = calloc(n ? n : 1, sizeof(*count)), nkeep = 0, nplan = 0;
	bool *placed = calloc(n ? n : 1, sizeof(*placed));

	if (!keep || !plan || !count || !placed) {
		free(keep);
		free(plan);
		free(count);
		free(placed);
		*error = "TransferFailed";
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		if ((self && !strcmp(hits[i].peer, self)) || (from && strcmp(hits[i].peer, from)) ||
		    !valid_sha256_hex(hits[i].sha256))
			continue;
		keep[nkeep++] = hits[i];
	}
	/* How many sources each version has (a peer counts once per version). */
	for (size_t i = 0; i < nkeep; i++)
		for (size_t j = 0; j < nkeep; j++)
			count[i] += keep[j].size == keep[i].size && !strcmp(keep[j].sha256, keep[i].sha256);
	/* Versions by their number of sources, then by where each first
	 * appears in the directory's answer; each version's sources in the
	 * directory's order. At most MAX_VERSIONS are tried. */
	for (size_t v = 0; v < MAX_VERSIONS; v++) {
		size_t best = nkeep;

		for (size_t i = 0; i < nkeep; i++)
			if (!placed[i] && (best == nkeep || count[i] > count[best]))
				best = i;
		if (best == nkeep)
			break;
		for (size_t j = 0; j < nkeep; j++)
			if (!placed[j] && keep[j].size == keep[best].size && !strcmp(keep[j].sha256, keep[best].sha256)) {
				placed[j] = true;
				plan[nplan++] = keep[j];
			}
	}
	free(keep);
	free(count);
	free(placed);
	if (nplan == 0) {
		free(plan);
		*error = "NotFound";
		return -ENOENT;
	}
	free(t->plan);
	t->plan = plan;
	t->nplan = nplan;
	use_version(t, 0, version_end(t, 0));
	return 0;
}

int download_begin(struct transfer *t)
{
	if (t->progress_bytes <= 0)
		t->progress_bytes = DOWNLOAD_PROGRESS_BYTES;
	if (t->progress_interval <= 0)
		t->progress_interval = DOWNLOAD_PROGRESS_INTERVAL;
	t->retry = true; /* a local error may pass; the causes that do not say so */
	return pthread_create(&t->thread, NULL, worker, t) != 0 ? -EAGAIN : 0;
}
