/* SPDX-License-Identifier: MIT */
/* control.c — owns the peer's control socket: binding it (or taking it
 * from systemd), the access check, the connections and their bound, the
 * varlink framing, dispatching each call to its handler in
 * control_methods.c (after varlink_service.c has answered what is not a
 * method's: org.varlink.service, the call flags, unknown methods and
 * parameters io.p2p.Peer.varlink does not allow), and delivering the
 * answers in order; a oneway call runs in its place and is never
 * answered. It knows no method: a handler answers through
 * control_reply/control_error, at once or later from a callback (the
 * client does not wait on the loop).
 *
 * Access: the socket file is mode 0660; each client is identified with
 * SO_PEERCRED (never by what it says) and allowed if it is root, our own uid,
 * or in the socket file's group (primary, or supplementary from
 * SO_PEERGROUPS). A stale socket file from a dead instance is replaced; a
 * live instance is never displaced.
 *
 * Bounds: PEER_CONTROL_CLIENTS_MAX connections at once (one more is told
 * io.p2p.Peer.Busy and closed); one call at a time per connection (the
 * next is read once it is answered; at most VARLINK_MESSAGE_MAX bytes wait);
 * when accept() runs out of descriptors the listener pauses for a second
 * instead of spinning.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>

#include "log.h"
#include "peerd.h"
#include "varlink.h"
#include "varlink_service.h"

#define ACCEPT_PAUSE_MS 1000 /* accept() failed for want of descriptors: wait this long */

struct client;

struct control {
	struct peerd *p;
	struct evconnlistener *listener;
	struct event *accept_again;  /* the pause after EMFILE/ENFILE */
	char *path;                  /* unlinked at stop; NULL when activated */
	control_method *(*find)(const char *name);
	struct client *clients;      /* connected, freed at stop */
	unsigned nclients;
};

struct client {
	struct control *ctl;
	struct bufferevent *bev;
	struct event *resume;        /* read the next call once one is answered */
	struct control_call *call;   /* the call being answered, or NULL */
	bool closing;                /* close once the answer has left */
	pid_t pid;
	struct client *next;
};

struct control_call {
	struct client *c;            /* NULL once the client has gone */
	struct peerd *p;
	bool more, oneway;
};

static void client_free(struct client *c);
static void close_after_write(struct client *c);

/* ---- answers ------------------------------------------------------------- */

static void send_text(struct client *c, char *text, size_t len)
{
	if (text) {
		if (bufferevent_write(c->bev, text, len) < 0)
			log_debug("control: cannot queue an answer to pid %d", (int)c->pid);
		free(text);
	}
}

static void send_error(struct client *c, const char *error, struct json_object *params)
{
	char name[128], *out = NULL;
	size_t len = 0;

	snprintf(name, sizeof(name), "%s%s", strchr(error, '.') ? "" : PEER_IFACE ".", error);
	if (varlink_error_format(name, params, &out, &len) == 0)
		send_text(c, out, len);
	json_object_put(params);
}

static void call_end(struct control_call *call)
{
	struct client *c = call->c;

	if (c) {
		c->call = NULL;
		if (c->closing)
			close_after_write(c);
		else
			event_active(c->resume, EV_TIMEOUT, 1);
	}
	free(call);
}

void control_reply(struct control_call *call, struct json_object *params)
{
	char *out = NULL;
	size_t len = 0;

	if (call->c && !call->oneway && varlink_reply_format(params, false, &out, &len) == 0)
		send_text(call->c, out, len);
	json_object_put(params);
	call_end(call);
}

void control_error(struct control_call *call, const char *error, struct json_object *params)
{
	if (call->c && !call->oneway)
		send_error(call->c, error, params);
	else
		json_object_put(params);
	call_end(call);
}

void control_continue(struct control_call *call, struct json_object *params)
{
	char *out = NULL;
	size_t len = 0;

	if (call->c && call->more && varlink_reply_format(params, true, &out, &len) == 0)
		send_text(call->c, out, len);
	json_object_put(params);
}

bool control_call_gone(const struct control_call *call)
{
	return call->c == NULL;
}

bool control_call_more(const struct control_call *call)
{
	return call->more;
}

