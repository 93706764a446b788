/* SPDX-License-Identifier: MIT */
/* conf.c — see conf.h. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "log.h"

#define FIELD(obj, key, type) ((type *)((char *)(obj) + (key)->offset))

static int conf_error(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int conf_error(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

const struct conf_key *conf_find(const struct conf_key *keys, const char *name)
{
	for (; keys->name; keys++)
		if (strcmp(keys->name, name) == 0)
			return keys;
	return NULL;
}

void conf_strlist_free(struct conf_strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static int set_string(char **field, const char *value)
{
	char *copy = strdup(value);

	if (!copy)
		return -ENOMEM;
	free(*field);
	*field = copy;
	return 0;
}

/* Strict decimal integer: optional '-', digits, nothing else. */
static bool parse_ll(const char *s, long long *out)
{
	char *end;

	if (!*s || (*s != '-' && (*s < '0' || *s > '9')))
		return false;
	errno = 0;
	*out = strtoll(s, &end, 10);
	return errno == 0 && *end == '\0';
}

static int set_int(const struct conf_key *key, void *obj, long long v, const char *source,
		   char *err, size_t errlen)
{
	if (v < key->min || v > key->max)
		return conf_error(err, errlen, "%s: key \"%s\": %lld is out of range (%lld..%lld)",
				  source, key->name, v, key->min, key->max);
	*FIELD(obj, key, long long) = v;
	return 0;
}

static int apply_value(const struct conf_key *key, void *obj, struct json_object *val,
		       const char *source, char *err, size_t errlen)
{
	enum json_type t = json_object_get_type(val);
	long long v;

	switch (key->type) {
	case CONF_STRING:
		if (t != json_type_string)
			return conf_error(err, errlen, "%s: key \"%s\": expected a string", source, key->name);
		return set_string(FIELD(obj, key, char *), json_object_get_string(val));
	case CONF_INT:
		if (t == json_type_int) {
			errno = 0;
			v = json_object_get_int64(val);
			if (errno)
				return conf_error(err, errlen, "%s: key \"%s\": integer out of range", source, key->name);
		} else if (t == json_type_string && parse_ll(json_object_get_string(val), &v)) {
			/* the seed writes numbers as strings */
		} else {
			return conf_error(err, errlen, "%s: key \"%s\": expected an integer", source, key->name);
		}
		return set_int(key, obj, v, source, err, errlen);
	case CONF_BOOL:
		if (t != json_type_boolean)
			return conf_error(err, errlen, "%s: key \"%s\": expected true or false", source, key->name);
		*FIELD(obj, key, bool) = json_object_get_boolean(val);
		return 0;
	case CONF_STRLIST: {
		struct conf_strlist list = { 0 };
		size_t n;

		if (t != json_type_array)
			return conf_error(err, errlen, "%s: key \"%s\": expected a list of strings", source, key->name);
		n = json_object_array_length(val);
		list.v = calloc(n ? n : 1, sizeof(char *));
		if (!list.v)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++) {
			struct json_object *item = json_object_array_get_idx(val, i);

			if (json_object_get_type(item) != json_type_string) {
				conf_strlist_free(&list);
				return conf_error(err, errlen, "%s: key \"%s\": item %zu is not a string",
						  source, key->name, i);
			}
			list.v[i] = strdup(json_object_get_string(item));
			if (!list.v[i]) {
				conf_strlist_free(&list);
				return -ENOMEM;
			}
			list.n = i + 1;
		}
		conf_strlist_free(FIELD(obj, key, struct conf_strlist));
		*FIELD(obj, key, struct conf_strlist) = list;
		return 0;
	}
	}
	return -EINVAL;
}

int conf_apply_json(const struct conf_key *keys, void *obj, struct json_object *root,
		    const char *source, char *err, size_t errlen)
{
	if (!json_object_is_type(root, json_type_object))
		return conf_error(err, errlen, "%s: the top level must be a JSON object", source);
	json_object_object_foreach(root, name, val) {
		const struct conf_key *key = conf_find(keys, name);
		int r;

		if (!key) {
			log_warn("%s: unknown key \"%s\" ignored", source, name);
			continue;
		}
		r = apply_value(key, obj, val, source, err, errlen);
		if (r < 0)
			return r;
	}
	return 0;
}

int conf_load_file(const struct conf_key *keys, void *obj, const char *path,
		   char *err, size_t errlen)
{
	struct json_tokener *tok;
	struct json_object *root;
	FILE *f;
	char *text = NULL;
	size_t len = 0;
	int r;

	f = fopen(path, "re");
	if (!f) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		return r;
	}
	{
		FILE *mem = open_memstream(&text, &len);
		char buf[8192];
		size_t n;

		if (!mem) {
			fclose(f);
			return -ENOMEM;
		}
		while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
			fwrite(buf, 1, n, mem);
		r = ferror(f) ? -EIO : 0;
		fclose(mem);
		fclose(f);
		if (r < 0) {
			free(text);
			return conf_error(err, errlen, "%s: read error", path);
		}
	}
	tok = json_tokener_new();
	if (!tok) {
		free(text);
		return -ENOMEM;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	root = json_tokener_parse_ex(tok, text, (int)len);
	if (!root || (size_t)json_tokener_get_parse_end(tok) != len) {
		enum json_tokener_error e = json_tokener_get_error(tok);
		/* Count the line of the error for a useful message. */
		size_t end = json_tokener_get_parse_end(tok), line = 1;

		for (size_t i = 0; i < end && i < len; i++)
			line += text[i] == '\n';
		if (root && e == json_tokener_success) {
			/* trailing bytes after the value: only whitespace is fine */
			size_t i = end;
			while (i < len && strchr(" \t\r\n", text[i]))
				i++;
			if (i == len)
				goto parsed;
		}
		json_object_put(root);
		json_tokener_free(tok);
		free(text);
		return conf_error(err, errlen, "%s:%zu: invalid JSON: %s", path, line,
				  e == json_tokener_success ? "unexpected text after the object"
							    : json_tokener_error_desc(e));
	}
parsed:
	json_tokener_free(tok);
	free(text);
	r = conf_apply_json(keys, obj, root, path, err, errlen);
	json_object_put(root);
	return r;
}

