/* SPDX-License-Identifier: MIT */
/* peerclient.h — the client side of p2p.v1.Peer: channels to other peers
 * and one blocking call wrapper over the gRPC core API (peerclient.c). The
 * fetch engine (download.c) drives it from its stream threads. */
#ifndef P2P_PEERD_PEERCLIENT_H
#define P2P_PEERD_PEERCLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "chunk.h"

/* The largest Read reply a source may send: a Chunk of the largest
 * chunk_size (4 MiB) with its header. A larger one ends the call. */
#define PEER_MAX_CHUNK_MESSAGE ((4u << 20) + CHUNK_HEADER_MAX)
/* The largest Stat reply: room for the block hashes of a 64 GiB file in
 * 64 KiB blocks, or of 32 TiB in 4 MiB blocks. */
#define PEER_MAX_STAT_MESSAGE (36u << 20)

/* A channel to target (host:port or [v6]:port) whose replies may be at
 * most max_receive bytes; the receive window is capped so that one source
 * holds at most PEER_RECV_WINDOW bytes in flight whatever the file size
 * (GRPC-NOTES: lookahead + no BDP probing). NULL when out of memory. */
#define PEER_RECV_WINDOW (4 << 20)
/* The memory quota of each channel: a message, twice the window, and
 * room for the 8 MiB of received chunks a download may queue for its hash
 * plus slack (received slices count against it until they are freed). */
#define PEER_QUOTA(max_receive) ((size_t)(max_receive) + 2 * PEER_RECV_WINDOW + (12u << 20))
grpc_channel *peer_channel(const char *target, int max_receive);

/* One call. stop() is told the seconds waited since it was last called,
 * every slice (250 ms) while the call waits (done false: when it returns
 * true the call is cancelled, and the wait ends as the call fails) and
 * once when the wait ends (done true). */
struct rcall {
	grpc_call *call;
	grpc_completion_queue *cq;
	grpc_metadata md;
	grpc_metadata_array initial, trailing;
	grpc_byte_buffer *sendbuf;
	grpc_status_code status;
	grpc_slice details;
	bool gave_up;
	bool (*stop)(void *arg, double waited, bool done);
	void *arg;
};

/* Start method on ch (unary request req, with "authorization: Bearer
 * ticket") and wait for the reply's initial metadata. rc->stop/arg must be
 * set; cq is a pluck queue of the calling thread. 0, -ENOMEM or -EIO; call
 * rcall_end in every case. */
int rcall_begin(struct rcall *rc, grpc_channel *ch, grpc_completion_queue *cq, const char *method,
		const char *ticket, const ProtobufCMessage *req);
/* The next message, or NULL at the end of the stream or on failure. */
grpc_byte_buffer *rcall_recv(struct rcall *rc);
/* Give up on the call now (its status is then not the source's fault). */
void rcall_cancel(struct rcall *rc);
/* Collect the status and release the call. details (may be NULL) gets the
 * status message. */
grpc_status_code rcall_end(struct rcall *rc, char *details, size_t len);

/* Drain and destroy a pluck queue. */
void peer_cq_destroy(grpc_completion_queue *cq);

#endif
