/* SPDX-License-Identifier: MIT */
/* main.c — p2p-dird: options, configuration, the event loop, signals,
 * systemd notification, and the operator subcommands. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <systemd/sd-daemon.h>

#include "dird.h"
#include "log.h"
#include "notify.h"
#include "procmetrics.h"
#include "tls.h"
#include "validate.h"

#define DEFAULT_CONFIG SYSCONFDIR "/p2p/dird.json"
#define DEFAULT_DATABASE LOCALSTATEDIR "/lib/p2p/dird/dird.db"
#define EXIT_USAGE 2

static const struct conf_help key_help[] = {
	{ "listen", "ADDR:PORT to serve the REST API on (default 127.0.0.1:6970)" },
	{ "database", "SQLite database file (default " DEFAULT_DATABASE ") or postgresql:// URI" },
	{ "database_connections", "PostgreSQL connections each p2p-dird keeps at most (4)" },
	{ "workers", "threads answering requests beside the event loop; 0: none (4)" },
	{ "log_level", "err, warning, notice, info (default) or debug" },
	{ "registration", "yes/no: whether POST /register is open (default yes)" },
	{ "ttl", "seconds a peer stays in search results after its last index or heartbeat (90)" },
	{ "session_lifetime", "seconds a login token is valid (86400)" },
	{ "ticket_lifetime", "seconds a download ticket is valid (60)" },
	{ "max_body", "largest request body in bytes (8388608)" },
	{ "max_files", "files one peer may index at most; more: 413 (100000)" },
	{ "max_headers", "largest request line + headers in bytes (16384)" },
	{ "max_connections", "open client connections at most; more wait to be accepted (1024)" },
	{ "timeout", "seconds an idle or slow client connection is kept (30)" },
	{ "login_burst", "login attempts per user name before throttling (10)" },
	{ "login_interval", "seconds per login attempt regained after the burst (6)" },
	{ "register_burst", "registrations per source address before throttling (100)" },
	{ "register_interval", "seconds per registration regained after the burst (36)" },
	{ "proxy_protocol", "yes/no: connections start with a PROXY protocol v1/v2 header from trusted_proxies (no)" },
	{ "trusted_proxies", "addresses or ADDR/BITS blocks of proxies whose X-Forwarded-For is believed (none)" },
	{ "sweep_interval", "seconds between sweeps of expired sessions and tickets (60)" },
	{ "max_staleness", "PostgreSQL: seconds a replica may lag the database before searches answer 503 (5)" },
	{ "tls_certificate", "PEM certificate chain: serve HTTPS instead of HTTP (with tls_key)" },
	{ "tls_key", "PEM private key of tls_certificate" },
};

/* Command-line settings, applied over the config file (and again on reload). */
struct override {
	const char *key;
	const char *value;
};

static struct override overrides[64];
static size_t noverrides;

/* Build settings: defaults, then the file, then the command line. */
static int load_settings(const char *path, bool required, struct dird_settings *out)
{
	char err[CONF_ERRLEN];
	int r;

	dird_settings_defaults(out);
	if (path) {
		r = conf_load_file(dird_keys, out, path, err, sizeof(err));
		if (r == -ENOENT && !required) {
			log_debug("no config file %s; using defaults", path);
		} else if (r < 0) {
			log_err("%s", err);
			goto fail;
		}
	}
	for (size_t i = 0; i < noverrides; i++) {
		r = conf_apply_text(dird_keys, out, overrides[i].key, overrides[i].value, err, sizeof(err));
		if (r < 0) {
			log_err("%s", err);
			goto fail;
		}
	}
	if (dird_settings_check(out, err, sizeof(err)) < 0) {
		log_err("%s%s%s", path ? path : "", path ? ": " : "", err);
		goto fail;
	}
	return 0;
fail:
	conf_free(dird_keys, out);
	return -EINVAL;
}

