/* SPDX-License-Identifier: MIT */
/* p2pctl.h — what p2pctl's files share: the exit statuses, the state of
 * one run (struct ctl), and each file's functions. main.c parses the
 * global options and finds the socket; commands.c has the table of
 * commands (each: its options, how its call's parameters are built from
 * its arguments, how its reply is printed) and runs them; connection.c
 * talks to p2p-peerd and explains its errors; output.c prints (tables,
 * sizes, JSON, messages, each command's reply); password.c reads passwords
 * without echo. */
#ifndef P2P_P2PCTL_H
#define P2P_P2PCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "peer_iface.h"
#include "validate.h"
#include "varlink.h"

/* Exit statuses: documented in p2pctl(1); never renumber. */
enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,
	EXIT_USAGE = 2,
	EXIT_NOT_LOGGED_IN = 3,
	EXIT_NOT_FOUND = 4,
	EXIT_UNREACHABLE = 5,
	EXIT_VERIFICATION = 6,
};

#define DEFAULT_TIMEOUT_S 30
#define SLOW_TIMEOUT_S 600
#define PASSWORD_MAX PEER_PASSWORD_MAX
#define RUNDIR RUNSTATEDIR "/p2p"

struct ctl {
	const char *socket;   /* resolved socket path */
	char *socket_owned;
	char peer[USERNAME_MAX + 1]; /* for messages: the NAME in p2p-peerd@NAME */
	int timeout_ms;
	bool timeout_set;     /* --timeout given */
	bool json;
	bool quiet;
	bool color;
	bool tty_out;         /* stdout is a terminal */
	struct varlink_conn *conn;
};

/* password.c */
struct pw_opts {
	bool from_stdin;
	const char *file;
};
int read_line_fd(int fd, char *buf, size_t size);
int read_secret(int fd, char *buf, size_t size);
int prompt_tty(const char *prompt, char *buf, size_t size, bool echo);
int get_password(const struct pw_opts *o, const char *user, bool twice, char *pw, size_t size);

/* What a command's options and arguments said (commands.c), for its call's
 * parameters and for printing its reply (output.c). */
struct cmd_args {
	int argc;             /* the command's words: argv[0] is its name, */
	char **argv;          /* argv[optind] its first argument */
	struct pw_opts pw;    /* register, login: --password-stdin, --password-file */
	char user[USERNAME_MAX + 2]; /* register, login: the user name */
	const char *id;       /* cancel, pause, resume: the transfer */
	const char *exact;    /* search: --exact */
	long long limit, offset; /* search: --limit, --offset */
	const char *from, *to; /* download: --from, --to */
	bool force;           /* download: --force */
};

/* output.c */
extern const char *prog;
void errmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* With --json: a failure that printed no JSON yet prints one object
 * {"error","parameters":{"message","exit_status"}} on stdout (main.c). */
void output_json_failure(int status);
#define C_RESET "\033[0m"
#define C_BOLD  "\033[1m"
#define C_GREEN "\033[32m"
#define C_RED   "\033[31m"
#define C_YELLOW "\033[33m"
const char *color(const struct ctl *c, const char *code);
void human_size(uint64_t n, char *out, size_t outlen);
void human_duration(double s, char *out, size_t outlen);
char *safe_text(const char *s);
size_t text_width(const char *s);
#define TABLE_MAX_COLS 8
struct table {
	size_t ncols, nrows, cap;
	const char *head[TABLE_MAX_COLS];
	bool right[TABLE_MAX_COLS];
	char **cells; /* nrows * ncols, owned */
};
void table_add(struct table *t, ...);
void table_print(const struct ctl *c, struct table *t);
void print_json(struct json_object *o);
const char *jstr(struct json_object *o, const char *key, const char *dflt);
int64_t jint(struct json_object *o, const char *key);
double jdouble(struct json_object *o, const char *key);
bool jbool(struct json_object *o, const char *key);
struct json_object *jarray(struct json_object *o, const char *key);

/* Each command's reply for humans. */
typedef void cmd_print(const struct ctl *c, const struct cmd_args *a, struct json_object *reply);
cmd_print print_registered, print_logged_in, print_logged_out, print_indexed, print_status, print_shared,
	print_results, print_transfers, print_cancelled, print_paused, print_resumed, print_rates,
	print_downloaded;
/* Download progress: a bar on a terminal, a line a second otherwise. */
struct progress {
	bool tty;
	bool drawn;
	int64_t last_ms;
};
void progress_show(const struct ctl *c, struct progress *pr, struct json_object *p);
void progress_end(struct progress *pr);

/* connection.c */
int unreachable(const struct ctl *c, int err);
int ctl_connect(struct ctl *c);
int explain_error(const struct ctl *c, const char *method, struct varlink_reply *r);
int received(struct ctl *c, const char *method, int e, struct varlink_reply *r, enum varlink_fault fault);
int receive(struct ctl *c, const char *method, int timeout_ms, struct varlink_reply *r);
int call(struct ctl *c, const char *method, struct json_object *params, struct varlink_reply *r);

/* commands.c */
struct option;
struct cmd {
	const char *name;
	const char *args;
	const char *summary;
	const char *options;  /* help text for the command's own options */
	const struct option *opts; /* the command's own options, nopts of them */
	size_t nopts;
	int min_args, max_args; /* arguments after the options; min_args < 0: params() checks */
	const char *method;   /* the varlink method it calls */
	/* The call's parameters from a (NULL: the call has none): EXIT_OK, or
	 * an exit status after a message. */
	int (*params)(const struct cmd *cmd, struct cmd_args *a, struct json_object *params);
	cmd_print *print;     /* the reply for humans; --json prints it as it came */
	/* A command that is more than one call and one reply (download) does
	 * it all here, once its options and arguments are parsed. */
	int (*run)(struct ctl *c, const struct cmd *cmd, struct cmd_args *a);
};
/* Common options every command takes after its name. */
enum { OPT_JSON = 1000, OPT_PW_STDIN, OPT_PW_FILE, OPT_EXACT, OPT_LIMIT, OPT_OFFSET,
       OPT_FROM, OPT_TO, OPT_FORCE };
extern const struct cmd commands[];
extern const size_t ncommands;
const struct cmd *find_cmd(const char *name);
void cmd_usage(FILE *f, const struct cmd *cmd);
/* Parse the command's options and arguments, make its call, print the
 * reply: the exit status. argv[0] is the command's name. */
int run_command(struct ctl *c, const struct cmd *cmd, int argc, char **argv);
bool parse_number(const char *opt, const char *arg, long long min, long long max, long long *out);

#endif
