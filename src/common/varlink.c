/* SPDX-License-Identifier: MIT */
/* varlink.c — framing, parsing and formatting of varlink messages, and a small
 * blocking client. The contract is docs/CONTROL.md. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "validate.h"
#include "varlink.h"

/* JSON nesting deeper than this is refused (json-c's default is 32). */
#define VARLINK_JSON_DEPTH 64
#define VARLINK_NAME_MAX 255

const char *varlink_fault_str(enum varlink_fault fault)
{
	switch (fault) {
	case VARLINK_FAULT_NONE:           return "no error";
	case VARLINK_FAULT_TOO_LARGE:      return "message larger than 1 MiB";
	case VARLINK_FAULT_UTF8:           return "message is not valid UTF-8";
	case VARLINK_FAULT_JSON:           return "message is not valid JSON";
	case VARLINK_FAULT_NOT_OBJECT:     return "message is not a JSON object";
	case VARLINK_FAULT_METHOD_MISSING: return "call has no \"method\"";
	case VARLINK_FAULT_METHOD_TYPE:    return "\"method\" is not a string";
	case VARLINK_FAULT_METHOD_NAME:    return "\"method\" is not of the form interface.Method";
	case VARLINK_FAULT_PARAMETERS:     return "\"parameters\" is not an object";
	case VARLINK_FAULT_MORE:           return "\"more\" is not a boolean";
	case VARLINK_FAULT_ONEWAY:         return "\"oneway\" is not a boolean";
	case VARLINK_FAULT_UPGRADE:        return "\"upgrade\" is not a boolean";
	case VARLINK_FAULT_MORE_ONEWAY:    return "\"more\" and \"oneway\" are both set";
	case VARLINK_FAULT_CONTINUES:      return "\"continues\" is not a boolean";
	case VARLINK_FAULT_ERROR_TYPE:     return "\"error\" is not a string";
	case VARLINK_FAULT_ERROR_NAME:     return "\"error\" is not of the form interface.Error";
	}
	return "unknown fault";
}

int varlink_frame_find(const void *buf, size_t len, size_t *msg_len)
{
	size_t scan = len < VARLINK_MESSAGE_MAX + 1 ? len : VARLINK_MESSAGE_MAX + 1;
	const char *nul;

	if (len == 0)
		return 0; /* buf may be NULL: an empty evbuffer or client buffer */
	nul = memchr(buf, '\0', scan);
	if (nul) {
		*msg_len = (size_t)(nul - (const char *)buf);
		return 1;
	}
	if (len > VARLINK_MESSAGE_MAX)
		return -EMSGSIZE;
	return 0;
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_alnum(char c)
{
	return is_alpha(c) || (c >= '0' && c <= '9');
}

bool varlink_valid_qualified_name(const char *name)
{
	const char *last, *p;
	size_t n;

	if (!name)
		return false;
	n = strlen(name);
	if (n == 0 || n > VARLINK_NAME_MAX)
		return false;
	last = strrchr(name, '.');
	if (!last || last == name)
		return false;
	/* The interface: dot-separated parts, each starting with a letter,
	 * made of letters, digits and inner dashes. */
	for (p = name; p < last;) {
		if (!is_alpha(*p))
			return false;
		for (p++; p < last && *p != '.'; p++)
			if (!is_alnum(*p) && !(*p == '-' && p[1] != '.' && p + 1 != last))
				return false;
		if (p < last)
			p++; /* the dot; the next part must start with a letter */
	}
	/* The member: CamelCase, letters and digits. */
	p = last + 1;
	if (!(*p >= 'A' && *p <= 'Z'))
		return false;
	for (p++; *p; p++)
		if (!is_alnum(*p))
			return false;
	return true;
}

/* json-c reads NaN and Infinity even in strict mode; JSON has neither, and
 * a reader converting one to an integer has undefined behaviour. The tree
 * is at most VARLINK_JSON_DEPTH deep, so recursion is bounded. */
static bool all_numbers_finite(struct json_object *o)
{
	switch (json_object_get_type(o)) {
	case json_type_double:
		return isfinite(json_object_get_double(o));
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(o); i++)
			if (!all_numbers_finite(json_object_array_get_idx(o, i)))
				return false;
		return true;
	case json_type_object: {
		json_object_object_foreach(o, key, v) {
			(void)key;
			if (!all_numbers_finite(v))
				return false;
		}
		return true;
	}
	default:
		return true;
	}
}