/* The HTTPS context the settings ask for: *out stays NULL for plain HTTP. */
static int load_tls(const struct dird_settings *set, SSL_CTX **out)
{
	char err[CONF_ERRLEN];
	struct stat st;

	*out = NULL;
	if (!set->tls_certificate)
		return 0;
	if (tls_server_ctx_new(set->tls_certificate, set->tls_key, out, err, sizeof(err)) < 0) {
		log_err("tls_certificate/tls_key: %s", err);
		return -EINVAL;
	}
	if (stat(set->tls_key, &st) == 0 && (st.st_mode & S_IROTH))
		log_warn("tls_key: %s is readable by every user; chmod o-r it", set->tls_key);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: p2p-dird [OPTIONS]                  run the directory daemon\n"
		"       p2p-dird [OPTIONS] user add NAME    create a user (password read from stdin)\n"
		"       p2p-dird [OPTIONS] user del NAME    delete a user, its sessions and its files\n"
		"       p2p-dird [OPTIONS] user list        list users\n"
		"       p2p-dird [OPTIONS] peers            list peers online now\n"
		"       p2p-dird -d postgresql://... migrate FILE\n"
		"                                           copy the SQLite directory FILE into PostgreSQL\n"
		"\n"
		"Options:\n"
		"  -c, --config FILE       configuration file (default %s)\n"
		"  -n, --check             check the configuration and exit\n"
		"  -l, --listen ADDR:PORT  where to serve the REST API\n"
		"  -d, --database DB       SQLite database file or postgresql:// URI\n"
		"  -v, --verbose           log debug messages\n"
		"  -h, --help              show this help\n"
		"  -V, --version           show the version\n"
		"\n"
		"Every configuration key can also be given as an option, which wins over\n"
		"the file (write _ or -):\n",
		DEFAULT_CONFIG);
	conf_print_help(f, key_help, sizeof(key_help) / sizeof(key_help[0]));
	fprintf(f, "\nSee p2p-dird(8).\n");
}

/* ---- the daemon --------------------------------------------------------- */

static struct event *ev_sigterm, *ev_sigint, *ev_sighup, *ev_sweep, *ev_watchdog, *ev_drain;
static struct timeval drain_deadline;

/* Sweeping and counting may wait on a database server: then a worker does
 * it and the loop only publishes the result (the same rule as requests). */
struct status_job {
	struct pool_job job;
	struct dird *d;
	int64_t now, ttl;
	struct store_counts counts;
	int r;
};

static void status_run(struct pool_job *job)
{
	struct status_job *s = (struct status_job *)job;

	if (store_sweep(s->d->store, s->now) < 0)
		log_warn("sweeping expired sessions and tickets failed");
	s->r = store_counts(s->d->store, s->now - s->ttl, &s->counts);
}

static void status_done(struct pool_job *job)
{
	struct status_job *s = (struct status_job *)job;
	struct dird *d = s->d;

	if (s->r == 0) {
		d->counts = s->counts;
		notify_status("%lld users, %lld sessions, %lld peers online, %lld files indexed",
			      (long long)d->counts.users, (long long)d->counts.sessions,
			      (long long)d->counts.peers_online, (long long)d->counts.files_online);
	}
	d->status_busy = false;
	free(s);
}

static void status_discard(struct pool_job *job)
{
	free(job);
}

static void refresh_status(struct dird *d)
{
	struct status_job *s;
	bool held = false;

	if (d->status_busy)
		return; /* the last one has not finished yet */
	s = calloc(1, sizeof(*s));
	if (!s)
		return;
	*s = (struct status_job){ .job = { status_run, status_done, status_discard, NULL },
				  .d = d, .now = dird_now(), .ttl = d->set.ttl };
	d->status_busy = true;
	/* On SQLite it runs here unless a worker holds the store (storing a
	 * large index): then it waits on a worker, not on the loop. */
	if (d->pool) {
		held = !store_remote(d->store) && store_try_hold(d->store);
		if (!held && pool_submit(d->pool, &s->job))
			return;
	}
	status_run(&s->job);
	if (held)
		store_release(d->store);
	status_done(&s->job);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
	refresh_status(arg);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	notify_watchdog();
}

static void arm_sweep(struct dird *d)
{
	struct timeval tv = { .tv_sec = d->set.sweep_interval };

	event_del(ev_sweep);
	event_add(ev_sweep, &tv);
}

static void on_drain(evutil_socket_t fd, short what, void *arg)
{
	struct dird *d = arg;
	struct timeval now;

	evutil_gettimeofday(&now, NULL);
	if (d->connections <= 0 || evutil_timercmp(&now, &drain_deadline, >)) {
		if (d->connections > 0)
			log_notice("closing %d connection(s) still open at shutdown", d->connections);
		event_base_loopexit(d->base, NULL);
	}
}

