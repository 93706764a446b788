/* main.c — p2p-peerd: options and configuration, the session with the
 * directory (login, index, heartbeats, re-login), socket activation,
 * signals and systemd notification. Serving files is rpc.c's job. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <grpc/grpc.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "notify.h"
#include "peerd.h"

#define EXIT_USAGE 2
#define PEERS_DIR SYSCONFDIR "/p2p/peers"
#define RETRY_BASE_S 1.0 /* first wait after the directory is found unreachable */

#define KEY(name, type, field, min, max) { name, type, offsetof(struct peerd_settings, field), min, max }
const struct conf_key peerd_keys[] = {
	KEY("username", CONF_STRING, username, 0, 0),
	KEY("password_file", CONF_STRING, password_file, 0, 0),
	KEY("directory", CONF_STRING, directory, 0, 0),
	KEY("folder", CONF_STRING, folder, 0, 0),
	KEY("ip", CONF_STRING, ip, 0, 0),
	KEY("port", CONF_INT, port, 1, 65535),
	KEY("listen", CONF_STRING, listen, 0, 0),
	KEY("state_dir", CONF_STRING, state_dir, 0, 0),
	KEY("control_socket", CONF_STRING, control_socket, 0, 0),
	KEY("log_level", CONF_STRING, log_level, 0, 0),
	KEY("status", CONF_STRING, status, 0, 0),
	KEY("files", CONF_STRLIST, files, 0, 0),
	KEY("heartbeat", CONF_INT, heartbeat, 1, 3600),
	KEY("max_message", CONF_INT, max_message, 1024, 64LL << 20),
	KEY("chunk_size", CONF_INT, chunk_size, 4096, 4LL << 20),
	KEY("upload_rate", CONF_INT, upload_rate, 0, 1LL << 40),
	KEY("download_rate", CONF_INT, download_rate, 0, 1LL << 40),
	KEY("retry_max", CONF_INT, retry_max, 1, 3600),
	KEY("download_progress_bytes", CONF_INT, download_progress_bytes, 1, 1LL << 30),
	KEY("download_progress_interval", CONF_INT, download_progress_interval, 1, 3600),
	KEY("directory_ca", CONF_STRING, directory_ca, 0, 0),
	KEY("tls_certificate", CONF_STRING, tls_certificate, 0, 0),
	KEY("tls_key", CONF_STRING, tls_key, 0, 0),
	KEY("tls_ca", CONF_STRING, tls_ca, 0, 0),
	{ NULL, 0, 0, 0, 0 },
};

static const struct conf_help key_help[] = {
	{ "username", "user name at the directory (the seed's \"username\")" },
	{ "password_file", "file whose first line is the password, read at login" },
	{ "directory", "URL of p2p-dird (default http://127.0.0.1:6970)" },
	{ "folder", "the shared folder (required)" },
	{ "ip", "address other peers reach this one at (default: the directory sees it)" },
	{ "port", "gRPC port advertised and, without --listen, bound (default 50001)" },
	{ "listen", "ADDR:PORT to serve gRPC on (default 0.0.0.0:PORT)" },
	{ "state_dir", "where the peer keeps its state" },
	{ "control_socket", "path of the control socket for p2pctl (default with --name: " RUNSTATEDIR "/p2p/NAME.sock)" },
	{ "log_level", "err, warning, notice, info (default) or debug" },
	{ "files", "comma-separated allow-list of shared names (default: every regular file)" },
	{ "heartbeat", "seconds between heartbeats to the directory (default 30)" },
	{ "max_message", "largest file DownloadFile sends in one message, bytes (default 4194304)" },
	{ "chunk_size", "bytes per Read chunk (default 262144)" },
	{ "upload_rate", "most bytes/s served to other peers, all together (default 0: unlimited)" },
	{ "download_rate", "most bytes/s received by all downloads together (default 0: unlimited)" },
	{ "retry_max", "longest wait, seconds, between tries while the directory is unreachable (default 60)" },
	{ "download_progress_bytes", "a download drops a source that delivers fewer bytes than this ... (default 65536)" },
	{ "download_progress_interval", "... per this many seconds of waiting for it (default 10)" },
	{ "directory_ca", "PEM CA certificates an https directory is checked against (default: the system's)" },
	{ "tls_certificate", "PEM certificate chain: serve and download over gRPC with TLS (with tls_key)" },
	{ "tls_key", "PEM private key of tls_certificate" },
	{ "tls_ca", "PEM CA of the peers' certificates: mutual TLS (default: gRPC's roots, no client certificates)" },
};