/* Parse msg[0..len) as one JSON object: the checks both message kinds share. */
static int parse_object(const char *msg, size_t len, struct json_object **root,
			enum varlink_fault *fault)
{
	struct json_tokener *tok;
	struct json_object *obj;
	enum json_tokener_error jerr;
	size_t end;

	*root = NULL;
	if (len > VARLINK_MESSAGE_MAX) {
		*fault = VARLINK_FAULT_TOO_LARGE;
		return -EMSGSIZE;
	}
	if (!valid_utf8(msg, len)) {
		*fault = VARLINK_FAULT_UTF8;
		return -EILSEQ;
	}
	/* A NUL is the terminator, never part of a message. */
	if (len == 0 || memchr(msg, '\0', len) || len > INT32_MAX) {
		*fault = VARLINK_FAULT_JSON;
		return -EBADMSG;
	}
	tok = json_tokener_new_ex(VARLINK_JSON_DEPTH);
	if (!tok)
		return -ENOMEM;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	obj = json_tokener_parse_ex(tok, msg, (int)len);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	if (!obj && jerr == json_tokener_continue) {
		/* A bare number at the very end only completes at a delimiter:
		 * give it one, so "42" reads as "not an object". */
		obj = json_tokener_parse_ex(tok, " ", 1);
		jerr = json_tokener_get_error(tok);
		end = len;
	}
	json_tokener_free(tok);
	if (!obj || jerr != json_tokener_success) {
		json_object_put(obj);
		*fault = VARLINK_FAULT_JSON;
		return -EBADMSG;
	}
	/* Only whitespace may follow the value. */
	for (; end < len; end++) {
		if (msg[end] != ' ' && msg[end] != '\t' && msg[end] != '\n' && msg[end] != '\r') {
			json_object_put(obj);
			*fault = VARLINK_FAULT_JSON;
			return -EBADMSG;
		}
	}
	if (!json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		*fault = VARLINK_FAULT_NOT_OBJECT;
		return -EBADMSG;
	}
	if (!all_numbers_finite(obj)) {
		json_object_put(obj);
		*fault = VARLINK_FAULT_JSON;
		return -EBADMSG;
	}
	*root = obj;
	return 0;
}

/* "parameters": absent or null reads as {} (the Go library sends null for a
 * method without parameters), which is put into root so root owns it. */
static int take_parameters(struct json_object *root, struct json_object **out,
			   enum varlink_fault *fault)
{
	struct json_object *p;

	if (json_object_object_get_ex(root, "parameters", &p) && p) {
		if (!json_object_is_type(p, json_type_object)) {
			*fault = VARLINK_FAULT_PARAMETERS;
			return -EBADMSG;
		}
		*out = p;
		return 0;
	}
	p = json_object_new_object();
	if (!p || json_object_object_add(root, "parameters", p) < 0) {
		json_object_put(p);
		return -ENOMEM;
	}
	*out = p;
	return 0;
}

/* An optional boolean key: absent is false, anything but a boolean is a fault. */
static bool get_flag(struct json_object *root, const char *key, bool *value)
{
	struct json_object *v;

	*value = false;
	if (!json_object_object_get_ex(root, key, &v))
		return true;
	if (!json_object_is_type(v, json_type_boolean))
		return false;
	*value = json_object_get_boolean(v);
	return true;
}

/* A qualified name held in a JSON string (no NUL hidden inside it). */
static bool string_is_qualified_name(struct json_object *s)
{
	const char *str = json_object_get_string(s);

	return strlen(str) == (size_t)json_object_get_string_len(s) &&
	       varlink_valid_qualified_name(str);
}