static void on_terminate(evutil_socket_t sig, short what, void *arg)
{
	struct dird *d = arg;
	struct timeval tick = { 0, 50000 }, grace = { 5, 0 };

	if (d->stopping)
		return;
	log_info("received %s; finishing open requests", sig == SIGINT ? "SIGINT" : "SIGTERM");
	notify_stopping();
	d->stopping = true;
	/* No new connections; open ones get their answers with Connection: close. */
	if (d->listener)
		evconnlistener_disable(d->listener);
	evutil_gettimeofday(&drain_deadline, NULL);
	evutil_timeradd(&drain_deadline, &grace, &drain_deadline);
	ev_drain = event_new(d->base, -1, EV_PERSIST, on_drain, d);
	event_add(ev_drain, &tick);
	on_drain(-1, 0, d);
}

static void on_reload(evutil_socket_t sig, short what, void *arg)
{
	struct dird *d = arg;
	struct dird_settings fresh;
	SSL_CTX *tls = NULL;

	notify_reloading();
	log_info("received SIGHUP; reloading %s", d->config_path ? d->config_path : "(no config file)");
	if (load_settings(d->config_path, d->config_required, &fresh) < 0) {
		log_err("reload failed; keeping the running configuration");
		notify_ready();
		return;
	}
	/* HTTPS on or off needs a restart (the listener's protocol changes); new
	 * files for a running HTTPS listener are read now, and bad ones keep the
	 * old configuration whole. */
	if (!fresh.tls_certificate != !d->tls_ctx) {
		log_warn("TLS turned %s: takes effect at restart", fresh.tls_certificate ? "on" : "off");
		free(fresh.tls_certificate);
		free(fresh.tls_key);
		fresh.tls_certificate = d->set.tls_certificate ? strdup(d->set.tls_certificate) : NULL;
		fresh.tls_key = d->set.tls_key ? strdup(d->set.tls_key) : NULL;
	}
	if (load_tls(&fresh, &tls) < 0) {
		conf_free(dird_keys, &fresh);
		log_err("reload failed; keeping the running configuration");
		notify_ready();
		return;
	}
	if (tls) {
		SSL_CTX_free(d->tls_ctx); /* open connections hold their own reference */
		d->tls_ctx = tls;
	}
	if (strcmp(fresh.listen, d->set.listen) != 0)
		log_warn("listen changed to %s: takes effect at restart", fresh.listen);
	if (fresh.proxy_protocol != d->set.proxy_protocol)
		log_warn("proxy_protocol changed: takes effect at restart");
	if (strcmp(fresh.database, d->set.database) != 0 ||
	    fresh.database_connections != d->set.database_connections || fresh.workers != d->set.workers)
		log_warn("database, database_connections or workers changed: takes effect at restart");
	/* Keep what only a restart can change. */
	free(fresh.listen);
	fresh.listen = strdup(d->set.listen);
	free(fresh.database);
	fresh.database = strdup(d->set.database);
	fresh.database_connections = d->set.database_connections;
	fresh.workers = d->set.workers;
	fresh.proxy_protocol = d->set.proxy_protocol;
	conf_free(dird_keys, &d->set);
	d->set = fresh;
	log_set_level(log_level_from_name(d->set.log_level));
	api_apply_settings(d);
	store_replicate(d->store, (double)d->set.max_staleness);
	arm_sweep(d);
	log_info("configuration reloaded");
	notify_ready();
}

/* accept() failing for want of file descriptors (or memory) leaves the
 * connection in the backlog and the socket readable: libevent retries at
 * once, forever, at full CPU and one warning per try. Pause accepting for
 * 100 ms instead, and say so at most every 10 s. libevent passes the
 * listener's user data, which evhttp owns, so the daemon is kept here. */
static struct dird *accepting_dird;

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct dird *d = arg;

	if (d->listener && !d->listener_paused && !d->stopping)
		evconnlistener_enable(d->listener);
}