static void settings_defaults(struct peerd_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->directory = strdup("http://127.0.0.1:6970");
	s->log_level = strdup("info");
	s->port = 0; /* unset: bind 50001 and advertise what is bound */
	s->heartbeat = 30;
	s->max_message = 4 << 20;
	s->chunk_size = 256 << 10;
	s->retry_max = 60;
	s->download_progress_bytes = DOWNLOAD_PROGRESS_BYTES;
	s->download_progress_interval = DOWNLOAD_PROGRESS_INTERVAL;
}

static int settings_check(const struct peerd_settings *s, char *err, size_t len)
{
	struct evhttp_uri;

	if (!s->folder || !*s->folder) {
		snprintf(err, len, "folder: the shared folder must be set");
		return -EINVAL;
	}
	if (s->username && !valid_username(s->username)) {
		snprintf(err, len, "username: \"%s\" is not 1-64 of A-Z a-z 0-9 _ . -", s->username);
		return -EINVAL;
	}
	if (!s->directory || (strncmp(s->directory, "http://", 7) != 0 && strncmp(s->directory, "https://", 8) != 0)) {
		snprintf(err, len, "directory: \"%s\" must be an http:// or https:// URL", s->directory ? s->directory : "");
		return -EINVAL;
	}
	if (s->directory_ca && strncmp(s->directory, "https://", 8) != 0) {
		snprintf(err, len, "directory_ca: only used with an https:// directory, not %s", s->directory);
		return -EINVAL;
	}
	if (!s->tls_certificate != !s->tls_key) {
		snprintf(err, len, "%s: set tls_certificate and tls_key together for gRPC over TLS",
			 s->tls_certificate ? "tls_key" : "tls_certificate");
		return -EINVAL;
	}
	if (s->tls_ca && !s->tls_certificate) {
		snprintf(err, len, "tls_ca: needs tls_certificate and tls_key (mutual TLS between peers)");
		return -EINVAL;
	}
	if (log_level_from_name(s->log_level ? s->log_level : "") < 0) {
		snprintf(err, len, "log_level: \"%s\" is not one of err, warning, notice, info, debug", s->log_level);
		return -EINVAL;
	}
	for (size_t i = 0; i < s->files.n; i++)
		if (!valid_filename(s->files.v[i], strlen(s->files.v[i]))) {
			snprintf(err, len, "files: \"%s\" is not a valid file name", s->files.v[i]);
			return -EINVAL;
		}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: p2p-peerd [OPTIONS]\n"
		"\n"
		"Serve a folder to other peers over gRPC and keep a session with the\n"
		"p2p directory.\n"
		"\n"
		"Options:\n"
		"  -c, --config FILE   configuration file (default with --name: %s/NAME.json)\n"
		"  -N, --name NAME     instance name\n"
		"  -n, --check         check the configuration and exit\n"
		"  -v, --verbose       log debug messages\n"
		"  -h, --help          show this help\n"
		"  -V, --version       show the version\n"
		"\n"
		"Every configuration key is also an option, which wins over the file:\n",
		PEERS_DIR);
	conf_print_help(f, key_help, sizeof(key_help) / sizeof(key_help[0]));
	fprintf(f, "\nSee p2p-peerd(8).\n");
}

/* ---- the session with the directory ------------------------------------- */

static int read_password(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return log_errno(LOG_ERR, errno, "cannot read the password file %s", path);
	if (!fgets(buf, (int)len, f))
		buf[0] = '\0';
	fclose(f);
	n = strcspn(buf, "\r\n");
	buf[n] = '\0';
	return n ? 0 : -EINVAL;
}