int varlink_call_parse(const char *msg, size_t len, struct varlink_call *call,
		       enum varlink_fault *fault)
{
	struct json_object *root, *m;
	int r;

	memset(call, 0, sizeof(*call));
	*fault = VARLINK_FAULT_NONE;
	r = parse_object(msg, len, &root, fault);
	if (r < 0)
		return r;
	r = -EBADMSG;
	if (!json_object_object_get_ex(root, "method", &m)) {
		*fault = VARLINK_FAULT_METHOD_MISSING;
		goto fail;
	}
	if (!json_object_is_type(m, json_type_string)) {
		*fault = VARLINK_FAULT_METHOD_TYPE;
		goto fail;
	}
	if (!string_is_qualified_name(m)) {
		*fault = VARLINK_FAULT_METHOD_NAME;
		goto fail;
	}
	if (!get_flag(root, "more", &call->more)) {
		*fault = VARLINK_FAULT_MORE;
		goto fail;
	}
	if (!get_flag(root, "oneway", &call->oneway)) {
		*fault = VARLINK_FAULT_ONEWAY;
		goto fail;
	}
	if (!get_flag(root, "upgrade", &call->upgrade)) {
		*fault = VARLINK_FAULT_UPGRADE;
		goto fail;
	}
	if (call->more && call->oneway) {
		*fault = VARLINK_FAULT_MORE_ONEWAY;
		goto fail;
	}
	r = take_parameters(root, &call->parameters, fault);
	if (r < 0)
		goto fail;
	call->root = root;
	call->method = json_object_get_string(m);
	return 0;
fail:
	json_object_put(root);
	memset(call, 0, sizeof(*call));
	return r;
}

void varlink_call_free(struct varlink_call *call)
{
	if (!call)
		return;
	json_object_put(call->root);
	memset(call, 0, sizeof(*call));
}

int varlink_reply_parse(const char *msg, size_t len, struct varlink_reply *reply,
			enum varlink_fault *fault)
{
	struct json_object *root, *e;
	int r;

	memset(reply, 0, sizeof(*reply));
	*fault = VARLINK_FAULT_NONE;
	r = parse_object(msg, len, &root, fault);
	if (r < 0)
		return r;
	r = -EBADMSG;
	if (json_object_object_get_ex(root, "error", &e)) {
		if (!json_object_is_type(e, json_type_string)) {
			*fault = VARLINK_FAULT_ERROR_TYPE;
			goto fail;
		}
		if (!string_is_qualified_name(e)) {
			*fault = VARLINK_FAULT_ERROR_NAME;
			goto fail;
		}
		reply->error = json_object_get_string(e);
	}
	if (!get_flag(root, "continues", &reply->continues)) {
		*fault = VARLINK_FAULT_CONTINUES;
		goto fail;
	}
	r = take_parameters(root, &reply->parameters, fault);
	if (r < 0)
		goto fail;
	reply->root = root;
	return 0;
fail:
	json_object_put(root);
	memset(reply, 0, sizeof(*reply));
	return r;
}

void varlink_reply_free(struct varlink_reply *reply)
{
	if (!reply)
		return;
	json_object_put(reply->root);
	memset(reply, 0, sizeof(*reply));
}

/* Add parameters (borrowed; NULL means {}) to a message object. */
static bool add_parameters(struct json_object *msg, struct json_object *parameters)
{
	struct json_object *p = parameters ? json_object_get(parameters) : json_object_new_object();

	if (!p)
		return false;
	if (json_object_object_add(msg, "parameters", p) < 0) {
		json_object_put(p);
		return false;
	}
	return true;
}

static bool add_true(struct json_object *msg, const char *key)
{
	struct json_object *t = json_object_new_boolean(1);

	if (!t || json_object_object_add(msg, key, t) < 0) {
		json_object_put(t);
		return false;
	}
	return true;
}

