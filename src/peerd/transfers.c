/* SPDX-License-Identifier: MIT */
/* transfers.c — owns the peer's downloads as a set: starting one (search
 * the directory, then download.c's plan and worker), following one that
 * is already running, STATE_DIR/transfers (so the next start continues
 * them), noticing when one ends (a finished download into the shared
 * folder is shared at once), and reaping finished ones. It runs on the
 * main loop whether or not there is a control socket; download.c owns the
 * fetching itself. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "file.h"
#include "log.h"
#include "peerd.h"

#define TICK_MS 250          /* progress at most 4 times a second */
#define KEEP_ENDED_S 600     /* a finished transfer stays listed this long */

struct transfers {
	struct peerd *p;
	struct transfer *list;
	struct event *tick, *wake;
	int wake_fd;             /* eventfd: a worker says its transfer ended */
	bool stopping;           /* keep the saved list as it is */
	bool continued;          /* the saved list was started again */
	void (*observer)(void *arg);
	void *observer_arg;
};

static const char *const state_names[] = {
	[TRANSFER_RUNNING] = "running", [TRANSFER_DONE] = "done",
	[TRANSFER_FAILED] = "failed", [TRANSFER_CANCELLED] = "cancelled",
};

/* ---- STATE_DIR/transfers ------------------------------------------------- */

/* The downloads running now, as a JSON array of {"name","to"} (and
 * "paused", "force" when set), so the next
 * start of peerd continues them (after SIGTERM, kill -9 or a crash alike).
 * Written atomically whenever the set changes, but not while stopping, so
 * that what was running stays listed. */
static int saved_path(struct transfers *tr, char *path, size_t len)
{
	const char *dir = tr->p->set.state_dir;

	if (!dir || (size_t)snprintf(path, len, "%s/transfers", dir) >= len)
		return -ENOENT;
	return 0;
}

static int fill_text(FILE *f, void *text)
{
	return fputs(text, f) >= 0 ? 0 : -EIO;
}

static void save(struct transfers *tr)
{
	struct json_object *arr;
	char path[4200];
	const char *text;
	int e;

	if (tr->stopping || saved_path(tr, path, sizeof(path)) < 0)
		return;
	arr = json_object_new_array();
	for (struct transfer *t = tr->list; t && arr; t = t->next) {
		struct json_object *o;

		pthread_mutex_lock(&t->lock);
		if ((t->state == TRANSFER_RUNNING || t->paused) && (o = json_object_new_object())) {
			json_object_object_add(o, "name", json_object_new_string(t->name));
			json_object_object_add(o, "to", json_object_new_string(t->to));
			if (t->paused)
				json_object_object_add(o, "paused", json_object_new_boolean(true));
			if (t->force)
				json_object_object_add(o, "force", json_object_new_boolean(true));
			json_object_array_add(arr, o);
		}
		pthread_mutex_unlock(&t->lock);
	}
	text = arr ? json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN) : NULL;
	if (text && (e = file_write_atomic(path, fill_text, (void *)text, FILE_SYNC)) < 0)
		log_errno(LOG_WARNING, -e, "cannot save the transfer list %s", path);
	json_object_put(arr);
}

/* ---- starting ------------------------------------------------------------- */

struct start_call {
	struct transfers *tr;
	char id[17];             /* resuming: the paused transfer's id, kept */
	char name[FILENAME_MAX_BYTES + 1];
	char from[USERNAME_MAX + 1];
	char to[4096];
	bool force;              /* replace an existing file of other content */
	transfers_started *cb;
	void *arg;
};

static struct transfer *running(struct transfers *tr, const char *name, const char *to)
{
	for (struct transfer *t = tr->list; t; t = t->next) {
		bool same;

		pthread_mutex_lock(&t->lock);
		same = t->state == TRANSFER_RUNNING && !strcmp(t->name, name) && !strcmp(t->to, to);
		pthread_mutex_unlock(&t->lock);
		if (same)
			return t;
	}
	return NULL;
}

static void transfer_free(struct transfer *t)
{
	if (t->has_thread)
		pthread_join(t->thread, NULL);
	block_list_free(&t->landed.blocks);
	free(t->plan);
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->cond);
	free(t);
}