bool control_call_oneway(const struct control_call *call)
{
	return call->oneway;
}

struct peerd *control_peerd(const struct control_call *call)
{
	return call->p;
}

static struct json_object *one(const char *key, struct json_object *v)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, key, v);
	return o;
}

/* ---- connections --------------------------------------------------------- */

static void client_free(struct client *c)
{
	struct control *ctl = c->ctl;

	/* A call still being answered goes on; its answer goes nowhere. */
	if (c->call)
		c->call->c = NULL;
	for (struct client **pc = &ctl->clients; *pc; pc = &(*pc)->next)
		if (*pc == c) {
			*pc = c->next;
			break;
		}
	ctl->nclients--;
	bufferevent_free(c->bev);
	event_free(c->resume);
	free(c);
}

/* Once the last answer has left, close. */
static void on_drained(struct bufferevent *bev, void *arg)
{
	client_free(arg);
}

static void close_after_write(struct client *c)
{
	bufferevent_disable(c->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		client_free(c);
	else
		bufferevent_setcb(c->bev, NULL, on_drained, NULL, c);
}

/* Read and dispatch calls until one is left waiting for its answer. */
static void read_calls(struct client *c)
{
	static const struct varlink_interface ifaces[] = {
		{ PEER_IFACE, VARLINK_IDL_IO_P2P_PEER },
	};
	static const struct varlink_service service = {
		.vendor = "p2p", .product = "p2p-peerd", .version = PACKAGE_VERSION,
		.url = PACKAGE_URL[0] ? PACKAGE_URL : "https://example.invalid/p2p",
		.interfaces = ifaces, .n_interfaces = 1,
	};
	struct evbuffer *in = bufferevent_get_input(c->bev);

	while (!c->call && !c->closing) {
		size_t avail = evbuffer_get_length(in), want = avail, msg_len = 0;
		struct varlink_call vc;
		enum varlink_fault fault = VARLINK_FAULT_NONE;
		const unsigned char *buf;
		control_method *fn;
		char *answer = NULL;
		size_t alen = 0;
		int r;

		if (avail == 0)
			return;
		if (want > VARLINK_MESSAGE_MAX + 1)
			want = VARLINK_MESSAGE_MAX + 1;
		buf = evbuffer_pullup(in, (ev_ssize_t)want);
		if (!buf) {
			client_free(c); /* out of memory: this client only */
			return;
		}
		r = varlink_frame_find(buf, want, &msg_len);
		if (r == 0)
			return;
		if (r < 0) {
			log_warn("control: pid %d sent a message over %d bytes; closing", (int)c->pid, VARLINK_MESSAGE_MAX);
			client_free(c);
			return;
		}
		r = varlink_call_parse((const char *)buf, msg_len, &vc, &fault);
		evbuffer_drain(in, msg_len + 1);
		if (r < 0) {
			/* Not a call we can answer in order: say why and close. */
			send_error(c, VARLINK_E_INVALID_PARAMETER,
				   one("parameter", json_object_new_string(varlink_fault_str(fault))));
			close_after_write(c);
			return;
		}
		/* org.varlink.service, the call flags, unknown methods and
		 * parameters the interface definition does not allow are
		 * answered here (varlink_service.c); the rest runs its handler. */
		fn = c->ctl->find(vc.method);
		r = varlink_service_dispatch(&service, &vc, fn ? 0 : VARLINK_METHOD_UNKNOWN, &answer, &alen);
		if (r == 0) {
			send_text(c, answer, alen); /* NULL for a oneway call */
		} else {
			struct control_call *call = r > 0 ? calloc(1, sizeof(*call)) : NULL;

			if (!call) {
				if (!vc.oneway)
					send_error(c, peer_error_name(PEER_E_BUSY),
						   one("message", json_object_new_string("out of memory")));
			} else {
				call->c = c;
				call->p = c->ctl->p;
				call->more = vc.more;
				call->oneway = vc.oneway;
				c->call = call;
				fn(call, vc.parameters); /* may answer (and end) it at once */
			}
		}
		varlink_call_free(&vc);
	}
}

static void on_read(struct bufferevent *bev, void *arg)
{
	read_calls(arg);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	read_calls(arg);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct client *c = arg;

	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		client_free(c);
}

/* The group allowed in: the socket file's, also for a socket systemd bound
 * (SocketGroup=), found by its address. An abstract or unnamed socket has no
 * file, so only root and our own uid may use it. */
static gid_t socket_group(const char *path, int fd, bool warn)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	struct stat st;

	if (path) /* bound by us: getsockname() would name the temporary path */
		return stat(path, &st) == 0 && S_ISSOCK(st.st_mode) ? st.st_gid : (gid_t)-1;
	memset(&sa, 0, sizeof(sa));
	if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0 && sa.sun_family == AF_UNIX &&
	    len > offsetof(struct sockaddr_un, sun_path) && sa.sun_path[0] != '\0' &&
	    len <= sizeof(sa) - 1 && stat(sa.sun_path, &st) == 0 && S_ISSOCK(st.st_mode))
		return st.st_gid;
	if (warn)
		log_warn("control: the socket has no file to take a group from; only root and uid %d may use it",
			 (int)getuid());
	return (gid_t)-1;
}