static bool add_string(struct json_object *msg, const char *key, const char *value)
{
	struct json_object *s = json_object_new_string(value);

	if (!s || json_object_object_add(msg, key, s) < 0) {
		json_object_put(s);
		return false;
	}
	return true;
}

struct json_object *varlink_reply_object(struct json_object *parameters, bool continues)
{
	struct json_object *msg = json_object_new_object();

	if (!msg)
		return NULL;
	if (!add_parameters(msg, parameters) || (continues && !add_true(msg, "continues"))) {
		json_object_put(msg);
		return NULL;
	}
	return msg;
}

struct json_object *varlink_error_object(const char *error, struct json_object *parameters)
{
	struct json_object *msg = json_object_new_object();

	if (!msg)
		return NULL;
	if (!add_string(msg, "error", error) || !add_parameters(msg, parameters)) {
		json_object_put(msg);
		return NULL;
	}
	return msg;
}

int varlink_object_format(struct json_object *message, char **out, size_t *out_len)
{
	const char *text;
	size_t n;
	char *buf;

	*out = NULL;
	*out_len = 0;
	text = json_object_to_json_string_length(message,
						 JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
	if (!text)
		return -ENOMEM;
	if (n > VARLINK_MESSAGE_MAX)
		return -EMSGSIZE;
	buf = malloc(n + 1);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, text, n);
	buf[n] = '\0';
	*out = buf;
	*out_len = n + 1;
	return 0;
}

/* Format and drop a freshly built message object. */
static int format_and_put(struct json_object *msg, char **out, size_t *out_len)
{
	int r;

	*out = NULL;
	*out_len = 0;
	if (!msg)
		return -ENOMEM;
	r = varlink_object_format(msg, out, out_len);
	json_object_put(msg);
	return r;
}

int varlink_call_format(const char *method, struct json_object *parameters,
			unsigned flags, char **out, size_t *out_len)
{
	struct json_object *msg;

	*out = NULL;
	*out_len = 0;
	if (!varlink_valid_qualified_name(method) ||
	    (flags & ~(VARLINK_CALL_MORE | VARLINK_CALL_ONEWAY | VARLINK_CALL_UPGRADE)) ||
	    ((flags & VARLINK_CALL_MORE) && (flags & VARLINK_CALL_ONEWAY)) ||
	    (parameters && !json_object_is_type(parameters, json_type_object)))
		return -EINVAL;
	msg = json_object_new_object();
	if (msg && (!add_string(msg, "method", method) || !add_parameters(msg, parameters) ||
		    ((flags & VARLINK_CALL_MORE) && !add_true(msg, "more")) ||
		    ((flags & VARLINK_CALL_ONEWAY) && !add_true(msg, "oneway")) ||
		    ((flags & VARLINK_CALL_UPGRADE) && !add_true(msg, "upgrade")))) {
		json_object_put(msg);
		msg = NULL;
	}
	return format_and_put(msg, out, out_len);
}

int varlink_reply_format(struct json_object *parameters, bool continues,
			 char **out, size_t *out_len)
{
	*out = NULL;
	*out_len = 0;
	if (parameters && !json_object_is_type(parameters, json_type_object))
		return -EINVAL;
	return format_and_put(varlink_reply_object(parameters, continues), out, out_len);
}

int varlink_error_format(const char *error, struct json_object *parameters,
			 char **out, size_t *out_len)
{
	*out = NULL;
	*out_len = 0;
	if (!varlink_valid_qualified_name(error) ||
	    (parameters && !json_object_is_type(parameters, json_type_object)))
		return -EINVAL;
	return format_and_put(varlink_error_object(error, parameters), out, out_len);
}

/* ---- client ----------------------------------------------------------- */