int directory_index(struct peerd *p)
{
	struct json_object *body = json_object_new_object(), *reply = NULL;
	char token[SHA256_HEX_LEN + 1];
	int status;

	pthread_mutex_lock(&p->session.lock);
	snprintf(token, sizeof(token), "%s", p->session.token);
	pthread_mutex_unlock(&p->session.lock);
	if (!*token) {
		json_object_put(body);
		return -ENOTCONN;
	}
	if (p->set.ip)
		json_object_object_add(body, "ip", json_object_new_string(p->set.ip));
	json_object_object_add(body, "port", json_object_new_int(p->grpc_port));
	json_object_object_add(body, "folder", json_object_new_string(p->set.folder));
	json_object_object_add(body, "files", share_to_json(&p->share));
	status = dir_call(p->set.directory, "POST", "/index", token, body, &reply, 30);
	json_object_put(body);
	json_object_put(reply);
	if (status != 200) {
		if (status)
			log_warn("indexing at %s failed (HTTP %d)", p->set.directory, status);
		return status == 401 ? -EACCES : status == 0 ? -EHOSTUNREACH : -EIO;
	}
	log_info("indexed %zu file(s) at %s", p->share.n, p->set.directory);
	return 0;
}

int directory_login_as(struct peerd *p, const char *user, const char *password, int *status_out,
		       struct json_object **reply_out)
{
	struct json_object *body, *reply = NULL, *v;
	int status, r;

	body = json_object_new_object();
	json_object_object_add(body, "username", json_object_new_string(user));
	json_object_object_add(body, "password", json_object_new_string(password));
	status = dir_call(p->set.directory, "POST", "/login", NULL, body, &reply, 30);
	json_object_put(body);
	if (status_out)
		*status_out = status;
	if (status != 200 || !json_object_object_get_ex(reply, "token", &v) ||
	    !valid_sha256_hex(json_object_get_string(v))) {
		if (reply_out)
			*reply_out = reply;
		else
			json_object_put(reply);
		if (status != 0)
			log_err("login as %s at %s failed (HTTP %d)", user, p->set.directory, status);
		return status == 0 ? -EHOSTUNREACH : -EACCES;
	}
	pthread_mutex_lock(&p->session.lock);
	snprintf(p->session.token, sizeof(p->session.token), "%s", json_object_get_string(v));
	snprintf(p->session.username, sizeof(p->session.username), "%s", user);
	pthread_mutex_unlock(&p->session.lock);
	if (reply_out)
		*reply_out = reply;
	else
		json_object_put(reply);
	log_info("logged in as %s at %s", user, p->set.directory);
	r = directory_index(p);
	if (r == 0 && p->continue_pending) {
		p->continue_pending = false;
		download_continue_saved(p);
	}
	return r;
}

static int directory_login(struct peerd *p)
{
	char password[1100];
	int r;

	if (!p->set.username || !p->set.password_file) {
		log_notice("no username and password_file configured: waiting for a login on the control socket");
		return -ENOKEY;
	}
	if (read_password(p->set.password_file, password, sizeof(password)) < 0)
		return -EINVAL;
	r = directory_login_as(p, p->set.username, password, NULL, NULL);
	explicit_bzero(password, sizeof(password));
	return r;
}

void update_status(struct peerd *p)
{
	bool in;

	pthread_mutex_lock(&p->session.lock);
	in = p->session.token[0] != '\0';
	pthread_mutex_unlock(&p->session.lock);
	if (in)
		notify_status("logged in as %s, sharing %zu file(s), gRPC port %d", p->session.username,
			      p->share.n, p->grpc_port);
	else
		notify_status("not logged in, sharing %zu file(s), gRPC port %d", p->share.n, p->grpc_port);
}

/* One round with the directory: log in when we have no session (and can
 * do it ourselves), else heartbeat; re-login when it forgot the session,
 * re-index when it asks or when it has just come back. -EHOSTUNREACH while
 * it cannot be reached, -EAGAIN when it answers with a server error. */