static void searched(void *arg, const struct dir_result *r)
{
	struct start_call *sc = arg;
	struct transfers *tr = sc->tr;
	struct peerd *p = tr->p;
	const char *error = "TransferFailed";
	struct transfer *t;
	uint8_t rnd[8];

	if (r->status == DIR_NOT_LOGGED_IN || r->status == DIR_UNAUTHORIZED) {
		sc->cb(sc->arg, NULL, PEER_E_NOT_LOGGED_IN, r->message);
		goto out;
	}
	if (r->status != DIR_OK && r->status != DIR_NOT_FOUND) {
		sc->cb(sc->arg, NULL, PEER_E_DIRECTORY_UNREACHABLE, r->message);
		goto out;
	}
	/* Started meanwhile by another call: follow that one. */
	if ((t = running(tr, sc->name, sc->to))) {
		sc->cb(sc->arg, t, 0, NULL);
		goto out;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		sc->cb(sc->arg, NULL, PEER_E_TRANSFER_FAILED, "out of memory");
		goto out;
	}
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	t->limit = &p->download_limit; /* rate 0: no wait; SetRates may change it */
	t->dc = p->dc;
	t->wake_fd = tr->wake_fd;
	snprintf(t->name, sizeof(t->name), "%s", sc->name);
	snprintf(t->to, sizeof(t->to), "%s", sc->to);
	t->force = sc->force;
	t->progress_bytes = p->set.download_progress_bytes;
	t->progress_interval = p->set.download_progress_interval;
	/* Every entry with a size and SHA-256, every version, in the
	 * directory's order (at most MAX_HITS): download_plan decides. */
	if (download_plan(t, r->hits, r->nhits < MAX_HITS ? r->nhits : MAX_HITS, session_user(p->session),
			  sc->from[0] ? sc->from : NULL, &error) < 0) {
		transfer_free(t);
		if (!strcmp(error, "NotFound"))
			sc->cb(sc->arg, NULL, PEER_E_NOT_FOUND, NULL);
		else
			sc->cb(sc->arg, NULL, PEER_E_TRANSFER_FAILED, "out of memory");
		goto out;
	}
	crypto_random(rnd, sizeof(rnd));
	crypto_hex(rnd, sizeof(rnd), t->id);
	/* Resumed, or the same file again: it takes the paused one's place
	 * (and, resumed, its id). */
	for (struct transfer **pt = &tr->list; *pt;) {
		struct transfer *old = *pt;

		if (old->paused && old->state != TRANSFER_RUNNING &&
		    (sc->id[0] ? !strcmp(old->id, sc->id) : !strcmp(old->name, t->name) && !strcmp(old->to, t->to))) {
			*pt = old->next;
			transfer_free(old);
		} else {
			pt = &old->next;
		}
	}
	if (sc->id[0])
		memcpy(t->id, sc->id, sizeof(t->id));
	t->state = TRANSFER_RUNNING;
	t->started = mono_now();
	if (download_begin(t) < 0) {
		transfer_free(t);
		sc->cb(sc->arg, NULL, PEER_E_TRANSFER_FAILED, "cannot start a thread");
		goto out;
	}
	t->has_thread = true;
	t->next = tr->list;
	tr->list = t;
	save(tr);
	sc->cb(sc->arg, t, 0, NULL);
out:
	free(sc);
}

void transfers_start(struct transfers *tr, const char *name, const char *from, const char *to, bool force,
		     transfers_started *cb, void *arg)
{
	struct start_call *sc;
	struct transfer *t;

	if (!session_logged_in(tr->p->session)) {
		cb(arg, NULL, PEER_E_NOT_LOGGED_IN, NULL);
		return;
	}
	/* The same file into the same folder is already on its way: follow
	 * that one rather than race it for the partial file. */
	if ((t = running(tr, name, to))) {
		cb(arg, t, 0, NULL);
		return;
	}
	sc = calloc(1, sizeof(*sc));
	if (!sc) {
		cb(arg, NULL, PEER_E_TRANSFER_FAILED, "out of memory");
		return;
	}
	sc->tr = tr;
	snprintf(sc->name, sizeof(sc->name), "%s", name);
	snprintf(sc->from, sizeof(sc->from), "%s", from ? from : "");
	snprintf(sc->to, sizeof(sc->to), "%s", to);
	sc->force = force;
	sc->cb = cb;
	sc->arg = arg;
	dir_search_file(tr->p->dc, name, searched, sc);
}

