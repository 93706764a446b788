/* download.c — fetching a file from other peers (DESIGN.md, "Download
 * semantics").
 *
 * The control socket starts a transfer on the main loop (search the
 * directory, choose the sources that have the same size and SHA-256); a
 * worker thread then streams it with p2p.v1.Peer/Read into
 * DIR/.p2p-partial/NAME, resuming from what is already there, moving on to
 * the next source when one fails. When the size is reached it fsyncs,
 * verifies the SHA-256 of the whole file, and renames it into place
 * atomically; a corrupt or short file never appears under the final name.
 * The main loop reports progress and re-indexes when a transfer ends.
 *
 * Not yet: fetching ranges from several sources in parallel (sources are
 * used one after another), rate limits, and resuming after a restart of
 * peerd (the partial file is kept and is resumed by the next download of
 * the same name).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/http.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <openssl/evp.h>

#include "log.h"
#include "p2p/v1/peer.pb-c.h"
#include "peerd.h"

#define PARTIAL_DIR ".p2p-partial"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

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
	t->seconds = now_s() - t->started;
	pthread_mutex_unlock(&t->lock);
}

/* A ticket for this file from this source. */
static int get_ticket(struct transfer *t, const char *peer, char out[SHA256_HEX_LEN + 1])
{
	struct json_object *body = json_object_new_object(), *reply = NULL, *v;
	int status;

	json_object_object_add(body, "peer", json_object_new_string(peer));
	json_object_object_add(body, "file", json_object_new_string(t->name));
	status = dir_call(t->directory, "POST", "/tickets", t->token, body, &reply, 30);
	json_object_put(body);
	if (status != 201 || !json_object_object_get_ex(reply, "ticket", &v) ||
	    !valid_sha256_hex(json_object_get_string(v))) {
		json_object_put(reply);
		return -EACCES;
	}
	snprintf(out, SHA256_HEX_LEN + 1, "%s", json_object_get_string(v));
	json_object_put(reply);
	return 0;
}

static bool cancelled(struct transfer *t)
{
	bool c;

	pthread_mutex_lock(&t->lock);
	c = t->cancel;
	pthread_mutex_unlock(&t->lock);
	return c;
}

/* Write all of buf at off. A full disk often shows first as a short
 * write, which sets no errno: the retry then fails with ENOSPC. */
static int pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, buf, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			errno = ENOSPC;
			return -ENOSPC;
		}
		buf = (const char *)buf + n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* Stream [offset, size) from one source into fd. Returns 0 when the range
 * is complete, or -errno; *pos tracks what has been written. */