static int directory_round(struct peerd *p, bool was_away)
{
	char token[SHA256_HEX_LEN + 1];
	int status, r = 0;

	pthread_mutex_lock(&p->session.lock);
	snprintf(token, sizeof(token), "%s", p->session.token);
	pthread_mutex_unlock(&p->session.lock);
	if (!*token)
		return p->set.username && p->set.password_file ? directory_login(p) : 0;
	status = dir_call(p->set.directory, "POST", "/heartbeat", token, NULL, NULL, 10);
	if (status == 0)
		return -EHOSTUNREACH;
	if (status == 401) {
		pthread_mutex_lock(&p->session.lock);
		p->session.token[0] = '\0';
		pthread_mutex_unlock(&p->session.lock);
		r = p->set.username && p->set.password_file ? directory_login(p) : 0;
	} else if (status == 409 || (status == 200 && was_away)) {
		/* Away longer than the directory's TTL, or a restored database:
		 * say again what we share. */
		r = directory_index(p);
	} else if (status != 200) {
		log_warn("heartbeat to %s failed (HTTP %d)", p->set.directory, status);
		if (status >= 500)
			r = -EAGAIN;
	}
	return r;
}

/* The directory cannot be reached: try again after an exponential backoff
 * with jitter, capped, instead of at the next heartbeat. */
static void directory_away(struct peerd *p)
{
	uint32_t rnd = 0;
	double delay;
	struct timeval tv;

	p->dir_failures++;
	crypto_random(&rnd, sizeof(rnd));
	delay = backoff_delay(p->dir_failures, RETRY_BASE_S, (double)p->set.retry_max, rnd / 4294967296.0);
	if (p->dir_failures == 1)
		log_warn("the directory %s cannot be reached; retrying (backoff up to %llds)", p->set.directory,
			 p->set.retry_max);
	else
		log_debug("the directory is still unreachable (attempt %u); next try in %.1fs", p->dir_failures, delay);
	tv.tv_sec = (time_t)delay;
	tv.tv_usec = (suseconds_t)((delay - (double)tv.tv_sec) * 1e6);
	event_add(p->ev_retry, &tv);
	notify_status("the directory %s is unreachable; retrying", p->set.directory);
}

static void directory_attempt(struct peerd *p)
{
	bool was_away = p->dir_failures > 0;
	int r = directory_round(p, was_away);

	/* A directory that answers with a server error, or that is back but
	 * failed to take the re-index, is not back yet: retry with backoff
	 * (else the re-index would wait for the next 409). */
	if (r == -EHOSTUNREACH || r == -EAGAIN || (was_away && r == -EIO)) {
		directory_away(p);
		return;
	}
	if (was_away)
		log_notice("the directory %s is back (after %u attempt(s))", p->set.directory, p->dir_failures);
	p->dir_failures = 0;
	update_status(p);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	directory_attempt(arg);
}

/* Heartbeat; re-login and re-index when the directory lost us. While it
 * is away, the retry timer does this instead. */
static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
	struct peerd *p = arg;

	if (p->dir_failures == 0)
		directory_attempt(p);
}

void directory_logout(struct peerd *p)
{
	char token[SHA256_HEX_LEN + 1];

	pthread_mutex_lock(&p->session.lock);
	snprintf(token, sizeof(token), "%s", p->session.token);
	p->session.token[0] = '\0';
	pthread_mutex_unlock(&p->session.lock);
	if (*token && dir_call(p->set.directory, "POST", "/logout", token, NULL, NULL, 5) == 200)
		log_info("logged out of %s", p->set.directory);
}

/* ---- signals and sockets ------------------------------------------------- */