int transfers_pause(struct transfers *tr, const char *id)
{
	for (struct transfer *t = tr->list; t; t = t->next) {
		bool hit;

		pthread_mutex_lock(&t->lock);
		hit = t->state == TRANSFER_RUNNING && !strcmp(t->id, id);
		if (hit)
			t->paused = true;
		pthread_mutex_unlock(&t->lock);
		if (hit) {
			download_cancel(t);
			return 0;
		}
	}
	return -ENOENT;
}

void transfers_resume(struct transfers *tr, const char *id, transfers_started *cb, void *arg)
{
	struct start_call *sc;
	struct transfer *t;

	for (t = tr->list; t; t = t->next) {
		bool hit;

		pthread_mutex_lock(&t->lock);
		hit = t->paused && t->state != TRANSFER_RUNNING && t->reported && !strcmp(t->id, id);
		pthread_mutex_unlock(&t->lock);
		if (hit)
			break;
	}
	if (!t) {
		cb(arg, NULL, PEER_E_NOT_FOUND, NULL);
		return;
	}
	if (!session_logged_in(tr->p->session)) {
		cb(arg, NULL, PEER_E_NOT_LOGGED_IN, NULL);
		return;
	}
	sc = calloc(1, sizeof(*sc));
	if (!sc) {
		cb(arg, NULL, PEER_E_TRANSFER_FAILED, "out of memory");
		return;
	}
	sc->tr = tr;
	memcpy(sc->id, t->id, sizeof(sc->id));
	snprintf(sc->name, sizeof(sc->name), "%s", t->name);
	snprintf(sc->to, sizeof(sc->to), "%s", t->to);
	sc->force = t->force;
	sc->cb = cb;
	sc->arg = arg;
	dir_search_file(tr->p->dc, sc->name, searched, sc);
}

/* A paused transfer listed in STATE_DIR/transfers: listed again, not started. */
static void add_paused(struct transfers *tr, const char *name, const char *to, bool force)
{
	struct transfer *t = calloc(1, sizeof(*t));
	uint8_t rnd[8];

	if (!t)
		return;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	snprintf(t->name, sizeof(t->name), "%s", name);
	snprintf(t->to, sizeof(t->to), "%s", to);
	crypto_random(rnd, sizeof(rnd));
	crypto_hex(rnd, sizeof(rnd), t->id);
	t->state = TRANSFER_CANCELLED;
	t->paused = t->reported = true;
	t->force = force;
	t->ended_at = mono_now();
	snprintf(t->error, sizeof(t->error), "Cancelled");
	snprintf(t->message, sizeof(t->message), "paused");
	t->wake_fd = -1;
	t->next = tr->list;
	tr->list = t;
}

struct continue_call {
	struct transfers *tr;
	char name[FILENAME_MAX_BYTES + 1], to[4096];
};

/* A saved entry's boolean key (absent: false). */
static bool saved_flag(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_boolean) &&
	       json_object_get_boolean(v);
}

static void continued(void *arg, struct transfer *t, enum peer_error err, const char *message)
{
	struct continue_call *cc = arg;

	if (t)
		log_info("continuing the download of %s into %s", cc->name, cc->to);
	else if (err != PEER_E_DIRECTORY_UNREACHABLE || !message || strcmp(message, "p2p-peerd is stopping"))
		log_warn("cannot continue the download of %s into %s: %s%s%s", cc->name, cc->to,
			 peer_error_name(err) + strlen(PEER_IFACE "."), message ? ": " : "", message ? message : "");
	free(cc);
}