static void on_accept_error(struct evconnlistener *listener, void *arg)
{
	static const struct timeval pause = { 0, 100 * 1000 };
	static time_t last_said;
	struct dird *d = accepting_dird;
	int err = EVUTIL_SOCKET_ERROR();
	time_t now = time(NULL);

	if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) {
		log_errno(LOG_WARNING, err, "accept");
		return;
	}
	if (now - last_said >= 10) {
		log_errno(LOG_WARNING, err, "cannot accept connections; pausing accept");
		last_said = now;
	}
	evconnlistener_disable(listener);
	if (event_base_once(d->base, -1, EV_TIMEOUT, on_accept_resume, d, &pause) < 0)
		evconnlistener_enable(listener);
}

/* evhttp asks for each accepted connection's bufferevent: a TLS one when
 * HTTPS is on. Clients that hang up without close_notify are not errors. */
static struct bufferevent *tls_bufferevent(struct event_base *base, void *arg)
{
	struct dird *d = arg;
	SSL *ssl = SSL_new(d->tls_ctx);
	struct bufferevent *bev;

	if (!ssl) {
		log_warn("cannot start a TLS connection: out of memory");
		return NULL;
	}
	bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		SSL_free(ssl);
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

static struct bufferevent *proxy_bufferevent(struct event_base *base, void *arg)
{
	return proxyproto_bufferevent(base, arg);
}

static int open_listener(struct dird *d)
{
	int n = sd_listen_fds(1);
	evutil_socket_t fd;

	if (n < 0)
		return log_errno(LOG_ERR, n, "sd_listen_fds");
	if (n > 1) {
		log_err("systemd passed %d sockets; p2p-dird takes exactly one", n);
		return -EINVAL;
	}
	if (n == 1) {
		fd = SD_LISTEN_FDS_START;
		if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
			log_err("the socket passed by systemd is not a listening stream socket");
			return -EINVAL;
		}
		evutil_make_socket_nonblocking(fd);
		evutil_make_socket_closeonexec(fd);
		d->listener = evconnlistener_new(d->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE, -1, fd);
		if (!d->listener)
			return log_errno(LOG_ERR, errno, "cannot use the socket passed by systemd");
		log_info("listening on the socket passed by systemd");
	} else {
		struct sockaddr_storage ss;
		int len = sizeof(ss);

		evutil_parse_sockaddr_port(d->set.listen, (struct sockaddr *)&ss, &len);
		d->listener = evconnlistener_new_bind(d->base, NULL, NULL,
						      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
						      511, (struct sockaddr *)&ss, len);
		if (!d->listener)
			return log_errno(LOG_ERR, errno, "cannot listen on %s", d->set.listen);
		log_info("listening on %s", d->set.listen);
	}
	if (!evhttp_bind_listener(d->http, d->listener)) {
		log_err("evhttp_bind_listener failed");
		return -EIO;
	}
	if (d->set.proxy_protocol) {
		evhttp_set_bevcb(d->http, proxy_bufferevent, d);
		log_info("expecting the PROXY protocol from trusted_proxies");
	}
	if (d->tls_ctx) {
		int one = 1;

		/* TLS writes a response as several records; with Nagle the later ones
		 * wait for the client's delayed ACK (40 ms a request, measured). The
		 * accepted sockets inherit the option from the listening one. */
		if (setsockopt(evconnlistener_get_fd(d->listener), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
			log_errno(LOG_WARNING, errno, "TCP_NODELAY");
		evhttp_set_bevcb(d->http, tls_bufferevent, d);
		log_info("serving HTTPS with %s", d->set.tls_certificate);
	}
	accepting_dird = d;
	evconnlistener_set_error_cb(d->listener, on_accept_error);
	return 0;
}

/* evhttp_bind_listener() took the listener; evhttp_free() frees it. */
static int run_daemon(struct dird *d)
{
	char dbname[512];
	uint64_t wd;
	int r;

	{
		/* Coalesce the enable/disable pairs evhttp makes on each
		 * connection per request into fewer epoll_ctl calls (4 per
		 * request were a third of dird's syscall time under load). No
		 * socket here is dup()'d, which is the changelist's one caveat. */
		struct event_config *cfg = event_config_new();

		if (cfg)
			event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
		d->base = cfg ? event_base_new_with_config(cfg) : NULL;
		event_config_free(cfg);
	}
	if (!d->base)
		return -ENOMEM;
	r = store_open_pool(d->set.database, (unsigned)d->set.database_connections, &d->store);
	if (r < 0)
		goto out;
	r = store_replicate(d->store, (double)d->set.max_staleness);
	if (r < 0)
		goto out;
	r = api_init(d);
	if (r < 0)
		goto out;
	r = open_listener(d);
	if (r < 0)
		goto out;
	ev_sigterm = evsignal_new(d->base, SIGTERM, on_terminate, d);
	ev_sigint = evsignal_new(d->base, SIGINT, on_terminate, d);
	ev_sighup = evsignal_new(d->base, SIGHUP, on_reload, d);
	ev_sweep = evtimer_new(d->base, on_sweep, d);
	event_add(ev_sigterm, NULL);
	event_add(ev_sigint, NULL);
	event_add(ev_sighup, NULL);
	event_assign(ev_sweep, d->base, -1, EV_PERSIST, on_sweep, d);
	arm_sweep(d);
	wd = notify_watchdog_usec();
	if (wd) {
		struct timeval tv = { .tv_sec = (time_t)(wd / 2000000), .tv_usec = (suseconds_t)(wd / 2 % 1000000) };

		ev_watchdog = event_new(d->base, -1, EV_PERSIST, on_watchdog, d);
		event_add(ev_watchdog, &tv);
	}
	refresh_status(d);
	notify_ready();
	store_describe(d->set.database, dbname, sizeof(dbname));
	log_info("p2p-dird %s ready (database %s)", PACKAGE_VERSION, dbname);
	event_base_dispatch(d->base);
	log_info("stopped");
	r = 0;
out:
	if (ev_drain)
		event_free(ev_drain);
	if (ev_watchdog)
		event_free(ev_watchdog);
	if (ev_sweep)
		event_free(ev_sweep);
	if (ev_sighup)
		event_free(ev_sighup);
	if (ev_sigint)
		event_free(ev_sigint);
	if (ev_sigterm)
		event_free(ev_sigterm);
	api_free(d);
	store_close(d->store);
	event_base_free(d->base);
	SSL_CTX_free(d->tls_ctx);
	d->tls_ctx = NULL;
	return r;
}

/* ---- operator subcommands ----------------------------------------------- */

static int read_password(char *buf, size_t len)
{
	struct termios old, quiet;
	bool tty = isatty(STDIN_FILENO);
	size_t n;

	if (tty) {
		fprintf(stderr, "Password: ");
		tcgetattr(STDIN_FILENO, &old);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	if (!fgets(buf, (int)len, stdin))
		buf[0] = '\0';
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	n = strlen(buf);
	if (n && buf[n - 1] == '\n')
		buf[--n] = '\0';
	if (n && buf[n - 1] == '\r')
		buf[--n] = '\0';
	return n ? 0 : -EINVAL;
}

static int print_user(const char *name, int64_t created, int64_t unused, void *ctx)
{
	char when[32];
	time_t t = (time_t)created;
	struct tm tm;

	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", gmtime_r(&t, &tm));
	printf("%-32s %s UTC\n", name, when);
	return 0;
}

static int print_peer(const char *name, int64_t last_seen, int64_t nfiles, void *ctx)
{
	printf("%-32s %8lld files   last seen %llds ago\n", name, (long long)nfiles,
	       (long long)(dird_now() - last_seen));
	return 0;
}

static int run_command(struct dird *d, int argc, char **argv)
{
	struct store *st;
	char password[1100];
	char *hash = NULL;
	int r;

	if (!strcmp(argv[0], "user") && argc == 3 && (!strcmp(argv[1], "add") || !strcmp(argv[1], "del"))) {
		if (!valid_username(argv[2])) {
			log_err("\"%s\" is not a valid user name (1-64 of A-Z a-z 0-9 _ . -)", argv[2]);
			return EXIT_USAGE;
		}
	} else if (!strcmp(argv[0], "migrate") && argc == 2) {
#ifdef HAVE_POSTGRESQL
		return dird_migrate(argv[1], d->set.database) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
#else
		log_err("this p2p-dird was built without PostgreSQL (configure --with-postgresql)");
		return EXIT_FAILURE;
#endif
	} else if (!(!strcmp(argv[0], "user") && argc == 2 && !strcmp(argv[1], "list")) &&
		   !(!strcmp(argv[0], "peers") && argc == 1)) {
		log_err("unknown command; try p2p-dird --help");
		return EXIT_USAGE;
	}
	if (store_open(d->set.database, &st) < 0)
		return EXIT_FAILURE;
	if (!strcmp(argv[0], "peers")) {
		r = store_peers_online(st, dird_now() - d->set.ttl, print_peer, NULL);
	} else if (!strcmp(argv[1], "list")) {
		r = store_user_list(st, print_user, NULL);
	} else if (!strcmp(argv[1], "del")) {
		r = store_user_delete(st, argv[2]);
		if (r == -ENOENT)
			log_err("no user \"%s\"", argv[2]);
		else if (r == 0)
			log_info("deleted user %s", argv[2]);
	} else {
		if (read_password(password, sizeof(password)) < 0) {
			log_err("no password on standard input");
			r = -EINVAL;
		} else if (strlen(password) > 1024) {
			log_err("the password is longer than 1024 bytes");
			r = -EINVAL;
		} else if ((r = auth_hash_password(password, &hash)) == 0) {
			r = store_user_create(st, argv[2], hash, dird_now());
			if (r == -EEXIST)
				log_err("user \"%s\" already exists", argv[2]);
			else if (r == 0)
				log_info("created user %s", argv[2]);
		}
		explicit_bzero(password, sizeof(password));
		free(hash);
	}
	store_close(st);
	return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

struct args {
	const char *config;
	bool check, verbose;
};

/* Parse the command line into args and overrides. Returns 0 to go on,
 * or an exit status (help, version, usage error) + 1000. */
static int parse_args(int argc, char **argv, struct args *a)
{
	static const struct option fixed[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'n' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
	};
	struct option *longopts = conf_long_options(dird_keys, fixed, sizeof(fixed) / sizeof(fixed[0]), 1000);
	int c, r = 0;

	if (!longopts)
		return 1000 + EXIT_FAILURE;
	/* '+': stop at the first non-option, the subcommand. */
	while (r == 0 && (c = getopt_long(argc, argv, "+c:nl:d:vhV", longopts, NULL)) != -1) {
		const char *key = NULL;

		switch (c) {
		case 'c': a->config = optarg; break;
		case 'n': a->check = true; break;
		case 'v': a->verbose = true; break;
		case 'h': usage(stdout); r = 1000 + EXIT_SUCCESS; break;
		case 'V': printf("p2p-dird %s\n", PACKAGE_VERSION); r = 1000 + EXIT_SUCCESS; break;
		case 'l': key = "listen"; break;
		case 'd': key = "database"; break;
		default:
			if (c >= 1000) {
				key = dird_keys[c - 1000].name;
				break;
			}
			usage(stderr);
			r = 1000 + EXIT_USAGE;
		}
		if (key) {
			if (noverrides == sizeof(overrides) / sizeof(overrides[0])) {
				log_err("too many options");
				r = 1000 + EXIT_USAGE;
				break;
			}
			overrides[noverrides++] = (struct override){ key, optarg };
		}
	}
	conf_long_options_free(longopts, dird_keys, 1000);
	return r;
}

int main(int argc, char **argv)
{
	static struct dird d;
	struct args a = { 0 };
	int r;

	log_init(argv[0]);
	procmetrics_init();
	signal(SIGPIPE, SIG_IGN);
	r = parse_args(argc, argv, &a);
	if (r)
		return r - 1000;
	d.config_path = a.config ? a.config : DEFAULT_CONFIG;
	d.config_required = a.config != NULL;
	if (load_settings(d.config_path, d.config_required, &d.set) < 0)
		return EXIT_USAGE;
	log_set_level(a.verbose ? LOG_DEBUG : log_level_from_name(d.set.log_level));
	if (optind >= argc && load_tls(&d.set, &d.tls_ctx) < 0) {
		conf_free(dird_keys, &d.set);
		return EXIT_USAGE;
	}
	if (a.check) {
		SSL_CTX_free(d.tls_ctx);
		printf("configuration OK\n");
		conf_free(dird_keys, &d.set);
		return EXIT_SUCCESS;
	}
	if (optind < argc)
		r = run_command(&d, argc - optind, argv + optind);
	else
		r = run_daemon(&d) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
	conf_free(dird_keys, &d.set);
	return r;
}