static void on_terminate(evutil_socket_t sig, short what, void *arg)
{
	struct peerd *p = arg;

	log_info("received %s; stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
	p->stopping = true; /* running transfers stay listed, to continue at the next start */
	notify_stopping();
	event_base_loopexit(p->base, NULL);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
	struct peerd *p = arg;

	log_info("received SIGHUP; re-scanning %s", p->set.folder);
	if (share_scan(&p->share, &p->set.files) >= 0)
		directory_index(p);
	update_status(p);
}

/* The folder changed: wait for quiet (0.5 s), then re-scan and re-index. */
static void on_settled(evutil_socket_t fd, short what, void *arg)
{
	struct peerd *p = arg;
	char token[SHA256_HEX_LEN + 1];

	if (share_scan(&p->share, &p->set.files) < 0)
		return;
	pthread_mutex_lock(&p->session.lock);
	snprintf(token, sizeof(token), "%s", p->session.token);
	pthread_mutex_unlock(&p->session.lock);
	if (*token)
		directory_index(p);
	update_status(p);
}

static void on_inotify(evutil_socket_t fd, short what, void *arg)
{
	struct peerd *p = arg;
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	struct timeval quiet = { 0, 500000 };
	bool relevant = false;
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		for (char *q = buf; q < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)q;

			/* Our own partial downloads are not the folder's content. */
			if (!(ev->len && strcmp(ev->name, ".p2p-partial") == 0))
				relevant = true;
			q += sizeof(*ev) + ev->len;
		}
	if (relevant)
		event_add(p->ev_settle, &quiet); /* re-arming restarts the wait */
}

static void watch_folder(struct peerd *p)
{
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);

	if (fd < 0 || inotify_add_watch(fd, p->set.folder, IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM |
					IN_DELETE | IN_CREATE | IN_ATTRIB | IN_ONLYDIR) < 0) {
		log_errno(LOG_WARNING, errno, "cannot watch %s; re-index with p2pctl index or SIGHUP", p->set.folder);
		if (fd >= 0)
			close(fd);
		return;
	}
	p->inotify_fd = fd;
	p->ev_inotify = event_new(p->base, fd, EV_READ | EV_PERSIST, on_inotify, p);
	p->ev_settle = evtimer_new(p->base, on_settled, p);
	event_add(p->ev_inotify, NULL);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	notify_watchdog();
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	struct peerd *p = arg;
	int one = 1;

	evutil_make_socket_nonblocking(fd);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	rpc_add_fd(p->rpc, fd);
}

/* Sockets from systemd: the gRPC one (named "grpc", or the only unnamed
 * one) and the control socket (named "control"). */
static void activated_sockets(int *grpc_fd, int *control_fd)
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names);

	*grpc_fd = *control_fd = -1;
	for (int i = 0; i < n; i++) {
		const char *name = names && names[i] ? names[i] : "";

		if (strcmp(name, "control") == 0)
			*control_fd = SD_LISTEN_FDS_START + i;
		else if (*grpc_fd < 0 && (strcmp(name, "grpc") == 0 || n == 1 || strcmp(name, "unknown") == 0))
			*grpc_fd = SD_LISTEN_FDS_START + i;
		if (names)
			free(names[i]);
	}
	free(names);
}