void transfers_continue_saved(struct transfers *tr)
{
	struct json_object *arr, *name, *to;
	char path[4200];

	if (tr->continued)
		return;
	tr->continued = true;
	if (saved_path(tr, path, sizeof(path)) < 0 || access(path, F_OK) < 0)
		return;
	arr = json_object_from_file(path);
	for (size_t i = 0; arr && json_object_is_type(arr, json_type_array) && i < json_object_array_length(arr);
	     i++) {
		struct json_object *o = json_object_array_get_idx(arr, i);
		struct continue_call *cc;

		if (!json_object_object_get_ex(o, "name", &name) || !json_object_object_get_ex(o, "to", &to) ||
		    !json_object_is_type(name, json_type_string) || !json_object_is_type(to, json_type_string) ||
		    !valid_filename(json_object_get_string(name), strlen(json_object_get_string(name))) ||
		    json_object_get_string(to)[0] != '/' || strlen(json_object_get_string(to)) >= sizeof(cc->to)) {
			log_warn("%s: entry %zu is not {\"name\",\"to\"}; skipped", path, i);
			continue;
		}
		if (saved_flag(o, "paused")) {
			add_paused(tr, json_object_get_string(name), json_object_get_string(to), saved_flag(o, "force"));
			continue;
		}
		cc = calloc(1, sizeof(*cc));
		if (!cc)
			break;
		cc->tr = tr;
		snprintf(cc->name, sizeof(cc->name), "%s", json_object_get_string(name));
		snprintf(cc->to, sizeof(cc->to), "%s", json_object_get_string(to));
		transfers_start(tr, cc->name, NULL, cc->to, saved_flag(o, "force"), continued, cc);
	}
	json_object_put(arr);
}

/* ---- reports ---------------------------------------------------------------- */

/* The transfer as JSON; the caller holds t->lock. */
static struct json_object *transfer_json(struct transfer *t, double now)
{
	struct json_object *o = json_object_new_object();
	double secs = t->state == TRANSFER_RUNNING ? now - t->started : t->seconds;

	json_object_object_add(o, "id", json_object_new_string(t->id));
	json_object_object_add(o, "name", json_object_new_string(t->name));
	json_object_object_add(o, "state", json_object_new_string(t->paused && t->state != TRANSFER_RUNNING
								   ? "paused" : state_names[t->state]));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)t->size));
	json_object_object_add(o, "received", json_object_new_int64((int64_t)t->received));
	json_object_object_add(o, "rate", json_object_new_int64(secs > 0 ? (int64_t)(t->received / secs) : 0));
	json_object_object_add(o, "sources", json_object_new_int(t->state == TRANSFER_RUNNING ? t->sources : 0));
	return o;
}

int transfer_report(struct transfer *t, struct json_object **out, const char **error)
{
	char path[4400];
	struct json_object *o;
	int r;

	pthread_mutex_lock(&t->lock);
	if (t->state == TRANSFER_RUNNING) {
		*out = transfer_json(t, mono_now());
		r = 1;
	} else if (t->state == TRANSFER_DONE) {
		o = transfer_json(t, mono_now());
		snprintf(path, sizeof(path), "%s/%s", t->to, t->name);
		json_object_object_add(o, "path", json_object_new_string(path));
		json_object_object_add(o, "sha256", json_object_new_string(t->sha256));
		json_object_object_add(o, "seconds", json_object_new_double(t->seconds));
		json_object_object_del(o, "rate");
		json_object_object_del(o, "sources");
		json_object_object_del(o, "received");
		json_object_object_add(o, "sources_used", json_object_new_int(t->sources_used));
		*out = o;
		r = 0;
	} else {
		o = json_object_new_object();
		json_object_object_add(o, "name", json_object_new_string(t->name));
		json_object_object_add(o, "message", json_object_new_string(t->message));
		json_object_object_add(o, "received", json_object_new_int64((int64_t)t->received));
		/* Whether trying again later can help (p2pctl says "run again" only then). */
		json_object_object_add(o, "retry", json_object_new_boolean(t->retry));
		if (t->state == TRANSFER_CANCELLED)
			json_object_object_add(o, "id", json_object_new_string(t->id));
		*error = t->state == TRANSFER_CANCELLED ? "Cancelled" : t->error;
		*out = o;
		r = -1;
	}
	pthread_mutex_unlock(&t->lock);
	return r;
}

struct json_object *transfers_list_json(struct transfers *tr)
{
	struct json_object *arr = json_object_new_array();
	double now = mono_now();

	for (struct transfer *t = tr->list; t && arr; t = t->next) {
		pthread_mutex_lock(&t->lock);
		json_object_array_add(arr, transfer_json(t, now));
		pthread_mutex_unlock(&t->lock);
	}
	return arr;
}

int transfers_active(struct transfers *tr)
{
	int n = 0;

	for (struct transfer *t = tr->list; t; t = t->next) {
		pthread_mutex_lock(&t->lock);
		n += t->state == TRANSFER_RUNNING;
		pthread_mutex_unlock(&t->lock);
	}
	return n;
}

