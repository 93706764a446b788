/* SPDX-License-Identifier: MIT */
/* varlink_service.c — org.varlink.service and the call flags of a varlink
 * server (varlink_service.h); the wire format is varlink.c's. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "varlink_service.h"

/* ---- reading the interface definition ----------------------------------
 *
 * The IDL is compiled in and trusted, but read defensively: anything that is
 * not the grammar makes the readers return NULL, and a method whose input
 * cannot be read is not checked (a unit test reads every method of the
 * compiled-in files). Only the input of methods is read: what the server
 * replies is the tests' business (tests/peerd/test_varlink_idl.py).
 *
 * Cost: each JSON value is checked once, and a value of a named type looks
 * the type up by scanning the IDL's line starts, so a call costs at most its
 * size (<= 1 MiB) times the IDL's lines (about 150 for io.p2p.Peer), and
 * far less for the scalar inputs io.p2p.Peer has. */

/* Blanks, newlines and comments. */
static const char *skip_blank(const char *p)
{
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
			p++;
		if (*p != '#')
			return p;
		while (*p && *p != '\n')
			p++;
	}
}

/* The length of the name at p: letters, digits and '_'. */
static size_t name_len(const char *p)
{
	size_t n = 0;

	while ((p[n] >= 'a' && p[n] <= 'z') || (p[n] >= 'A' && p[n] <= 'Z') || (p[n] >= '0' && p[n] <= '9') ||
	       p[n] == '_')
		n++;
	return n;
}

static bool name_is(const char *p, size_t n, const char *s)
{
	return strlen(s) == n && !strncmp(p, s, n);
}

/* The text after "KEYWORD NAME" declared at the start of a line (blanks
 * allowed), or NULL. */
static const char *find_decl(const char *idl, const char *keyword, const char *name, size_t n)
{
	size_t k = strlen(keyword);

	for (const char *p = idl; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		const char *q = p;

		while (*q == ' ' || *q == '\t')
			q++;
		if (strncmp(q, keyword, k) != 0 || (q[k] != ' ' && q[k] != '\t'))
			continue;
		for (q += k; *q == ' ' || *q == '\t'; q++)
			;
		if (name_len(q) == n && !strncmp(q, name, n))
			return q + n;
	}
	return NULL;
}

bool varlink_idl_declares_method(const char *idl, const char *member)
{
	const char *p = find_decl(idl, "method", member, strlen(member));

	return p && *skip_blank(p) == '(';
}

#define IDL_DEPTH_MAX 64

static const char *check_type(const char *idl, const char *p, struct json_object *v, bool check, int depth,
			      bool *ok);

/* Is the type at p (a field's, a struct's, an enum's) a struct "(name: type, ...)"
 * or "()"? Sets *is_enum; returns p or NULL if it is neither. */
static const char *struct_kind(const char *p, bool *is_enum)
{
	const char *q = skip_blank(p + 1);
	size_t n;

	*is_enum = false;
	if (*q == ')')
		return p;
	n = name_len(q);
	if (n == 0)
		return NULL;
	*is_enum = *skip_blank(q + n) != ':';
	return p;
}

/* Does the struct at p ('(') declare a field named key? */
static bool struct_has(const char *idl, const char *p, const char *key)
{
	bool ok = true;

	p = skip_blank(p + 1);
	while (*p && *p != ')') {
		size_t n = name_len(p);

		if (n == 0)
			return false;
		if (name_is(p, n, key))
			return true;
		p = skip_blank(p + n);
		if (*p != ':' || !(p = check_type(idl, p + 1, NULL, false, 0, &ok)))
			return false;
		p = skip_blank(p);
		if (*p == ',')
			p = skip_blank(p + 1);
	}
	return false;
}

/* The struct or enum at p ('('). For a struct, each declared field is checked
 * in v, and v may hold no other; *bad (if not NULL) gets the first field
 * that is wrong. */
static const char *check_compound(const char *idl, const char *p, struct json_object *v, bool check, int depth,
				  bool *ok, const char **bad, size_t *bad_len)
{
	const char *start = p;
	bool is_enum, any = false;

	if (!struct_kind(p, &is_enum))
		return NULL;
	if (check && (!json_object_is_type(v, is_enum ? json_type_string : json_type_object) ||
		      (is_enum && (size_t)json_object_get_string_len(v) != strlen(json_object_get_string(v))))) {
		*ok = false;
		check = false;
	}
	p = skip_blank(p + 1);
	while (*p != ')') {
		const char *fname = p;
		size_t n = name_len(p);

		if (n == 0)
			return NULL;
		if (is_enum) {
			any |= check && name_is(p, n, json_object_get_string(v));
			p = skip_blank(p + n);
		} else {
			char name[256];
			struct json_object *f = NULL;
			bool field_ok = true;

			if (n >= sizeof(name))
				return NULL;
			memcpy(name, p, n);
			name[n] = '\0';
			if (check)
				json_object_object_get_ex(v, name, &f);
			p = skip_blank(p + n);
			if (*p != ':' || !(p = check_type(idl, p + 1, f, check, depth + 1, &field_ok)))
				return NULL;
			if (!field_ok && *ok && bad) {
				*bad = fname;
				*bad_len = n;
			}
			*ok &= field_ok;
			p = skip_blank(p);
		}
		if (*p == ',')
			p = skip_blank(p + 1);
		else if (*p != ')')
			return NULL;
	}
	if (check && is_enum && !any)
		*ok = false;
	if (check && !is_enum) {
		json_object_object_foreach(v, key, val) {
			(void)val;
			if (!struct_has(idl, start, key)) {
				if (*ok && bad) {
					*bad = key;
					*bad_len = strlen(key);
				}
				*ok = false;
			}
		}
	}
	return p + 1;
}