static int run(struct peerd *p)
{
	char listen_buf[300];
	const char *listen;
	int afd, cfd, r;
	uint64_t wd;
	struct timeval beat = { .tv_sec = p->set.heartbeat };

	activated_sockets(&afd, &cfd);
	if (afd >= 0 && peer_tls_enabled()) {
		/* gRPC 1.51 adopts accepted fds with insecure credentials only. */
		log_err("tls_certificate: gRPC over TLS cannot serve the socket passed by systemd "
			"(grpc_server_add_channel_from_fd is plain-text only); let p2p-peerd bind its own port");
		return -EINVAL;
	}
	p->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	p->base = event_base_new();
	if (!p->base)
		return -ENOMEM;
	r = share_open(&p->share, p->set.folder, p->set.state_dir);
	if (r < 0)
		return r;
	if (share_scan(&p->share, &p->set.files) < 0)
		return -EIO;
	if (p->set.listen) {
		listen = p->set.listen;
	} else {
		snprintf(listen_buf, sizeof(listen_buf), "0.0.0.0:%lld", p->set.port ? p->set.port : 50001);
		listen = listen_buf;
	}
	p->tc.directory = p->set.directory;
	p->tc.session = &p->session;
	grpc_init();
	r = rpc_start(&p->rpc, afd >= 0 ? NULL : listen, &p->share, &p->tc, p->set.max_message,
		      p->set.chunk_size, p->set.upload_rate, &p->grpc_port);
	/* A burst of one 64 KiB slice at most, so a limit holds from the start. */
	ratelimit_init(&p->download_limit.rl, (double)p->set.download_rate,
		       p->set.download_rate < (64 << 10) ? (double)p->set.download_rate : (double)(64 << 10), mono_now());
	if (r < 0)
		return r;
	if (afd >= 0) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);

		evutil_make_socket_nonblocking(afd);
		p->activated = evconnlistener_new(p->base, on_accept, p, LEV_OPT_CLOSE_ON_FREE, -1, afd);
		if (!p->activated)
			return log_errno(LOG_ERR, errno, "cannot use the gRPC socket passed by systemd");
		if (getsockname(afd, (struct sockaddr *)&ss, &sl) == 0)
			p->grpc_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
								      : ((struct sockaddr_in *)&ss)->sin_port);
		log_info("serving gRPC on the socket passed by systemd (port %d)", p->grpc_port);
	} else {
		log_info("serving gRPC%s on %s (port %d)", peer_tls_enabled() ? " over TLS" : "", listen, p->grpc_port);
		/* Behind NAT or a proxy the port others reach differs from the
		 * one bound: a configured port is what the directory is told. */
		if (p->set.listen && p->set.port && p->set.port != p->grpc_port) {
			p->grpc_port = (int)p->set.port;
			log_info("advertising gRPC port %d", p->grpc_port);
		}
	}
	if (cfd >= 0 || p->set.control_socket) {
		r = control_start(p, cfd >= 0 ? NULL : p->set.control_socket, cfd, &p->control);
		if (r < 0)
			return r;
	} else {
		log_notice("no control socket (give --control-socket or --name)");
	}
	watch_folder(p);
	p->continue_pending = true;
	p->ev_retry = evtimer_new(p->base, on_retry, p);
	if (directory_login(p) == -EHOSTUNREACH)
		directory_away(p);
	p->ev_term = evsignal_new(p->base, SIGTERM, on_terminate, p);
	p->ev_int = evsignal_new(p->base, SIGINT, on_terminate, p);
	p->ev_hup = evsignal_new(p->base, SIGHUP, on_hup, p);
	p->ev_beat = event_new(p->base, -1, EV_PERSIST, on_heartbeat, p);
	event_add(p->ev_term, NULL);
	event_add(p->ev_int, NULL);
	event_add(p->ev_hup, NULL);
	event_add(p->ev_beat, &beat);
	wd = notify_watchdog_usec();
	if (wd) {
		struct timeval tv = { .tv_sec = (time_t)(wd / 2000000), .tv_usec = (suseconds_t)(wd / 2 % 1000000) };

		p->ev_watchdog = event_new(p->base, -1, EV_PERSIST, on_watchdog, p);
		event_add(p->ev_watchdog, &tv);
	}
	update_status(p);
	notify_ready();
	event_base_dispatch(p->base);
	directory_logout(p);
	return 0;
}

static void cleanup(struct peerd *p)
{
	control_stop(p->control);
	download_free_all(p);
	if (p->activated)
		evconnlistener_free(p->activated);
	rpc_stop(p->rpc);
	if (p->rpc)
		grpc_shutdown_blocking();
	struct event *evs[] = { p->ev_term, p->ev_int, p->ev_hup, p->ev_beat, p->ev_watchdog, p->ev_inotify,
				p->ev_settle, p->ev_retry };
	for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
		if (evs[i])
			event_free(evs[i]);
	if (p->base)
		event_base_free(p->base);
	if (p->inotify_fd > 0)
		close(p->inotify_fd);
	if (p->wake_fd > 0)
		close(p->wake_fd);
	share_close(&p->share);
	peer_tls_free();
	pthread_mutex_destroy(&p->session.lock);
	pthread_mutex_destroy(&p->download_limit.lock);
	conf_free(peerd_keys, &p->set);
}

