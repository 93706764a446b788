/* SPDX-License-Identifier: MIT */
/* settings.c — owns p2p-peerd's configuration keys (one table for the
 * JSON file, the long options and --help), their defaults and the checks
 * a configuration must pass before anything starts. */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "peerd.h"

#define PEERS_DIR SYSCONFDIR "/p2p/peers"

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
	KEY("upload_rate", CONF_INT, upload_rate, 0, PEER_RATE_MAX),
	KEY("download_rate", CONF_INT, download_rate, 0, PEER_RATE_MAX),
	KEY("retry_max", CONF_INT, retry_max, 1, 3600),
	KEY("download_progress_bytes", CONF_INT, download_progress_bytes, 1, 1LL << 30),
	KEY("download_progress_interval", CONF_INT, download_progress_interval, 1, 3600),
	KEY("directory_ca", CONF_STRING, directory_ca, 0, 0),
	KEY("tls_certificate", CONF_STRING, tls_certificate, 0, 0),
	KEY("tls_key", CONF_STRING, tls_key, 0, 0),
	KEY("tls_ca", CONF_STRING, tls_ca, 0, 0),
	/* rpc.c's bounds */
	KEY("max_calls", CONF_INT, max_calls, 1, 1000000),
	KEY("max_calls_per_client", CONF_INT, max_calls_per_client, 1, 1000000),
	KEY("max_inflight", CONF_INT, max_inflight, 1 << 20, 1LL << 40),
	KEY("max_inflight_per_client", CONF_INT, max_inflight_per_client, 1 << 20, 1LL << 40),
	KEY("send_timeout", CONF_INT, send_timeout, 1, 86400),
	KEY("metrics_listen", CONF_STRING, metrics_listen, 0, 0),
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
	{ "max_calls", "gRPC calls served at once; more get RESOURCE_EXHAUSTED (default 1024)" },
	{ "max_calls_per_client", "gRPC calls at once from one client address (default 64)" },
	{ "max_inflight", "reply bytes in flight to all clients; past it calls wait (default 33554432)" },
	{ "max_inflight_per_client", "reply bytes in flight to one client address (default 8388608)" },
	{ "send_timeout", "seconds a client may take nothing before its call is cancelled (default 60)" },
	{ "metrics_listen", "ADDR:PORT to serve Prometheus metrics on, GET /metrics (default: off)" },
};

void settings_defaults(struct peerd_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->directory = strdup("http://127.0.0.1:6970");
	s->log_level = strdup("info");
	s->port = 0; /* unset: bind 50001 and advertise what is bound */
	s->heartbeat = 30;
	s->max_message = 4 << 20;
	s->chunk_size = 256 << 10;
	s->retry_max = 60;
	s->max_calls = 1024;
	s->max_calls_per_client = 64;
	s->max_inflight = 32 << 20;
	s->max_inflight_per_client = 8 << 20;
	s->send_timeout = 60;
	s->download_progress_bytes = DOWNLOAD_PROGRESS_BYTES;
	s->download_progress_interval = DOWNLOAD_PROGRESS_INTERVAL;
}

int settings_check(const struct peerd_settings *s, char *err, size_t len)
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

void settings_usage(FILE *f)
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