/* Read the type at p and, when check, whether v (NULL: absent or null)
 * has it; returns the text after the type, or NULL if it is not a type. */
static const char *check_type(const char *idl, const char *p, struct json_object *v, bool check, int depth,
			      bool *ok)
{
	size_t n;

	if (depth > IDL_DEPTH_MAX)
		return NULL;
	p = skip_blank(p);
	if (*p == '?') {
		if (*skip_blank(p + 1) == '?')
			return NULL;
		return check_type(idl, p + 1, v, check && v, depth + 1, ok);
	}
	if (check && !v) {
		*ok = false;
		check = false;
	}
	if (*p == '[') {
		bool map = !strncmp(p, "[string]", 8);
		const char *elem = map ? p + 8 : p + 2, *end;

		if (!map && p[1] != ']')
			return NULL;
		end = check_type(idl, elem, NULL, false, depth + 1, ok);
		if (!end || !check)
			return end;
		if (map && json_object_is_type(v, json_type_object)) {
			json_object_object_foreach(v, key, val) {
				(void)key;
				check_type(idl, elem, val, true, depth + 1, ok);
			}
		} else if (!map && json_object_is_type(v, json_type_array)) {
			for (size_t i = 0; i < json_object_array_length(v); i++)
				check_type(idl, elem, json_object_array_get_idx(v, i), true, depth + 1, ok);
		} else {
			*ok = false;
		}
		return end;
	}
	if (*p == '(')
		return check_compound(idl, p, v, check, depth, ok, NULL, NULL);
	n = name_len(p);
	if (n == 0)
		return NULL;
	if (p[0] >= 'A' && p[0] <= 'Z') {
		const char *def;

		if (!check)
			return p + n;
		def = find_decl(idl, "type", p, n);
		if (!def || *(def = skip_blank(def)) != '(' ||
		    !check_compound(idl, def, v, true, depth + 1, ok, NULL, NULL))
			return NULL;
		return p + n;
	}
	if (name_is(p, n, "bool"))
		*ok &= !check || json_object_is_type(v, json_type_boolean);
	else if (name_is(p, n, "int"))
		*ok &= !check || json_object_is_type(v, json_type_int);
	else if (name_is(p, n, "float"))
		*ok &= !check || json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double);
	else if (name_is(p, n, "string"))
		*ok &= !check || (json_object_is_type(v, json_type_string) &&
				  (size_t)json_object_get_string_len(v) == strlen(json_object_get_string(v)));
	else if (name_is(p, n, "object"))
		;
	else
		return NULL;
	return p + n;
}

int varlink_idl_check_parameters(const char *idl, const char *member, struct json_object *params,
				 char *bad, size_t bad_size)
{
	const char *p = find_decl(idl, "method", member, strlen(member)), *name = NULL;
	size_t name_n = 0;
	bool ok = true;

	if (bad_size)
		bad[0] = '\0';
	if (!p || *(p = skip_blank(p)) != '(')
		return -ENOENT;
	p = check_compound(idl, p, params, true, 0, &ok, &name, &name_n);
	if (!p || *(p = skip_blank(p)) != '-' || p[1] != '>')
		return -EBADMSG;
	if (ok)
		return 0;
	if (bad_size)
		snprintf(bad, bad_size, "%.*s", (int)name_n, name ? name : "");
	return -EINVAL;
}

static struct json_object *one_string(const char *key, const char *value)
{
	struct json_object *o = json_object_new_object(), *s = json_object_new_string(value);

	if (!o || !s || json_object_object_add(o, key, s) < 0) {
		json_object_put(o);
		json_object_put(s);
		return NULL;
	}
	return o;
}

/* Format an error with one string parameter (key NULL: none). */
static int error_answer(const char *error, const char *key, const char *value, char **out, size_t *len)
{
	struct json_object *p = key ? one_string(key, value) : NULL;
	int r;

	if (key && !p)
		return -ENOMEM;
	r = varlink_error_format(error, p, out, len);
	json_object_put(p);
	return r;
}