int main(int argc, char **argv)
{
	static const struct option fixed[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "name", required_argument, NULL, 'N' },
		{ "check", no_argument, NULL, 'n' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
	};
	static struct peerd p;
	struct { const char *key, *value; } overrides[64];
	size_t noverrides = 0;
	const char *config = NULL, *name = NULL;
	char path[4096], err[CONF_ERRLEN];
	bool check = false, verbose = false, required = true;
	struct option *longopts;
	int c, r = 0;

	log_init(argv[0]);
	signal(SIGPIPE, SIG_IGN);
	p.share.dirfd = -1;
	p.wake_fd = -1;
	pthread_mutex_init(&p.session.lock, NULL);
	pthread_mutex_init(&p.download_limit.lock, NULL);
	longopts = conf_long_options(peerd_keys, fixed, sizeof(fixed) / sizeof(fixed[0]), 1000);
	if (!longopts)
		return EXIT_FAILURE;
	while (r == 0 && (c = getopt_long(argc, argv, "c:N:nvhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': config = optarg; break;
		case 'N': name = optarg; break;
		case 'n': check = true; break;
		case 'v': verbose = true; break;
		case 'h': usage(stdout); r = 1000; break;
		case 'V': printf("p2p-peerd %s\n", PACKAGE_VERSION); r = 1000; break;
		default:
			if (c >= 1000 && noverrides < sizeof(overrides) / sizeof(overrides[0])) {
				overrides[noverrides].key = peerd_keys[c - 1000].name;
				overrides[noverrides++].value = optarg;
				break;
			}
			usage(stderr);
			r = 1000 + EXIT_USAGE;
		}
	}
	conf_long_options_free(longopts, peerd_keys, 1000);
	if (r)
		return r - 1000;
	if (optind < argc) {
		log_err("unexpected argument \"%s\"; try p2p-peerd --help", argv[optind]);
		return EXIT_USAGE;
	}
	if (name && !valid_username(name)) {
		log_err("--name: \"%s\" is not 1-64 of A-Z a-z 0-9 _ . -", name);
		return EXIT_USAGE;
	}
	settings_defaults(&p.set);
	if (!config && name) {
		snprintf(path, sizeof(path), "%s/%s.json", PEERS_DIR, name);
		config = path;
		required = false;
	}
	if (config) {
		r = conf_load_file(peerd_keys, &p.set, config, err, sizeof(err));
		if (r < 0 && !(r == -ENOENT && !required)) {
			log_err("%s", err);
			goto usage_error;
		}
	}
	for (size_t i = 0; i < noverrides; i++)
		if (conf_apply_text(peerd_keys, &p.set, overrides[i].key, overrides[i].value, err, sizeof(err)) < 0) {
			log_err("%s", err);
			goto usage_error;
		}
	if (!p.set.username && name)
		p.set.username = strdup(name);
	if (!p.set.control_socket && name) {
		char sock[512];

		snprintf(sock, sizeof(sock), "%s/p2p/%s.sock", RUNSTATEDIR, name);
		p.set.control_socket = strdup(sock);
	}
	if (!p.set.state_dir && name) {
		char dir[512];

		snprintf(dir, sizeof(dir), "%s/lib/p2p/peers/%s", LOCALSTATEDIR, name);
		p.set.state_dir = strdup(dir);
	}
	p.name = name;
	if (settings_check(&p.set, err, sizeof(err)) < 0) {
		log_err("%s%s%s", config ? config : "", config ? ": " : "", err);
		goto usage_error;
	}
	if (peer_tls_setup(&p.set, err, sizeof(err)) < 0) {
		log_err("%s", err);
		goto usage_error;
	}
	log_set_level(verbose ? LOG_DEBUG : log_level_from_name(p.set.log_level));
	if (check) {
		printf("configuration OK\n");
		cleanup(&p);
		return EXIT_SUCCESS;
	}
	r = run(&p);
	cleanup(&p);
	return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
usage_error:
	cleanup(&p);
	return EXIT_USAGE;
}