/* SO_PEERCRED: root, our uid, or a member of the socket's group. The
 * supplementary groups come from SO_PEERGROUPS, fixed when the client
 * connected; reading /proc/PID would race with the pid being reused. */
static bool allowed(struct control *ctl, int fd, const struct ucred *cr)
{
	gid_t groups[256], group;
	socklen_t len = sizeof(groups);

	if (cr->uid == 0 || cr->uid == getuid())
		return true;
	/* Looked up now, so that a chgrp of the socket takes effect at once. */
	group = socket_group(ctl->path, evconnlistener_get_fd(ctl->listener), false);
	if (group == (gid_t)-1)
		return false;
	if (cr->gid == group)
		return true;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
		log_notice("control: cannot read the groups of pid %d: %s", (int)cr->pid, strerror(errno));
		return false; /* fail closed, also for more than 256 groups (ERANGE) */
	}
	for (size_t i = 0; i < len / sizeof(gid_t); i++)
		if (groups[i] == group)
			return true;
	return false;
}

/* Say why in one datagram-sized write and close, without a client. */
static void refuse(int fd, const char *text, size_t len)
{
	if (send(fd, text, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		log_debug("control: could not tell the refused client");
	close(fd);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	static const char busy[] = "{\"error\":\"io.p2p.Peer.Busy\",\"parameters\":"
				   "{\"message\":\"too many control connections\"}}";
	static double busy_logged;
	struct control *ctl = arg;
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	struct client *c;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) < 0 || !allowed(ctl, fd, &cr)) {
		static const char denied[] = "{\"error\":\"io.p2p.Peer.PermissionDenied\",\"parameters\":{}}";

		log_notice("control: refused uid %d pid %d", crlen ? (int)cr.uid : -1, crlen ? (int)cr.pid : -1);
		refuse(fd, denied, sizeof(denied));
		return;
	}
	if (ctl->nclients >= PEER_CONTROL_CLIENTS_MAX) {
		if (mono_now() - busy_logged > 10) {
			busy_logged = mono_now();
			log_warn("control: %d connections already; refusing more for now", PEER_CONTROL_CLIENTS_MAX);
		}
		refuse(fd, busy, sizeof(busy));
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c || !(c->resume = event_new(ctl->p->base, -1, 0, on_resume, c))) {
		free(c);
		close(fd);
		return;
	}
	c->ctl = ctl;
	c->pid = cr.pid;
	c->bev = bufferevent_socket_new(ctl->p->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		event_free(c->resume);
		free(c);
		close(fd);
		return;
	}
	/* A client with a call being answered reads no further than one message. */
	bufferevent_setwatermark(c->bev, EV_READ, 0, VARLINK_MESSAGE_MAX + 1);
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->next = ctl->clients;
	ctl->clients = c;
	ctl->nclients++;
}

static void on_accept_again(evutil_socket_t fd, short what, void *arg)
{
	struct control *ctl = arg;

	evconnlistener_enable(ctl->listener);
}

