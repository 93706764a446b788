/* varlink_service.c — org.varlink.service and the call flags of a varlink
 * server (varlink_service.h); the wire format is varlink.c's. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "varlink_service.h"

bool varlink_idl_declares_method(const char *idl, const char *member)
{
	size_t n = strlen(member);

	/* Declarations start a line: "method Name(" with any blanks between. */
	for (const char *p = idl; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		const char *q = p;

		while (*q == ' ' || *q == '\t')
			q++;
		if (strncmp(q, "method", 6) != 0 || (q[6] != ' ' && q[6] != '\t'))
			continue;
		for (q += 6; *q == ' ' || *q == '\t'; q++)
			;
		if (strncmp(q, member, n) != 0)
			continue;
		for (q += n; *q == ' ' || *q == '\t'; q++)
			;
		if (*q == '(')
			return true;
	}
	return false;
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
		r = !strcmp(member, "GetInfo") ? get_info(svc, answer, answer_len)
					       : get_interface_description(svc, call->parameters, answer, answer_len);
		return r < 0 ? r : 0;
	}
	if (method_flags == VARLINK_METHOD_UNKNOWN) {
		const struct varlink_interface *iface = ours ? NULL : interface_of(svc, call->method);

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
	return 1;
}