int conf_apply_text(const struct conf_key *keys, void *obj, const char *name,
		    const char *value, char *err, size_t errlen)
{
	const struct conf_key *key = conf_find(keys, name);
	long long v;

	if (!key) {
		conf_error(err, errlen, "unknown setting \"%s\"", name);
		return -ENOENT;
	}
	switch (key->type) {
	case CONF_STRING:
		return set_string(FIELD(obj, key, char *), value);
	case CONF_INT:
		if (!parse_ll(value, &v))
			return conf_error(err, errlen, "--%s: \"%s\" is not an integer", name, value);
		return set_int(key, obj, v, "command line", err, errlen);
	case CONF_BOOL:
		if (!strcmp(value, "yes") || !strcmp(value, "true") || !strcmp(value, "1"))
			*FIELD(obj, key, bool) = true;
		else if (!strcmp(value, "no") || !strcmp(value, "false") || !strcmp(value, "0"))
			*FIELD(obj, key, bool) = false;
		else
			return conf_error(err, errlen, "--%s: \"%s\" is not yes or no", name, value);
		return 0;
	case CONF_STRLIST: {
		struct json_object *arr = json_object_new_array();
		char *copy = strdup(value), *save = NULL;
		int r;

		if (!arr || !copy) {
			json_object_put(arr);
			free(copy);
			return -ENOMEM;
		}
		for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
			json_object_array_add(arr, json_object_new_string(tok));
		r = apply_value(key, obj, arr, "command line", err, errlen);
		json_object_put(arr);
		free(copy);
		return r;
	}
	}
	return -EINVAL;
}

void conf_free(const struct conf_key *keys, void *obj)
{
	for (; keys->name; keys++) {
		if (keys->type == CONF_STRING) {
			free(*FIELD(obj, keys, char *));
			*FIELD(obj, keys, char *) = NULL;
		} else if (keys->type == CONF_STRLIST) {
			conf_strlist_free(FIELD(obj, keys, struct conf_strlist));
		}
	}
}

int conf_copy(const struct conf_key *keys, void *dst, const void *src)
{
	const struct conf_key *k;

	for (k = keys; k->name; k++) {
		const void *from = (const char *)src + k->offset;
		void *to = (char *)dst + k->offset;

		switch (k->type) {
		case CONF_STRING: {
			const char *s = *(char *const *)from;
			*(char **)to = s ? strdup(s) : NULL;
			if (s && !*(char **)to)
				goto oom;
			break;
		}
		case CONF_INT:
			*(long long *)to = *(const long long *)from;
			break;
		case CONF_BOOL:
			*(bool *)to = *(const bool *)from;
			break;
		case CONF_STRLIST: {
			const struct conf_strlist *sl = from;
			struct conf_strlist *dl = to;

			dl->n = 0;
			dl->v = calloc(sl->n ? sl->n : 1, sizeof(char *));
			if (!dl->v)
				goto oom;
			for (size_t i = 0; i < sl->n; i++) {
				dl->v[i] = strdup(sl->v[i]);
				if (!dl->v[i])
					goto oom;
				dl->n = i + 1;
			}
			break;
		}
		}
	}
	return 0;
oom:
	/* Zero the fields not yet copied so conf_free is safe on dst. */
	for (const struct conf_key *z = k + 1; z->name; z++) {
		if (z->type == CONF_STRING)
			*(char **)((char *)dst + z->offset) = NULL;
		else if (z->type == CONF_STRLIST)
			*(struct conf_strlist *)((char *)dst + z->offset) = (struct conf_strlist){ 0 };
	}
	conf_free(keys, dst);
	return -ENOMEM;
}

struct option *conf_long_options(const struct conf_key *keys, const struct option *fixed,
				 size_t nfixed, int val_base)
{
	size_t nkeys = 0, k = nfixed;
	struct option *opts;

	while (keys[nkeys].name)
		nkeys++;
	opts = calloc(nfixed + 2 * nkeys + 1, sizeof(*opts));
	if (!opts)
		return NULL;
	memcpy(opts, fixed, nfixed * sizeof(*opts));
	for (size_t i = 0; i < nkeys; i++) {
		opts[k++] = (struct option){ keys[i].name, required_argument, NULL, val_base + (int)i };
		if (strchr(keys[i].name, '_')) {
			char *dashed = strdup(keys[i].name);

			if (!dashed) {
				conf_long_options_free(opts, keys, val_base);
				return NULL;
			}
			for (char *p = dashed; *p; p++)
				if (*p == '_')
					*p = '-';
			opts[k++] = (struct option){ dashed, required_argument, NULL, val_base + (int)i };
		}
	}
	return opts;
}

void conf_long_options_free(struct option *opts, const struct conf_key *keys, int val_base)
{
	if (!opts)
		return;
	for (struct option *o = opts; o->name; o++)
		if (o->val >= val_base && o->name != keys[o->val - val_base].name)
			free((char *)o->name);
	free(opts);
}

void conf_print_help(FILE *f, const struct conf_help *help, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char opt[64];

		snprintf(opt, sizeof(opt), "--%s", help[i].key);
		for (char *p = opt + 2; *p; p++)
			if (*p == '_')
				*p = '-';
		fprintf(f, "  %-22s  %s\n", opt, help[i].help);
	}
}