/* accept() failed. Out of descriptors (EMFILE, ENFILE) or memory, the
 * pending connection stays queued and the listener would fire again at
 * once: pause it instead of spinning. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
	struct control *ctl = arg;
	int e = EVUTIL_SOCKET_ERROR();
	struct timeval tv = { ACCEPT_PAUSE_MS / 1000, (ACCEPT_PAUSE_MS % 1000) * 1000 };

	if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
		log_warn("control: cannot accept a connection: %s; pausing for %d ms", strerror(e), ACCEPT_PAUSE_MS);
		evconnlistener_disable(l);
		event_add(ctl->accept_again, &tv);
	} else {
		log_debug("control: accept: %s", strerror(e));
	}
}

/* Bind path, replacing a stale socket but never a live one. */
static int bind_socket(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX }, tmp = { .sun_family = AF_UNIX };
	mode_t old;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return log_errno(LOG_ERR, ENAMETOOLONG, "control socket path %s", path);
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(fd);
		log_err("another p2p-peerd is running on %s", path);
		return -EADDRINUSE;
	}
	if (errno == ECONNREFUSED) {
		log_notice("replacing the stale control socket %s", path);
		unlink(path);
	}
	close(fd);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* Listen under a temporary name and link it into place, so the path
	 * appears only once it accepts (a client connecting between bind and
	 * listen was refused), and link() fails if another instance got there. */
	if ((size_t)snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%s.%d.tmp", path, (int)getpid()) >=
	    sizeof(tmp.sun_path))
		tmp = sa; /* no room for the suffix: bind in place */
	else
		unlink(tmp.sun_path);
	old = umask(0117); /* the socket is born 0660 */
	r = bind(fd, (struct sockaddr *)&tmp, sizeof(tmp));
	umask(old);
	if (r < 0 || listen(fd, 64) < 0) {
		r = log_errno(LOG_ERR, errno, "cannot listen on %s", tmp.sun_path);
		close(fd);
		return r;
	}
	if (strcmp(tmp.sun_path, path) != 0) {
		r = link(tmp.sun_path, path) < 0 ? -errno : 0;
		unlink(tmp.sun_path);
		if (r < 0) {
			close(fd);
			if (r == -EEXIST)
				log_err("another p2p-peerd is running on %s", path);
			else
				log_errno(LOG_ERR, -r, "cannot create %s", path);
			return r == -EEXIST ? -EADDRINUSE : r;
		}
	}
	return fd;
}

int control_start(struct peerd *p, const char *path, int fd, control_method *(*find)(const char *name),
		  struct control **out)
{
	struct control *ctl = calloc(1, sizeof(*ctl));

	if (!ctl)
		return -ENOMEM;
	ctl->p = p;
	ctl->find = find;
	if (fd < 0) {
		fd = bind_socket(path);
		if (fd < 0) {
			free(ctl);
			return fd;
		}
		ctl->path = strdup(path);
	} else {
		/* systemd passes it blocking; libevent accepts until EAGAIN, so a
		 * blocking socket would stall the whole loop after one client. */
		evutil_make_socket_nonblocking(fd);
		evutil_make_socket_closeonexec(fd);
	}
	socket_group(ctl->path, fd, true); /* warns now if there is no group to allow */
	ctl->accept_again = evtimer_new(p->base, on_accept_again, ctl);
	ctl->listener = ctl->accept_again ? evconnlistener_new(p->base, on_accept, ctl, LEV_OPT_CLOSE_ON_FREE, -1, fd)
					  : NULL;
	if (!ctl->listener) {
		close(fd);
		if (ctl->accept_again)
			event_free(ctl->accept_again);
		free(ctl->path);
		free(ctl);
		return -ENOMEM;
	}
	evconnlistener_set_error_cb(ctl->listener, on_accept_error);
	log_info("control socket %s", path ? path : "(passed by systemd)");
	*out = ctl;
	return 0;
}

void control_stop(struct control *ctl)
{
	if (!ctl)
		return;
	evconnlistener_free(ctl->listener);
	event_free(ctl->accept_again);
	while (ctl->clients)
		client_free(ctl->clients);
	if (ctl->path) {
		unlink(ctl->path);
		free(ctl->path);
	}
	free(ctl);
}