static int get_info(const struct varlink_service *svc, char **out, size_t *len)
{
	struct json_object *p = json_object_new_object(), *ifs = json_object_new_array();
	int r = -ENOMEM;

	if (!p || !ifs)
		goto out;
	json_object_object_add(p, "vendor", json_object_new_string(svc->vendor));
	json_object_object_add(p, "product", json_object_new_string(svc->product));
	json_object_object_add(p, "version", json_object_new_string(svc->version));
	json_object_object_add(p, "url", json_object_new_string(svc->url));
	json_object_array_add(ifs, json_object_new_string(VARLINK_SERVICE_INTERFACE));
	for (size_t i = 0; i < svc->n_interfaces; i++)
		json_object_array_add(ifs, json_object_new_string(svc->interfaces[i].name));
	json_object_object_add(p, "interfaces", ifs);
	ifs = NULL;
	r = varlink_reply_format(p, false, out, len);
out:
	json_object_put(ifs);
	json_object_put(p);
	return r;
}

static int get_interface_description(const struct varlink_service *svc, struct json_object *params,
				     char **out, size_t *len)
{
	struct json_object *v;
	const char *name, *text = NULL;
	struct json_object *p;
	int r;

	if (!json_object_object_get_ex(params, "interface", &v) || !json_object_is_type(v, json_type_string) ||
	    (size_t)json_object_get_string_len(v) != strlen(json_object_get_string(v)))
		return error_answer(VARLINK_ERROR_INVALID_PARAMETER, "parameter", "interface", out, len);
	name = json_object_get_string(v);
	if (!strcmp(name, VARLINK_SERVICE_INTERFACE))
		text = VARLINK_IDL_ORG_VARLINK_SERVICE;
	for (size_t i = 0; !text && i < svc->n_interfaces; i++)
		if (!strcmp(name, svc->interfaces[i].name))
			text = svc->interfaces[i].description;
	if (!text)
		return error_answer(VARLINK_ERROR_INTERFACE_NOT_FOUND, "interface", name, out, len);
	p = one_string("description", text);
	if (!p)
		return -ENOMEM;
	r = varlink_reply_format(p, false, out, len);
	json_object_put(p);
	return r;
}

/* The interface of a method name: its text up to the last dot, if the
 * service has it. NULL for org.varlink.service and unknown ones. */
static const struct varlink_interface *interface_of(const struct varlink_service *svc, const char *method)
{
	size_t n = (size_t)(strrchr(method, '.') - method);

	for (size_t i = 0; i < svc->n_interfaces; i++)
		if (strlen(svc->interfaces[i].name) == n && !strncmp(method, svc->interfaces[i].name, n))
			return &svc->interfaces[i];
	return NULL;
}

int varlink_service_dispatch(const struct varlink_service *svc, const struct varlink_call *call,
			     int method_flags, char **answer, size_t *answer_len)
{
	const char *member = strrchr(call->method, '.') + 1;
	const struct varlink_interface *iface;
	char bad[256];
	bool ours = (size_t)(member - 1 - call->method) == strlen(VARLINK_SERVICE_INTERFACE) &&
		    !strncmp(call->method, VARLINK_SERVICE_INTERFACE, strlen(VARLINK_SERVICE_INTERFACE));
	int r;

	*answer = NULL;
	*answer_len = 0;
	if (ours && (!strcmp(member, "GetInfo") || !strcmp(member, "GetInterfaceDescription"))) {
		if (call->oneway)
			return 0; /* nothing to do: they change nothing */
		if (call->upgrade)
			return error_answer(VARLINK_ERROR_INVALID_PARAMETER, "parameter", "upgrade",
					    answer, answer_len);
		if (varlink_idl_check_parameters(VARLINK_IDL_ORG_VARLINK_SERVICE, member, call->parameters,
						 bad, sizeof(bad)) == -EINVAL)
			return error_answer(VARLINK_ERROR_INVALID_PARAMETER, "parameter", bad, answer, answer_len);
		r = !strcmp(member, "GetInfo") ? get_info(svc, answer, answer_len)
					       : get_interface_description(svc, call->parameters, answer, answer_len);
		return r < 0 ? r : 0;
	}
	if (method_flags == VARLINK_METHOD_UNKNOWN) {
		iface = ours ? NULL : interface_of(svc, call->method);
		if (call->oneway)
			return 0;
		r = error_answer(iface && varlink_idl_declares_method(iface->description, member)
				 ? VARLINK_ERROR_METHOD_NOT_IMPLEMENTED : VARLINK_ERROR_METHOD_NOT_FOUND,
				 "method", call->method, answer, answer_len);
		return r < 0 ? r : 0;
	}
	if (call->upgrade || ((method_flags & VARLINK_METHOD_REQUIRES_MORE) && !call->more)) {
		if (call->oneway)
			return 0;
		r = call->upgrade ? error_answer(VARLINK_ERROR_INVALID_PARAMETER, "parameter", "upgrade",
						 answer, answer_len)
				  : error_answer(VARLINK_ERROR_EXPECTED_MORE, NULL, NULL, answer, answer_len);
		return r < 0 ? r : 0;
	}
	iface = interface_of(svc, call->method);
	if (iface && varlink_idl_check_parameters(iface->description, member, call->parameters,
						  bad, sizeof(bad)) == -EINVAL) {
		if (call->oneway)
			return 0;
		r = error_answer(VARLINK_ERROR_INVALID_PARAMETER, "parameter", bad, answer, answer_len);
		return r < 0 ? r : 0;
	}
	return 1;
}
