/* SPDX-License-Identifier: MIT */
/* connection.c — p2pctl's one conversation with p2p-peerd: connect, send
 * one call, receive its reply, and turn every failure (the socket, the
 * transport, a varlink error) into one message and exit status. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "p2pctl.h"

/* ---- talking to peerd ------------------------------------------------- */

/* "cannot reach peerd at PATH: ..." with the systemd hint. */
int unreachable(const struct ctl *c, int err)
{
	const char *p = c->peer[0] ? c->peer : "NAME";

	switch (err) {
	case -ENOENT:
	case -ECONNREFUSED:
		errmsg("cannot reach peerd at %s: %s; is p2p-peerd@%s running? systemctl start p2p-peerd@%s",
		       c->socket, strerror(-err), p, p);
		break;
	case -EACCES:
	case -EPERM:
		errmsg("cannot reach peerd at %s: %s; join the group p2p (usermod -aG p2p $USER, then log in again) or use sudo",
		       c->socket, strerror(-err));
		break;
	case -ETIMEDOUT:
		errmsg("peerd at %s did not answer within %d s: is it stuck? see journalctl -u p2p-peerd@%s, or raise --timeout",
		       c->socket, c->timeout_ms / 1000, p);
		break;
	case -ECONNRESET:
	case -EPIPE:
		errmsg("peerd at %s closed the connection: see journalctl -u p2p-peerd@%s", c->socket, p);
		break;
	default:
		errmsg("cannot reach peerd at %s: %s", c->socket, strerror(-err));
		break;
	}
	return EXIT_UNREACHABLE;
}

int ctl_connect(struct ctl *c)
{
	int r = varlink_connect(c->socket, c->timeout_ms, &c->conn);

	if (r == -ENAMETOOLONG) {
		errmsg("socket path %s is too long for a UNIX socket (at most 107 bytes)", c->socket);
		return EXIT_USAGE;
	}
	return r < 0 ? unreachable(c, r) : EXIT_OK;
}

/* Explain a varlink error reply: message on stderr (and a JSON document on
 * stdout with --json); returns the exit status. */
