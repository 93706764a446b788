/* SPDX-License-Identifier: MIT */
/* main.c — p2p-peerd: options and configuration files, then each module
 * started in order (share, dirclient, session, rpc, metrics, transfers,
 * watch, control), signals, systemd notification and socket activation, then the
 * one event loop; at the end the modules stop in reverse. It owns no state
 * of its own beyond that wiring (see each module's opening comment). */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <grpc/grpc.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "peerd.h"

#define EXIT_USAGE 2
#define PEERS_DIR SYSCONFDIR "/p2p/peers"

/* ---- signals and sockets ------------------------------------------------- */

static void on_terminate(evutil_socket_t sig, short what, void *arg)
{
	struct peerd *p = arg;

	log_info("received %s; stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
	transfers_stopping(p->transfers); /* running transfers stay listed, to continue at the next start */
	notify_stopping();
	event_base_loopexit(p->base, NULL);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
	struct peerd *p = arg;

	log_info("received SIGHUP; re-scanning %s", p->set.folder);
	watch_rescan(p->watch, NULL, NULL);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	notify_watchdog();
}

static void continue_transfers(void *arg)
{
	struct peerd *p = arg;

	transfers_continue_saved(p->transfers);
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

/* "ADDR:PORT" as bound: the address of listen with the port bound. */
static void bound_address(struct peerd *p, const char *listen, int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "";
	const char *colon;

	if (fd >= 0 && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET6) {
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
			snprintf(p->bound, sizeof(p->bound), "[%s]:%d", host,
				 ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
		} else {
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
			snprintf(p->bound, sizeof(p->bound), "%s:%d", host, ntohs(((struct sockaddr_in *)&ss)->sin_port));
		}
		return;
	}
	colon = strrchr(listen, ':');
	snprintf(p->bound, sizeof(p->bound), "%.*s:%d", colon ? (int)(colon - listen) : 0, listen, p->grpc_port);
}

static int run(struct peerd *p)
{
	char listen_buf[300];
	const char *listen;
	int afd, cfd, r;
	uint64_t wd;

	activated_sockets(&afd, &cfd);
	if (afd >= 0 && peer_tls_enabled()) {
		/* gRPC 1.51 adopts accepted fds with insecure credentials only. */
		log_err("tls_certificate: gRPC over TLS cannot serve the socket passed by systemd "
			"(grpc_server_add_channel_from_fd is plain-text only); let p2p-peerd bind its own port");
		return -EINVAL;
	}
	p->base = event_base_new();
	if (!p->base)
		return -ENOMEM;
	r = share_open(&p->share, p->set.folder, p->set.state_dir);
	if (r < 0)
		return r;
	if ((r = dirclient_new(p->base, p->set.directory, &p->dc)) < 0 ||
	    (r = session_new(p, p->dc, &p->session)) < 0)
		return r;
	p->tc.verify = dirclient_verify_ticket;
	p->tc.ctx = p->dc;
	if (p->set.listen) {
		listen = p->set.listen;
	} else {
		snprintf(listen_buf, sizeof(listen_buf), "0.0.0.0:%lld", p->set.port ? p->set.port : 50001);
		listen = listen_buf;
	}
	grpc_init();
	r = rpc_start(&p->rpc, afd >= 0 ? NULL : listen, afd, &p->share, &p->tc, &p->set, &p->grpc_port);
	transfers_set_download_rate(p, p->set.download_rate);
	if (r < 0)
		return r;
	if (metrics_totals_start(p->base, p->set.state_dir) < 0) /* metrics.c */
		return log_errno(LOG_ERR, ENOMEM, "cannot keep the byte totals");
	if (p->set.metrics_listen && metrics_start(p->base, p->set.metrics_listen) < 0) /* metrics.c */
		return log_errno(LOG_ERR, EADDRINUSE, "metrics_listen: cannot serve metrics on %s", p->set.metrics_listen);
	if (afd >= 0) {
		/* rpc.c accepts on it (on its own thread, pausing when out of
		 * descriptors) and closes it at rpc_stop. */
		bound_address(p, "", afd);
		log_info("serving gRPC on the socket passed by systemd (%s)", p->bound);
	} else {
		bound_address(p, listen, -1);
		log_info("serving gRPC%s on %s", peer_tls_enabled() ? " over TLS" : "", p->bound);
		/* Behind NAT or a proxy the port others reach differs from the
		 * one bound: a configured port is what the directory is told. */
		if (p->set.listen && p->set.port && p->set.port != p->grpc_port) {
			p->grpc_port = (int)p->set.port;
			log_info("advertising gRPC port %d", p->grpc_port);
		}
	}
	if ((r = transfers_new(p, &p->transfers)) < 0 || (r = watch_new(p, &p->watch)) < 0)
		return r;
	if (cfd >= 0 || p->set.control_socket) {
		r = control_start(p, cfd >= 0 ? NULL : p->set.control_socket, cfd, control_method_find, &p->control);
		if (r < 0)
			return r;
		control_methods_start(p);
	} else {
		log_notice("no control socket (give --control-socket or --name)");
	}
	/* What the hash cache knows is served now; the rest is hashed on a
	 * worker and shared as it is hashed. */
	r = watch_start(p->watch);
	if (r < 0)
		return r;
	session_on_login(p->session, continue_transfers, p);
	session_start(p->session);
	p->ev_term = evsignal_new(p->base, SIGTERM, on_terminate, p);
	p->ev_int = evsignal_new(p->base, SIGINT, on_terminate, p);
	p->ev_hup = evsignal_new(p->base, SIGHUP, on_hup, p);
	if (!p->ev_term || !p->ev_int || !p->ev_hup)
		return -ENOMEM;
	event_add(p->ev_term, NULL);
	event_add(p->ev_int, NULL);
	event_add(p->ev_hup, NULL);
	wd = notify_watchdog_usec();
	if (wd) {
		struct timeval tv = { .tv_sec = (time_t)(wd / 2000000), .tv_usec = (suseconds_t)(wd / 2 % 1000000) };

		p->ev_watchdog = event_new(p->base, -1, EV_PERSIST, on_watchdog, p);
		if (p->ev_watchdog)
			event_add(p->ev_watchdog, &tv);
	}
	session_notify_status(p->session);
	notify_ready();
	event_base_dispatch(p->base);
	control_stop(p->control);
	p->control = NULL;
	control_methods_stop();
	session_stop(p->session);
	return 0;
}

static void cleanup(struct peerd *p)
{
	control_stop(p->control);
	control_methods_stop();
	/* Threads waiting on the directory are answered at once from here. */
	dirclient_shutdown(p->dc);
	transfers_free(p->transfers);
	watch_free(p->watch);
	rpc_stop(p->rpc);
	if (p->rpc)
		grpc_shutdown_blocking();
	metrics_totals_stop(); /* after the last byte served */
	session_free(p->session);
	dirclient_free(p->dc);
	struct event *evs[] = { p->ev_term, p->ev_int, p->ev_hup, p->ev_watchdog };
	for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
		if (evs[i])
			event_free(evs[i]);
	metrics_stop();
	if (p->base)
		event_base_free(p->base);
	share_close(&p->share);
	peer_tls_free();
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
		case 'h': settings_usage(stdout); r = 1000; break;
		case 'V': printf("p2p-peerd %s\n", PACKAGE_VERSION); r = 1000; break;
		default:
			if (c >= 1000 && noverrides < sizeof(overrides) / sizeof(overrides[0])) {
				overrides[noverrides].key = peerd_keys[c - 1000].name;
				overrides[noverrides++].value = optarg;
				break;
			}
			settings_usage(stderr);
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
