/* SPDX-License-Identifier: MIT */
/* varlink.h — the varlink wire format of the peer control socket
 * (docs/CONTROL.md), shared by p2p-peerd (server) and p2pctl (client).
 *
 * A message is one JSON object in UTF-8 followed by a NUL byte, at most
 * VARLINK_MESSAGE_MAX bytes without the NUL. The functions come in three
 * groups:
 *
 *   framing   varlink_frame_find() — pure: is there one whole message at the
 *             start of a buffer, and how long is it?
 *   messages  varlink_call_parse() / varlink_reply_parse() validate a message
 *             strictly; varlink_*_format() build the text to send.
 *   client    varlink_connect(), varlink_send_call(), varlink_receive(),
 *             varlink_close() — blocking, with timeouts, for p2pctl.
 *
 * Everything returns 0 or a negative errno. A message that breaks the
 * protocol gives -EBADMSG (or -EMSGSIZE / -EILSEQ) and, through the fault
 * out-parameter, which rule it broke (varlink_fault_str() says it in words).
 */
#ifndef P2P_VARLINK_H
#define P2P_VARLINK_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

/* The largest message, without its NUL terminator. */
#define VARLINK_MESSAGE_MAX (1024 * 1024)

/* Which rule a message broke. Each has its own text in varlink_fault_str(). */
enum varlink_fault {
	VARLINK_FAULT_NONE = 0,
	VARLINK_FAULT_TOO_LARGE,       /* more than VARLINK_MESSAGE_MAX bytes before the NUL */
	VARLINK_FAULT_UTF8,            /* not well-formed UTF-8 */
	VARLINK_FAULT_JSON,            /* not JSON, or trailing bytes after the value */
	VARLINK_FAULT_NOT_OBJECT,      /* valid JSON but not an object */
	VARLINK_FAULT_METHOD_MISSING,  /* call: no "method" */
	VARLINK_FAULT_METHOD_TYPE,     /* call: "method" is not a string */
	VARLINK_FAULT_METHOD_NAME,     /* call: "method" is not "interface.Method" */
	VARLINK_FAULT_PARAMETERS,      /* "parameters" present but not an object */
	VARLINK_FAULT_MORE,            /* call: "more" is not a boolean */
	VARLINK_FAULT_ONEWAY,          /* call: "oneway" is not a boolean */
	VARLINK_FAULT_MORE_ONEWAY,     /* call: both "more" and "oneway" are true */
	VARLINK_FAULT_UPGRADE,         /* call: "upgrade" is not a boolean */
	VARLINK_FAULT_CONTINUES,       /* reply: "continues" is not a boolean */
	VARLINK_FAULT_ERROR_TYPE,      /* reply: "error" is not a string */
	VARLINK_FAULT_ERROR_NAME,      /* reply: "error" is not "interface.Error" */
};

/* A short English description of a fault, e.g. "\"more\" is not a boolean". */
const char *varlink_fault_str(enum varlink_fault fault);

/* ---- framing ---------------------------------------------------------- */

/* Look for one complete message at the start of buf[0..len).
 * Returns 1 when buf holds a whole message: *msg_len is its length without
 * the NUL, so the caller handles buf[0..*msg_len) and then drops
 * *msg_len + 1 bytes. Returns 0 when more bytes are needed (no NUL yet and
 * len <= VARLINK_MESSAGE_MAX). Returns -EMSGSIZE when no NUL appears within
 * the first VARLINK_MESSAGE_MAX + 1 bytes: the peer is breaking the protocol
 * and the connection should be closed. Reads at most VARLINK_MESSAGE_MAX + 1
 * bytes of buf, so a server can evbuffer_pullup() just that much; buf may
 * be NULL when len is 0. */
int varlink_frame_find(const void *buf, size_t len, size_t *msg_len);

/* ---- messages --------------------------------------------------------- */

#define VARLINK_CALL_MORE   0x1u /* "more": true — a stream of replies */
#define VARLINK_CALL_ONEWAY 0x2u /* "oneway": true — no reply */
#define VARLINK_CALL_UPGRADE 0x4u /* "upgrade": true — another protocol follows */

/* A parsed call. root owns everything; method and parameters point into it.
 * parameters is never NULL: an absent or null "parameters" reads as {}. */
