/* SPDX-License-Identifier: MIT */
/* listener.c — the gRPC server's plain-text listening socket and its accept
 * thread (listener.h). */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>

#include "listener.h"
#include "log.h"
#include "peerd.h"

struct listener {
	grpc_server *srv;
	int lfd, stop_fd;
	int fd_cap;                        /* connections above this are refused */
	char (*fd_addr)[INET6_ADDRSTRLEN]; /* the address of each accepted descriptor */
	int nfd_addr;
	pthread_t thread;
};

int listener_bind(const char *spec)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM }, *ai, *a;
	size_t hl;
	int fd = -1, one = 1, e;

	if (!colon || colon == spec)
		return -EINVAL;
	hl = (size_t)(colon - spec);
	if (spec[0] == '[' && hl >= 2 && spec[hl - 1] == ']') {
		spec++;
		hl -= 2;
	}
	if (hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, spec, hl);
	host[hl] = '\0';
	if ((e = getaddrinfo(host, colon + 1, &hints, &ai)) != 0)
		return -EINVAL;
	for (a = ai; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 1024) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd >= 0 ? fd : -EADDRINUSE;
}

int listener_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return 0;
	return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					      : ((struct sockaddr_in *)&ss)->sin_port);
}

/* Accept, keep LISTENER_FD_RESERVE descriptors free, back off on
 * EMFILE/ENFILE (the connection waits in the backlog) instead of spinning,
 * and hand each connection to gRPC with the client's address recorded. */
static void *accept_thread(void *arg)
{
	struct listener *r = arg;
	struct pollfd pfd[2] = { { r->lfd, POLLIN, 0 }, { r->stop_fd, POLLIN, 0 } };
	grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
	double quiet_until = 0;
	unsigned long refused = 0;

	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd, one = 1, e;

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		fd = accept4(r->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			e = errno;
			if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == ECONNABORTED)
				continue;
			if (mono_now() >= quiet_until) {
				log_errno(LOG_WARNING, e, "gRPC: cannot accept a connection; pausing 200 ms");
				quiet_until = mono_now() + 10;
			}
			poll(&pfd[1], 1, 200);
			continue;
		}
		if (fd >= r->fd_cap || fd >= r->nfd_addr) {
			close(fd);
			if (refused++ == 0 || mono_now() >= quiet_until) {
				log_warn("gRPC: %lu connection(s) refused: %d descriptors in use, the limit is %d "
					 "(RLIMIT_NOFILE less %d kept for files)", refused, fd, r->fd_cap + LISTENER_FD_RESERVE,
					 LISTENER_FD_RESERVE);
				quiet_until = mono_now() + 10;
			}
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		r->fd_addr[fd][0] = '\0';
		if (ss.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, r->fd_addr[fd], INET6_ADDRSTRLEN);
		else if (ss.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, r->fd_addr[fd], INET6_ADDRSTRLEN);
		grpc_server_add_channel_from_fd(r->srv, fd, creds);
	}
	grpc_server_credentials_release(creds);
	return NULL;
}

int listener_start(struct listener **out, int lfd, grpc_server *srv)
{
	struct listener *l = calloc(1, sizeof(*l));
	struct rlimit rl;

	if (!l)
		return -ENOMEM;
	l->srv = srv;
	l->lfd = lfd;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur > (1u << 20))
		rl.rlim_cur = 1u << 20;
	l->nfd_addr = (int)rl.rlim_cur;
	l->fd_cap = rl.rlim_cur > 2 * LISTENER_FD_RESERVE ? (int)rl.rlim_cur - LISTENER_FD_RESERVE
							 : (int)rl.rlim_cur / 2;
	l->fd_addr = calloc((size_t)l->nfd_addr, sizeof(*l->fd_addr));
	l->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
	if (!l->fd_addr || l->stop_fd < 0 || pthread_create(&l->thread, NULL, accept_thread, l) != 0) {
		if (l->stop_fd >= 0)
			close(l->stop_fd);
		free(l->fd_addr);
		free(l);
		return -EAGAIN;
	}
	*out = l;
	return 0;
}

void listener_stop(struct listener *l)
{
	uint64_t one = 1;

	if (!l)
		return;
	if (write(l->stop_fd, &one, sizeof(one)) < 0)
		log_errno(LOG_WARNING, errno, "cannot stop the gRPC accept thread");
	pthread_join(l->thread, NULL);
	close(l->stop_fd);
	free(l->fd_addr);
	free(l);
}

bool listener_address(struct listener *l, int fd, char out[INET6_ADDRSTRLEN])
{
	if (!l || fd < 0 || fd >= l->nfd_addr || !l->fd_addr[fd][0])
		return false;
	memcpy(out, l->fd_addr[fd], INET6_ADDRSTRLEN);
	return true;
}