int transfers_cancel(struct transfers *tr, const char *id)
{
	for (struct transfer **pt = &tr->list; *pt; pt = &(*pt)->next) {
		struct transfer *t = *pt;
		bool hit, paused;

		pthread_mutex_lock(&t->lock);
		hit = !strcmp(t->id, id) && (t->state == TRANSFER_RUNNING || (t->paused && t->reported));
		paused = t->state != TRANSFER_RUNNING;
		pthread_mutex_unlock(&t->lock);
		if (hit && paused) {
			/* A paused one is forgotten; its partial file stays. */
			*pt = t->next;
			transfer_free(t);
			save(tr);
			return 0;
		}
		if (hit) {
			download_cancel(t);
			return 0;
		}
	}
	return -ENOENT;
}

/* ---- the end of a transfer -------------------------------------------------- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct transfers *tr = arg;
	struct peerd *p = tr->p;
	double now = mono_now();
	bool reindex = false, ended = false;
	char folder[4096];
	uint64_t n;

	if ((what & EV_READ) && read(fd, &n, sizeof(n)) < 0)
		log_debug("transfers: eventfd read: %s", strerror(errno));
	/* Watchers first: they report the end before the transfer is reaped. */
	if (tr->observer)
		tr->observer(tr->observer_arg);
	for (struct transfer **pt = &tr->list; *pt;) {
		struct transfer *t = *pt;
		bool reap = false;

		pthread_mutex_lock(&t->lock);
		if (t->state != TRANSFER_RUNNING && !t->reported) {
			t->reported = true;
			t->ended_at = now;
			ended = true;
			/* A finished download into the shared folder is shared at once;
			 * verified already, so the scan need not read it again. */
			if (t->state == TRANSFER_DONE && realpath(p->set.folder, folder) && !strcmp(folder, t->to)) {
				share_remember(&p->share, &t->landed);
				reindex = true;
			}
		} else if (t->reported && !t->paused && now - t->ended_at > KEEP_ENDED_S) {
			reap = true;
		}
		pthread_mutex_unlock(&t->lock);
		if (reap) {
			*pt = t->next;
			transfer_free(t);
		} else {
			pt = &t->next;
		}
	}
	if (ended)
		save(tr);
	if (reindex)
		watch_rescan(p->watch, NULL, NULL);
}

/* ---- life ---------------------------------------------------------------- */

int transfers_new(struct peerd *p, struct transfers **out)
{
	struct transfers *tr = calloc(1, sizeof(*tr));
	struct timeval tv = { 0, TICK_MS * 1000 };

	if (!tr)
		return -ENOMEM;
	tr->p = p;
	tr->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	tr->tick = event_new(p->base, -1, EV_PERSIST, on_tick, tr);
	tr->wake = tr->wake_fd >= 0 ? event_new(p->base, tr->wake_fd, EV_READ | EV_PERSIST, on_tick, tr) : NULL;
	if (!tr->tick || !tr->wake || event_add(tr->tick, &tv) < 0 || event_add(tr->wake, NULL) < 0) {
		transfers_free(tr);
		return -ENOMEM;
	}
	*out = tr;
	return 0;
}

void transfers_set_download_rate(struct peerd *p, long long rate)
{
	/* A burst of one 64 KiB slice at most, so a limit holds from the start. */
	double burst = rate < (64 << 10) ? (double)rate : (double)(64 << 10);

	pthread_mutex_lock(&p->download_limit.lock);
	ratelimit_init(&p->download_limit.rl, (double)rate, burst, mono_now());
	pthread_mutex_unlock(&p->download_limit.lock);
	p->set.download_rate = rate;
}

void transfers_set_observer(struct transfers *tr, void (*fn)(void *arg), void *arg)
{
	tr->observer = fn;
	tr->observer_arg = arg;
}

void transfers_stopping(struct transfers *tr)
{
	if (tr)
		tr->stopping = true;
}

void transfers_free(struct transfers *tr)
{
	if (!tr)
		return;
	tr->stopping = true; /* running transfers stay listed, to continue at the next start */
	while (tr->list) {
		struct transfer *t = tr->list;

		download_cancel(t);
		tr->list = t->next;
		transfer_free(t); /* joins its worker */
	}
	if (tr->tick)
		event_free(tr->tick);
	if (tr->wake)
		event_free(tr->wake);
	if (tr->wake_fd >= 0)
		close(tr->wake_fd);
	free(tr);
}
