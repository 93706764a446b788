/* SPDX-License-Identifier: MIT */
/* conf.h — JSON configuration files (json-c) described by a key table.
 *
 * A program describes its settings once, as a table of struct conf_key; the
 * same table reads the JSON config file, applies command-line overrides
 * (`--KEY VALUE` wins over the file) and frees what was allocated. Unknown keys
 * in a file are warned about and ignored; a value of the wrong type or out of
 * range is an error naming the file and the key.
 *
 * Loading never exits: errors are returned with a message in a caller buffer,
 * so SIGHUP can parse into a fresh struct and keep the old one on failure.
 */
#ifndef P2P_CONF_H
#define P2P_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <json-c/json.h>

enum conf_type {
	CONF_STRING,  /* char *, owned by the struct */
	CONF_INT,     /* long long, within [min, max]; a JSON string of digits is accepted (the seed writes "port": "50001") */
	CONF_BOOL,    /* bool; options take yes/no/true/false/1/0 */
	CONF_STRLIST, /* struct conf_strlist */
};

struct conf_strlist {
	char **v;
	size_t n;
};

struct conf_key {
	const char *name;    /* JSON key and long option name */
	enum conf_type type;
	size_t offset;       /* offsetof(struct settings, field) */
	long long min, max;  /* CONF_INT only */
};

#define CONF_ERRLEN 512

/* Apply every key of a parsed JSON object. source names it in messages
 * (usually the file name). Returns 0, or -EINVAL with err filled in. */
int conf_apply_json(const struct conf_key *keys, void *obj, struct json_object *root,
		    const char *source, char *err, size_t errlen);

/* Read and apply a JSON file. -ENOENT etc. if it cannot be read, -EINVAL if
 * it is not valid JSON or a key is bad; err says which. */
int conf_load_file(const struct conf_key *keys, void *obj, const char *path,
		   char *err, size_t errlen);

/* Apply one setting given as text (command line). For CONF_STRLIST the value
 * is a comma-separated list. Returns 0, -ENOENT for an unknown name, or
 * -EINVAL with err filled in. */
int conf_apply_text(const struct conf_key *keys, void *obj, const char *name,
		    const char *value, char *err, size_t errlen);

const struct conf_key *conf_find(const struct conf_key *keys, const char *name);

/* Free every string and list the table owns in obj and zero them. */
void conf_free(const struct conf_key *keys, void *obj);

/* Deep-copy the table's fields from src to dst (dst's fields are overwritten,
 * not freed). Returns 0 or -ENOMEM. */
int conf_copy(const struct conf_key *keys, void *dst, const void *src);

void conf_strlist_free(struct conf_strlist *l);

/* One line of --help for a config key. */
struct conf_help {
	const char *key, *help;
};

/* Print "  --key-with-dashes   help" for every entry, aligned. */
void conf_print_help(FILE *f, const struct conf_help *help, size_t n);

struct option;
/* A getopt_long table: the fixed options, then for every key "--key" and,
 * when the key has '_', also "--key-with-dashes"; a key's option returns
 * val_base + its index in keys. Free with conf_long_options_free(). */
struct option *conf_long_options(const struct conf_key *keys, const struct option *fixed,
				 size_t nfixed, int val_base);
void conf_long_options_free(struct option *opts, const struct conf_key *keys, int val_base);

#endif