int explain_error(const struct ctl *c, const char *method, struct varlink_reply *r)
{
	struct json_object *p = r->parameters;
	const char *e = r->error;
	const char *peer = c->peer[0] ? c->peer : "NAME";
	int status = EXIT_FAIL;

	if (c->json) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "error", json_object_new_string(e));
		json_object_object_add(o, "parameters", json_object_get(p));
		print_json(o);
		json_object_put(o);
	}
	if (!strcmp(e, peer_error_name(PEER_E_NOT_LOGGED_IN))) {
		errmsg("not logged in: run 'p2pctl login USER' first");
		status = EXIT_NOT_LOGGED_IN;
	} else if (!strcmp(e, peer_error_name(PEER_E_AUTHENTICATION_FAILED))) {
		const char *why = jstr(p, "message", "");

		/* The directory's reason, unless it says the same as we do. */
		if (!*why || strstr(why, "wrong user name or password"))
			errmsg("login failed: wrong user name or password; register first with 'p2pctl register USER'");
		else
			errmsg("login failed: wrong user name or password (%s); register first with 'p2pctl register USER'",
			       why);
	} else if (!strcmp(e, peer_error_name(PEER_E_USER_EXISTS))) {
		errmsg("user %s already exists at the directory: choose another name, or log in with 'p2pctl login %s'",
		       jstr(p, "username", "?"), jstr(p, "username", "USER"));
	} else if (!strcmp(e, peer_error_name(PEER_E_REGISTRATION_CLOSED))) {
		errmsg("the directory does not accept new users: ask its operator for an account");
	} else if (!strcmp(e, peer_error_name(PEER_E_RATE_LIMITED))) {
		errmsg("the directory is limiting requests: try again in %lld s", (long long)jint(p, "retry_after"));
	} else if (!strcmp(e, peer_error_name(PEER_E_DIRECTORY_UNREACHABLE))) {
		errmsg("peerd cannot reach the directory at %s: %s; is p2p-dird running there? check \"directory\" in /etc/p2p/peers/%s.json",
		       jstr(p, "url", "?"), jstr(p, "message", "no answer"), peer);
	} else if (!strcmp(e, peer_error_name(PEER_E_NOT_FOUND))) {
		if (!strcmp(method, PEER_M_CANCEL) || !strcmp(method, PEER_M_PAUSE) || !strcmp(method, PEER_M_RESUME))
			errmsg("no running transfer %s: see 'p2pctl transfers'", jstr(p, "id", jstr(p, "name", "?")));
		else
			errmsg("no online peer shares %s: check the exact name with 'p2pctl search'", jstr(p, "name", "that file"));
		status = EXIT_NOT_FOUND;
	} else if (!strcmp(e, peer_error_name(PEER_E_VERIFICATION_FAILED))) {
		errmsg("%s failed verification: %s; nothing was saved under its name",
		       jstr(p, "name", "the file"), jstr(p, "message", "size or SHA-256 mismatch"));
		status = EXIT_VERIFICATION;
	} else if (!strcmp(e, peer_error_name(PEER_E_FILE_EXISTS))) {
		errmsg("%s", jstr(p, "message", "a file of that name exists; it is kept (use --force to replace it)"));
	} else if (!strcmp(e, peer_error_name(PEER_E_TRANSFER_FAILED))) {
		/* peerd says whether trying again can help ("retry"). */
		struct json_object *retry = NULL;
		bool again = !json_object_object_get_ex(p, "retry", &retry) || json_object_get_boolean(retry);

		errmsg("download of %s failed after %lld bytes: %s%s", jstr(p, "name", "the file"),
		       (long long)jint(p, "received"), jstr(p, "message", "no source could complete it"),
		       again ? "; run the same command again to resume" : "");
	} else if (!strcmp(e, peer_error_name(PEER_E_CANCELLED))) {
		errmsg("transfer %s was cancelled", jstr(p, "id", "?"));
	} else if (!strcmp(e, peer_error_name(PEER_E_PERMISSION_DENIED))) {
		errmsg("peerd refused this user: join the group p2p (usermod -aG p2p $USER, then log in again) or use sudo");
	} else if (!strcmp(e, peer_error_name(PEER_E_BUSY))) {
		errmsg("peerd at %s is busy (%s): try again in a moment", c->socket, jstr(p, "message", "too many calls"));
	} else if (!strcmp(e, VARLINK_E_METHOD_NOT_FOUND)) {
		errmsg("peerd does not know %s: are p2pctl %s and p2p-peerd the same version?",
		       jstr(p, "method", method), PACKAGE_VERSION);
	} else if (!strcmp(e, VARLINK_E_INVALID_PARAMETER)) {
		errmsg("peerd refused the parameter \"%s\" of %s: check the value given", jstr(p, "parameter", "?"), method);
		status = EXIT_USAGE;
	} else {
		errmsg("peerd answered %s: %s", e,
		       json_object_to_json_string_ext(p, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	}
	return status;
}

/* Turn what varlink_receive() returned into an exit status, printing why on
 * failure. A varlink error is explained and freed. */
int received(struct ctl *c, const char *method, int e, struct varlink_reply *r,
		    enum varlink_fault fault)
{
	if (e == -EBADMSG || e == -EMSGSIZE || e == -EILSEQ) {
		errmsg("peerd at %s sent a malformed reply (%s): are p2pctl and p2p-peerd the same version?",
		       c->socket, varlink_fault_str(fault));
		return EXIT_FAIL;
	}
	if (e < 0)
		return unreachable(c, e);
	if (r->error) {
		int s = explain_error(c, method, r);

		varlink_reply_free(r);
		return s;
	}
	return EXIT_OK;
}

/* Receive one reply; on failure print why and return the exit status
 * (> 0). A varlink error is returned as EXIT_* too, already explained. */
int receive(struct ctl *c, const char *method, int timeout_ms, struct varlink_reply *r)
{
	enum varlink_fault fault;
	int e = varlink_receive(c->conn, timeout_ms, r, &fault);

	return received(c, method, e, r, fault);
}

/* Connect, send one call, wait for its single reply. */
int call(struct ctl *c, const char *method, struct json_object *params, struct varlink_reply *r)
{
	int s, e;

	memset(r, 0, sizeof(*r));
	s = ctl_connect(c);
	if (s)
		return s;
	e = varlink_send_call(c->conn, method, params, 0, c->timeout_ms);
	if (e < 0)
		return unreachable(c, e);
	/* Login and Index hash the whole folder: allow them minutes unless the
	 * user chose a limit. */
	if (!c->timeout_set && (!strcmp(method, PEER_M_LOGIN) || !strcmp(method, PEER_M_INDEX)))
		return receive(c, method, SLOW_TIMEOUT_S * 1000, r);
	return receive(c, method, c->timeout_ms, r);
}