struct varlink_call {
	struct json_object *root;
	const char *method;             /* "io.p2p.Peer.Login" */
	struct json_object *parameters; /* borrowed from root */
	bool more;
	bool oneway;
	bool upgrade;
};

/* Parse and validate one call (msg[0..len), without the NUL; msg need not be
 * NUL-terminated). Keys other than method/parameters/more/oneway/upgrade are
 * ignored, as the varlink spec asks. Returns 0 and fills call (free with
 * varlink_call_free()), -EMSGSIZE (too large), -EILSEQ (bad UTF-8),
 * -EBADMSG (any other fault), or -ENOMEM; *fault says which rule. */
int varlink_call_parse(const char *msg, size_t len, struct varlink_call *call,
		       enum varlink_fault *fault);
void varlink_call_free(struct varlink_call *call);

/* A parsed reply or error. error is NULL for a reply, the error name
 * ("io.p2p.Peer.NotLoggedIn") for an error. parameters is never NULL. */
struct varlink_reply {
	struct json_object *root;
	const char *error;              /* borrowed from root, or NULL */
	struct json_object *parameters; /* borrowed from root */
	bool continues;
};

/* Parse and validate one reply; same returns as varlink_call_parse(). */
int varlink_reply_parse(const char *msg, size_t len, struct varlink_reply *reply,
			enum varlink_fault *fault);
void varlink_reply_free(struct varlink_reply *reply);

/* Build the bytes to send, NUL terminator included: *out is malloc'd (free
 * it), *out_len counts the NUL. parameters is borrowed (NULL sends {}).
 * Returns 0, -EINVAL (bad method/error name), -EMSGSIZE (the message would
 * exceed VARLINK_MESSAGE_MAX) or -ENOMEM. */
int varlink_call_format(const char *method, struct json_object *parameters,
			unsigned flags, char **out, size_t *out_len);
int varlink_reply_format(struct json_object *parameters, bool continues,
			 char **out, size_t *out_len);
int varlink_error_format(const char *error, struct json_object *parameters,
			 char **out, size_t *out_len);

/* The same messages as json_object trees (new references; NULL on ENOMEM),
 * for a server that wants to add fields before formatting with
 * varlink_object_format(). */
struct json_object *varlink_reply_object(struct json_object *parameters, bool continues);
struct json_object *varlink_error_object(const char *error, struct json_object *parameters);
/* Serialise any message object (plain JSON, no added spaces) plus the NUL. */
int varlink_object_format(struct json_object *message, char **out, size_t *out_len);

/* True if name is "interface.Name": two or more dot-separated parts, the
 * interface parts [A-Za-z0-9-] starting with a letter, the last part
 * [A-Za-z0-9] starting with an upper-case letter, at most 255 bytes. */
bool varlink_valid_qualified_name(const char *name);

/* ---- client ----------------------------------------------------------- */

struct varlink_conn;

/* Connect to the UNIX stream socket at path, waiting at most timeout_ms
 * (-1: no limit) while the listen backlog is full. Returns 0 and a new
 * connection, or -ENAMETOOLONG (path too long for sun_path), -ENOENT (no
 * such socket), -ECONNREFUSED (nobody listening), -EACCES, -ETIMEDOUT, ... */
int varlink_connect(const char *path, int timeout_ms, struct varlink_conn **out);

/* Send one call (see varlink_call_format()), waiting at most timeout_ms for
 * the socket to take it. -EPIPE/-ECONNRESET when the server has gone. */
int varlink_send_call(struct varlink_conn *conn, const char *method,
		      struct json_object *parameters, unsigned flags, int timeout_ms);

/* Wait at most timeout_ms (-1: no limit) for the next reply and parse it.
 * Returns 0 (free with varlink_reply_free()), -ETIMEDOUT, -ECONNRESET when
 * the server closed the connection, -EMSGSIZE/-EILSEQ/-EBADMSG with *fault
 * set when the server broke the protocol, or another -errno. */
int varlink_receive(struct varlink_conn *conn, int timeout_ms, struct varlink_reply *reply,
		    enum varlink_fault *fault);

/* The socket, e.g. to poll() it together with a terminal. */
int varlink_fd(const struct varlink_conn *conn);

/* Close and free; NULL is fine. */
void varlink_close(struct varlink_conn *conn);

#endif