static int read_from(struct transfer *t, const struct source *src, int fd, uint64_t *pos, EVP_MD_CTX *hash)
{
	char ticket[SHA256_HEX_LEN + 1], auth[SHA256_HEX_LEN + 8];
	P2p__V1__ReadRequest req = P2P__V1__READ_REQUEST__INIT;
	grpc_completion_queue *cq = NULL;
	grpc_channel *ch = NULL;
	grpc_call *call = NULL;
	grpc_channel_credentials *creds;
	grpc_metadata md;
	grpc_metadata_array initial, trailing;
	grpc_byte_buffer *sendbuf = NULL, *recvbuf = NULL;
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice(), method, reqslice;
	/* HTTP/2 keepalive pings find a source that went silent (a dead host,
	 * a dropped link): without them the stream waits forever. The server
	 * resets its ping-abuse count whenever it sends data, so pings during
	 * a transfer are never strikes. */
	grpc_arg arg[] = {
		{ GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, { .integer = 16 << 20 } },
		{ GRPC_ARG_INTEGER, (char *)GRPC_ARG_KEEPALIVE_TIME_MS, { .integer = 10000 } },
		{ GRPC_ARG_INTEGER, (char *)GRPC_ARG_KEEPALIVE_TIMEOUT_MS, { .integer = 10000 } },
	};
	grpc_channel_args args = { sizeof(arg) / sizeof(arg[0]), arg };
	grpc_op ops[4];
	grpc_event ev;
	int r = -EIO;

	if (get_ticket(t, src->peer, ticket) < 0)
		return -EACCES;
	grpc_metadata_array_init(&initial);
	grpc_metadata_array_init(&trailing);
	creds = peer_client_creds();
	ch = grpc_channel_create(src->target, creds, &args);
	grpc_channel_credentials_release(creds);
	cq = grpc_completion_queue_create_for_pluck(NULL);
	method = grpc_slice_from_static_string("/p2p.v1.Peer/Read");
	call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL,
					gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	req.name = t->name;
	req.offset = *pos;
	req.length = 0;
	reqslice = grpc_slice_malloc(p2p__v1__read_request__get_packed_size(&req));
	p2p__v1__read_request__pack(&req, GRPC_SLICE_START_PTR(reqslice));
	sendbuf = grpc_raw_byte_buffer_create(&reqslice, 1);
	grpc_slice_unref(reqslice);
	snprintf(auth, sizeof(auth), "Bearer %s", ticket);
	md.key = grpc_slice_from_static_string("authorization");
	md.value = grpc_slice_from_copied_string(auth);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = 1;
	ops[0].data.send_initial_metadata.metadata = &md;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = sendbuf;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
	if (grpc_call_start_batch(call, ops, 4, (void *)1, NULL) != GRPC_CALL_OK)
		goto out;
	ev = grpc_completion_queue_pluck(cq, (void *)1, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	if (!ev.success)
		goto status;
	for (;;) {
		P2p__V1__Chunk *chunk;
		grpc_byte_buffer_reader rd;
		grpc_slice all;
		bool ok;
		int werr = 0;

		if (cancelled(t)) {
			grpc_call_cancel(call, NULL);
			r = -ECANCELED;
			goto status;
		}
		memset(ops, 0, sizeof(ops));
		ops[0].op = GRPC_OP_RECV_MESSAGE;
		ops[0].data.recv_message.recv_message = &recvbuf;
		if (grpc_call_start_batch(call, ops, 1, (void *)2, NULL) != GRPC_CALL_OK)
			goto status;
		ev = grpc_completion_queue_pluck(cq, (void *)2, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (!ev.success || !recvbuf)
			break; /* end of stream (or failure: the status says) */
		grpc_byte_buffer_reader_init(&rd, recvbuf);
		all = grpc_byte_buffer_reader_readall(&rd);
		grpc_byte_buffer_reader_destroy(&rd);
		grpc_byte_buffer_destroy(recvbuf);
		recvbuf = NULL;
		chunk = p2p__v1__chunk__unpack(NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
		grpc_slice_unref(all);
		ok = chunk && chunk->offset == *pos && chunk->data.len <= t->size - *pos;
		if (ok && pwrite_all(fd, chunk->data.data, chunk->data.len, (off_t)*pos) < 0) {
			werr = errno;
			ok = false;
		}
		if (ok) {
			/* Chunks arrive in order: hash as they come, no second pass. */
			EVP_DigestUpdate(hash, chunk->data.data, chunk->data.len);
			*pos += chunk->data.len;
			pthread_mutex_lock(&t->lock);
			t->received = *pos;
			pthread_mutex_unlock(&t->lock);
		}
		if (chunk)
			p2p__v1__chunk__free_unpacked(chunk, NULL);
		if (!ok) {
			log_warn("download %s: bad chunk or write error from %s", t->name, src->peer);
			grpc_call_cancel(call, NULL);
			r = werr == ENOSPC || werr == EDQUOT ? -ENOSPC : -EPROTO;
			goto status;
		}
	}
	r = 0;
status:
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &trailing;
	ops[0].data.recv_status_on_client.status = &status;
	ops[0].data.recv_status_on_client.status_details = &details;
	if (grpc_call_start_batch(call, ops, 1, (void *)3, NULL) == GRPC_CALL_OK)
		grpc_completion_queue_pluck(cq, (void *)3, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	if (r == 0 && (status != GRPC_STATUS_OK || *pos != t->size)) {
		char *d = grpc_slice_to_c_string(details);

		log_warn("download %s from %s: status %d %s", t->name, src->peer, (int)status, d);
		gpr_free(d);
		r = -EIO;
	}
out:
	grpc_slice_unref(details);
	grpc_slice_unref(md.value);
	if (sendbuf)
		grpc_byte_buffer_destroy(sendbuf);
	grpc_metadata_array_destroy(&initial);
	grpc_metadata_array_destroy(&trailing);
	if (call)
		grpc_call_unref(call);
	if (cq) {
		grpc_completion_queue_shutdown(cq);
		while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
		       GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(cq);
	}
	if (ch)
		grpc_channel_destroy(ch);
	return r;
}

/* Start md over with the first len bytes of fd (what a resumed download
 * already has). */
static int hash_prefix(int fd, uint64_t len, EVP_MD_CTX *md)
{
	unsigned char *buf = malloc(1 << 20);
	uint64_t off = 0;
	ssize_t n;

	if (!buf || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		free(buf);
		return -ENOMEM;
	}
	while (off < len && (n = pread(fd, buf, len - off < (1 << 20) ? len - off : (1 << 20), (off_t)off)) > 0) {
		EVP_DigestUpdate(md, buf, (size_t)n);
		off += (uint64_t)n;
	}
	free(buf);
	return off == len ? 0 : -EIO;
}

static void *worker(void *arg)
{
	struct transfer *t = arg;
	char got[SHA256_HEX_LEN + 1];
	unsigned char digest[SHA256_BYTES];
	unsigned int dlen = 0;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	struct stat st;
	uint64_t pos;
	int dirfd = -1, pdirfd = -1, fd = -1, r = -EIO;

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
	fd = pdirfd < 0 ? -1 : openat(pdirfd, t->name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		fail(t, "TransferFailed", "cannot open the partial file: %s", strerror(errno));
		goto out;
	}
	/* Resume from what is on disk (never past the expected size). */
	pos = (uint64_t)st.st_size <= t->size ? (uint64_t)st.st_size : 0;
	if (pos == 0 && ftruncate(fd, 0) < 0)
		goto io;
	if (!md || hash_prefix(fd, pos, md) < 0)
		goto io;
	if (pos)
		log_info("download %s: resuming at %llu of %llu bytes", t->name, (unsigned long long)pos,
			 (unsigned long long)t->size);
	for (int i = 0; i < t->nsrc && !cancelled(t); i++) {
		pthread_mutex_lock(&t->lock);
		t->sources = 1;
		pthread_mutex_unlock(&t->lock);
		r = pos == t->size ? 0 : read_from(t, &t->src[i], fd, &pos, md);
		if (r == -ENOSPC || r == -ECANCELED)
			break;
		if (r < 0)
			continue; /* the next source continues from pos */
		if (fsync(fd) < 0)
			goto io;
		EVP_DigestFinal_ex(md, digest, &dlen);
		crypto_hex(digest, SHA256_BYTES, got);
		if (strcmp(got, t->sha256) == 0)
			break;
		log_warn("download %s: SHA-256 mismatch after reading from %s; starting over", t->name, t->src[i].peer);
		r = -EBADMSG;
		pos = 0;
		if (ftruncate(fd, 0) < 0 || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
			goto io;
	}
	if (cancelled(t)) {
		fail(t, "Cancelled", "cancelled");
		goto out;
	}
	if (r == -EBADMSG) {
		unlinkat(pdirfd, t->name, 0);
		fail(t, "VerificationFailed", "no source delivered bytes matching SHA-256 %s", t->sha256);
		goto out;
	}
	if (r == -ENOSPC) {
		fail(t, "TransferFailed", "no space left on the device holding %s", t->to);
		goto out;
	}
	if (r < 0) {
		fail(t, "TransferFailed", "no source could complete the transfer (%llu of %llu bytes kept to resume)",
		     (unsigned long long)pos, (unsigned long long)t->size);
		goto out;
	}
	if (renameat(pdirfd, t->name, dirfd, t->name) < 0)
		goto io;
	{
		int dfd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	if (fstat(fd, &st) == 0) {
		t->landed = (struct hash_entry){ (uint64_t)st.st_dev, (uint64_t)st.st_ino, (uint64_t)st.st_size,
						 (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec, "" };
		memcpy(t->landed.sha256, t->sha256, sizeof(t->sha256));
	}
	pthread_mutex_lock(&t->lock);
	t->state = TRANSFER_DONE;
	t->seconds = now_s() - t->started;
	pthread_mutex_unlock(&t->lock);
	log_info("downloaded %s (%llu bytes, verified) into %s", t->name, (unsigned long long)t->size, t->to);
	goto out;
io:
	fail(t, "TransferFailed", "%s", strerror(errno));
out:
	EVP_MD_CTX_free(md);
	if (fd >= 0)
		close(fd);
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

struct pick {
	const char *self, *from;
	struct transfer *t;
};

int download_start(struct peerd *p, const char *name, const char *from, const char *to,
		   struct transfer **out, const char **error)
{
	struct json_object *reply = NULL, *list, *first_sha = NULL;
	char token[SHA256_HEX_LEN + 1], self[USERNAME_MAX + 1], path[600], *enc;
	struct transfer *t;
	uint8_t rnd[8];
	int status;

	pthread_mutex_lock(&p->session.lock);
	snprintf(token, sizeof(token), "%s", p->session.token);
	snprintf(self, sizeof(self), "%s", p->session.username);
	pthread_mutex_unlock(&p->session.lock);
	if (!*token) {
		*error = "NotLoggedIn";
		return -ENOTCONN;
	}
	enc = evhttp_encode_uri(name);
	snprintf(path, sizeof(path), "/search?file=%s", enc ? enc : "");
	free(enc);
	status = dir_call(p->set.directory, "GET", path, token, NULL, &reply, 30);
	if (status == 0 || status >= 500) {
		json_object_put(reply);
		*error = "DirectoryUnreachable";
		return -EHOSTUNREACH;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		json_object_put(reply);
		return -ENOMEM;
	}
	pthread_mutex_init(&t->lock, NULL);
	snprintf(t->name, sizeof(t->name), "%s", name);
	snprintf(t->to, sizeof(t->to), "%s", to);
	snprintf(t->token, sizeof(t->token), "%s", token);
	snprintf(t->directory, sizeof(t->directory), "%s", p->set.directory);
	if (status == 200 && json_object_object_get_ex(reply, "peers_with_file", &list)) {
		for (size_t i = 0; i < json_object_array_length(list) && t->nsrc < MAX_SOURCES; i++) {
			struct json_object *h = json_object_array_get_idx(list, i), *peer, *ip, *port, *size, *sha;

			if (!json_object_object_get_ex(h, "peer", &peer) || !json_object_object_get_ex(h, "ip", &ip) ||
			    !json_object_object_get_ex(h, "port", &port) || !json_object_object_get_ex(h, "size", &size) ||
			    !json_object_object_get_ex(h, "sha256", &sha) || !json_object_is_type(sha, json_type_string) ||
			    !json_object_is_type(size, json_type_int))
				continue; /* names-only entries cannot be verified */
			if (!strcmp(json_object_get_string(peer), self) ||
			    (from && strcmp(json_object_get_string(peer), from)))
				continue;
			if (!first_sha) {
				first_sha = sha;
				snprintf(t->sha256, sizeof(t->sha256), "%s", json_object_get_string(sha));
				t->size = (uint64_t)json_object_get_int64(size);
			} else if (strcmp(json_object_get_string(sha), t->sha256) ||
				   (uint64_t)json_object_get_int64(size) != t->size) {
				continue; /* another version of the file */
			}
			snprintf(t->src[t->nsrc].peer, sizeof(t->src[0].peer), "%s", json_object_get_string(peer));
			snprintf(t->src[t->nsrc].target, sizeof(t->src[0].target), "%s:%d",
				 json_object_get_string(ip), json_object_get_int(port));
			if (strchr(json_object_get_string(ip), ':')) /* IPv6 */
				snprintf(t->src[t->nsrc].target, sizeof(t->src[0].target), "[%s]:%d",
					 json_object_get_string(ip), json_object_get_int(port));
			t->nsrc++;
		}
	}
	json_object_put(reply);
	if (t->nsrc == 0) {
		pthread_mutex_destroy(&t->lock);
		free(t);
		*error = "NotFound";
		return -ENOENT;
	}
	crypto_random(rnd, sizeof(rnd));
	crypto_hex(rnd, sizeof(rnd), t->id);
	t->state = TRANSFER_RUNNING;
	t->started = now_s();
	t->wake_fd = p->wake_fd;
	if (pthread_create(&t->thread, NULL, worker, t) != 0) {
		pthread_mutex_destroy(&t->lock);
		free(t);
		*error = "TransferFailed";
		return -EAGAIN;
	}
	t->next = p->transfers;
	p->transfers = t;
	*out = t;
	return 0;
}

void download_free_all(struct peerd *p)
{
	while (p->transfers) {
		struct transfer *t = p->transfers;

		pthread_mutex_lock(&t->lock);
		t->cancel = true;
		pthread_mutex_unlock(&t->lock);
		pthread_join(t->thread, NULL);
		p->transfers = t->next;
		pthread_mutex_destroy(&t->lock);
		free(t);
	}
}