struct varlink_conn {
	int fd;
	char *buf;   /* received bytes not yet handed out */
	size_t len;  /* bytes in buf */
	size_t cap;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline (-1: none), never below 0. */
static int remaining(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - now_ms();
	if (left < 0)
		return 0;
	return left > INT32_MAX ? INT32_MAX : (int)left;
}

static int64_t deadline_after(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/* Wait for events on fd until deadline: 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };
	int r;

	for (;;) {
		r = poll(&p, 1, remaining(deadline));
		if (r > 0)
			return 0;
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

int varlink_connect(const char *path, int timeout_ms, struct varlink_conn **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int64_t deadline = deadline_after(timeout_ms);
	struct varlink_conn *c;
	int fd, r;

	*out = NULL;
	if (!path || !*path)
		return -EINVAL;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* A UNIX socket connects at once or fails with EAGAIN while the
	 * server's backlog is full; retry that until the deadline. */
	for (;;) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		r = -errno;
		if (r == -EINTR)
			continue;
		if (r == -EINPROGRESS) {
			int err = 0;
			socklen_t l = sizeof(err);

			r = wait_fd(fd, POLLOUT, deadline);
			if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
				r = -errno;
			else if (r == 0 && err)
				r = -err;
			if (r == 0)
				break;
			goto fail;
		}
		if (r != -EAGAIN)
			goto fail;
		if (remaining(deadline) == 0) {
			r = -ETIMEDOUT;
			goto fail;
		}
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		r = -ENOMEM;
		goto fail;
	}
	c->fd = fd;
	*out = c;
	return 0;
fail:
	close(fd);
	return r;
}

int varlink_send_call(struct varlink_conn *conn, const char *method,
		      struct json_object *parameters, unsigned flags, int timeout_ms)
{
	int64_t deadline = deadline_after(timeout_ms);
	size_t len, off = 0;
	char *msg;
	int r;

	r = varlink_call_format(method, parameters, flags, &msg, &len);
	if (r < 0)
		return r;
	while (off < len) {
		ssize_t n = send(conn->fd, msg + off, len - off, MSG_NOSIGNAL);

		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			r = -errno;
			break;
		}
		r = wait_fd(conn->fd, POLLOUT, deadline);
		if (r < 0)
			break;
	}
	/* Calls carry passwords (Login, Register): leave no copy behind. */
	explicit_bzero(msg, len);
	free(msg);
	return off == len ? 0 : r;
}

int varlink_receive(struct varlink_conn *conn, int timeout_ms, struct varlink_reply *reply,
		    enum varlink_fault *fault)
{
	int64_t deadline = deadline_after(timeout_ms);
	size_t msg_len;
	int r;

	memset(reply, 0, sizeof(*reply));
	*fault = VARLINK_FAULT_NONE;
	for (;;) {
		ssize_t n;

		r = varlink_frame_find(conn->buf, conn->len, &msg_len);
		if (r == -EMSGSIZE) {
			*fault = VARLINK_FAULT_TOO_LARGE;
			return r;
		}
		if (r == 1)
			break;
		if (conn->cap - conn->len < 4096) {
			size_t cap = conn->cap ? conn->cap * 2 : 16384;
			char *nb;

			if (cap > VARLINK_MESSAGE_MAX + 4096)
				cap = VARLINK_MESSAGE_MAX + 4096;
			nb = realloc(conn->buf, cap);
			if (!nb)
				return -ENOMEM;
			conn->buf = nb;
			conn->cap = cap;
		}
		n = recv(conn->fd, conn->buf + conn->len, conn->cap - conn->len, 0);
		if (n > 0) {
			conn->len += (size_t)n;
			continue;
		}
		if (n == 0)
			return -ECONNRESET;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		r = wait_fd(conn->fd, POLLIN, deadline);
		if (r < 0)
			return r;
	}
	r = varlink_reply_parse(conn->buf, msg_len, reply, fault);
	memmove(conn->buf, conn->buf + msg_len + 1, conn->len - msg_len - 1);
	conn->len -= msg_len + 1;
	return r;
}

int varlink_fd(const struct varlink_conn *conn)
{
	return conn->fd;
}

void varlink_close(struct varlink_conn *conn)
{
	if (!conn)
		return;
	close(conn->fd);
	free(conn->buf);
	free(conn);
}
