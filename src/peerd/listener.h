/* SPDX-License-Identifier: MIT */
/* listener.h — the gRPC server's listening socket in plain text, ours rather
 * than gRPC's: gRPC 1.51's own listener stops accepting for good after one
 * EMFILE. A thread accepts, keeps LISTENER_FD_RESERVE descriptors free for
 * files, pauses on EMFILE/ENFILE instead of spinning, records each client's
 * address and hands the connection to gRPC (grpc_server_add_channel_from_fd).
 */
#ifndef P2P_PEERD_LISTENER_H
#define P2P_PEERD_LISTENER_H

#include <netinet/in.h>
#include <stdbool.h>

#include <grpc/grpc.h>

#define LISTENER_FD_RESERVE 64 /* descriptors kept from connections, for files and the rest */

struct listener;

/* A listening socket on ADDR:PORT ("0.0.0.0:50001", "[::1]:0",
 * "localhost:7000"): the descriptor, or -EINVAL / -EADDRINUSE. */
int listener_bind(const char *spec);
/* The TCP port fd is bound to; 0 for another kind of socket. */
int listener_port(int fd);
/* Accept on lfd (made non-blocking; not closed by listener_stop) for srv,
 * which has been started. 0 or a negative errno. */
int listener_start(struct listener **out, int lfd, grpc_server *srv);
/* Stop accepting and wait for the thread; NULL is fine. */
void listener_stop(struct listener *l);
/* The client address of a connection the listener accepted, by the
 * descriptor gRPC names in its peer string ("fd:N"); false if unknown. */
bool listener_address(struct listener *l, int fd, char out[INET6_ADDRSTRLEN]);

#endif
