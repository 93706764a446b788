#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Two p2p-dird replicas on one PostgreSQL database answer searches from
memory, fed by the change stream (issue 16): after random index, re-index,
heartbeat, logout, expiry and user deletion through both, each replica
answers what the database holds; a replica killed and restarted catches
up; PostgreSQL restarted under load: the replicas never answer wrong (an
answer within max_staleness, or 503) and resync; a logout on A fails the
token on B at once; the replicas' answers follow issue 17's name rules
(file names compared in NFC, user names without case)."""
import random
import signal
import threading
import time
import unicodedata
import unittest

import p2ptest
import pgtest
from dirdtest import SHA, Dird

TTL = 5
NAMES = ["holiday %d.jpg" % i for i in range(6)] + ["Song.mp3", "song.MP3", "report.pdf", "notes.txt"]


def skip_reason():
    if not pgtest.bindir() or not pgtest._built_with_pg():
        return "p2p-dird built without PostgreSQL, or PostgreSQL not installed"
    return None


@unittest.skipIf(skip_reason(), skip_reason() or "")
class Stream(unittest.TestCase):
    def setUp(self):
        self.pg = pgtest.server()
        self.db = self.pg.create_database()
        self.dbname = self.db.rsplit("/", 1)[1]
        self.a = self.start()
        self.b = self.start()

    def start(self, wait=True):
        return Dird("--ttl", str(TTL), "--max-staleness", "2", db=self.db, wait=wait)

    def tearDown(self):
        self.a.stop()
        self.b.stop()

    def truth(self, name=None, q=None):
        """What the database holds: (peer, file) of online, live peers."""
        cond = "f.name = '%s'" % name.replace("'", "''") if name else \
            "lower(f.name) LIKE '%%%s%%'" % q.lower()
        out = self.pg.psql("SELECT u.name || '|' || f.name FROM files f JOIN peers p ON p.user_id = f.peer_id"
                           " JOIN users u ON u.id = p.user_id WHERE %s AND p.online AND"
                           " p.last_seen >= floor(extract(epoch FROM clock_timestamp()))::bigint - %d" % (cond, TTL), self.dbname)
        return sorted(tuple(l.split("|", 1)) for l in out.split("\n") if l)

    def answer(self, d, tok, name=None, q=None):
        if name:
            r = d.req("GET", "/search", tok, params={"file": name})
            self.assertIn(r.status_code, (200, 404), r.text)
            return sorted((h["peer"], h["name"]) for h in r.json().get("peers_with_file", []))
        r = d.req("GET", "/search", tok, params={"q": q, "limit": 100})
        self.assertEqual(r.status_code, 200, r.text)
        return sorted((h["peer"], h["name"]) for h in r.json()["results"])

    def synced(self):
        """Both replicas have applied every change the database holds."""
        head = int(self.pg.psql("SELECT seq FROM change_seq", self.dbname))
        return all(d.req("GET", "/healthz").json().get("change") == head for d in (self.a, self.b))

    def check_one(self, d, tok, name=None, q=None):
        # Liveness has a one-second grain: when a peer's TTL runs out between
        # reading the database and asking the replica, ask again.
        for _ in range(5):
            before = self.truth(name=name, q=q)
            got = self.answer(d, tok, name=name, q=q)
            if before == self.truth(name=name, q=q):
                break
        self.assertEqual(got, before, (name, q, d.port))

    def check_all(self, tok_a, tok_b):
        p2ptest.wait_for(self.synced, timeout=5, what="both replicas to apply the stream")
        for n in NAMES:
            self.check_one(self.a, tok_a, name=n)
            self.check_one(self.b, tok_b, name=n)
        for q in ("holiday", "song", "o", "pdf"):
            self.check_one(self.a, tok_a, q=q)
            self.check_one(self.b, tok_b, q=q)

    def index(self, d, tok, files, user, tries=1):
        for _ in range(tries):
            r = d.req("POST", "/index", tok, json={"ip": "127.0.0.1", "port": 4000, "folder": "/srv/" + user,
                                                    "files": [{"name": f, "size": 1, "sha256": SHA} for f in files]})
            if r.status_code != 503:
                break
            time.sleep(0.2)
        self.assertEqual(r.status_code, 200, r.text)

    def test_random_changes_match_the_database(self):
        rnd = random.Random(16)
        # A searcher that stays logged in on each replica.
        self.a.register("searcher")
        ta, tb = self.a.login("searcher"), self.b.login("searcher")
        users = {}  # name -> (token, replica) while logged in
        for step in range(120):
            d = rnd.choice((self.a, self.b))
            op = rnd.random()
            name = "u%d" % rnd.randrange(12)
            if name not in users:
                d.register(name)
                users[name] = d.login(name)
                self.index(d, users[name], rnd.sample(NAMES, rnd.randrange(1, 5)), name)
            elif op < 0.4:
                self.index(d, users[name], rnd.sample(NAMES, rnd.randrange(0, 5)), name)
            elif op < 0.6:
                self.assertIn(d.req("POST", "/heartbeat", users[name]).status_code, (200, 409))
            elif op < 0.75:
                self.assertEqual(d.req("POST", "/logout", users[name]).status_code, 200)
                del users[name]
            elif op < 0.85:
                # User deletion is an administrator's command.
                self.delete_user(name)
                del users[name]
            if step % 10 == 9:
                self.check_all(ta, tb)
        # Expiry: peers that stop heartbeating drop out on both at once.
        time.sleep(TTL + 1.5)
        self.check_all(ta, tb)
        self.assertEqual(self.truth(q="o"), [])

    def delete_user(self, name):
        import subprocess
        r = subprocess.run([p2ptest.binary("p2p-dird"), "--database", self.db, "user", "del", name],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_heartbeats_are_written_in_batches(self):
        # 40 peers beating at once through replica A, each on its own
        # connection: every beat is answered for itself (200, or 409 for a
        # user who never indexed, in the same batches), and A writes them in
        # far fewer statements than beats. Before, a batch held at most one
        # beat per worker (4): at least 42 statements for these 168 beats.
        import socket
        n, rounds = 40, 4
        toks = []
        for i in range(n):
            self.a.register("hb%d" % i)
            toks.append(self.a.login("hb%d" % i))
            self.index(self.a, toks[-1], ["hb%d.bin" % i], "hb%d" % i)
        self.a.register("idle")
        toks += [self.a.login("idle")] * 2
        socks = [socket.create_connection(("127.0.0.1", self.a.port), timeout=30) for _ in toks]
        files = [sk.makefile("rb") for sk in socks]

        def beat_all():
            for sk, tok in zip(socks, toks):
                sk.sendall(("POST /heartbeat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                            "Content-Length: 0\r\n\r\n" % tok).encode())
            codes = []
            for f in files:
                status = int(f.readline().split()[1])
                length = 0
                while True:
                    line = f.readline().strip()
                    if not line:
                        break
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                f.read(length)
                codes.append(status)
            return codes

        try:
            t0 = int(time.time())
            beat_all()  # the sessions are in A's cache from here on
            q0 = self.queries(self.a)
            for _ in range(rounds):
                self.assertEqual(beat_all(), [200] * n + [409] * 2)
            statements = int(self.queries(self.a) - q0) - 1  # the second scrape counts one
        finally:
            for f, sk in zip(files, socks):
                f.close()
                sk.close()
        beats = len(toks) * rounds
        print("# %d heartbeats written in %d statements" % (beats, statements), flush=True)
        self.assertLess(statements, beats // 8)
        seen = int(self.pg.psql("SELECT count(*) FROM peers p JOIN users u ON u.id = p.user_id"
                                " WHERE u.name LIKE 'hb%%' AND p.last_seen >= %d AND p.online" % t0, self.dbname))
        self.assertEqual(seen, n)
        # B sees the beats through the stream.
        p2ptest.wait_for(self.synced, timeout=5, what="both replicas to apply the stream")
        r = self.b.req("GET", "/search", toks[0], params={"file": "hb7.bin"})
        self.assertEqual(r.status_code, 200, r.text)

    def test_logout_on_a_fails_on_b_at_once(self):
        for i in range(20):
            self.a.register("l%d" % i)
            tok = self.a.login("l%d" % i)
            self.index(self.a, tok, ["x.bin"], "l%d" % i)
            # B checks (and caches) the session first.
            self.assertEqual(self.b.req("POST", "/heartbeat", tok).status_code, 200)
            self.assertEqual(self.a.req("POST", "/logout", tok).status_code, 200)
            r = self.b.req("POST", "/heartbeat", tok)
            self.assertEqual(r.status_code, 401, "round %d" % i)

    def test_replica_killed_and_restarted_catches_up(self):
        self.a.register("s")
        ta = self.a.login("s")
        toks = {}
        for i in range(10):
            self.a.register("k%d" % i)
            toks[i] = self.a.login("k%d" % i)
            self.index(self.a, toks[i], ["holiday %d.jpg" % (i % 6), "notes.txt"], "k%d" % i)
        self.b.stop(signal.SIGKILL)
        # While B is down: re-index, log out, delete.
        for i in range(10):
            if i % 3 == 0:
                self.index(self.a, toks[i], ["report.pdf"], "k%d" % i)
            elif i % 3 == 1:
                self.a.req("POST", "/logout", toks[i])
            else:
                self.delete_user("k%d" % i)
        self.b = self.start()
        tb = self.b.login("s")
        self.check_all(ta, tb)
        # And it follows the stream again afterwards.
        self.index(self.a, toks[0], ["Song.mp3"], "k0")
        p2ptest.wait_for(lambda: self.answer(self.b, tb, name="Song.mp3") == [("k0", "Song.mp3")],
                         timeout=2, what="B to see A's index")

    def metric(self, d, name):
        for line in d.req("GET", "/metrics").text.split("\n"):
            if line.startswith(name + " "):
                return float(line.split()[1])
        self.fail("no " + name)

    def queries(self, d):
        return self.metric(d, "p2p_dird_database_queries_total")

    def test_names_follow_issue_17_through_replicas(self):
        nfc = unicodedata.normalize("NFC", "Café Crème.mp3")
        nfd = unicodedata.normalize("NFD", "Café Crème.mp3")
        self.assertNotEqual(nfc, nfd)
        self.assertEqual(self.a.register("alice").status_code, 201)
        # Through the other replica, another spelling of the name is taken.
        for other in ("Alice", "ALICE"):
            r = self.b.register(other)
            self.assertEqual(r.status_code, 409, r.text)
        ta = self.a.login("alice")
        self.index(self.a, ta, [nfd, "x" + unicodedata.normalize("NFD", "ÅNGSTRÖM") + ".txt"], "alice")
        # Logged in on B under another case: the same user, cached session.
        tb = self.b.login("ALICE")
        p2ptest.wait_for(self.synced, timeout=5, what="both replicas to apply the stream")
        want = [("alice", nfd)]
        for d, tok in ((self.a, ta), (self.b, tb)):
            for form in (nfc, nfd):
                self.assertEqual(self.answer(d, tok, name=form), want, (d.port, form))
                self.assertEqual(self.answer(d, tok, q=unicodedata.normalize(
                    "NFC" if form == nfc else "NFD", "é Crè")), want, (d.port, form))
            # NFC, then ASCII case (only), for substring search.
            self.assertEqual(len(self.answer(d, tok, q=unicodedata.normalize("NFC", "ÅngstrÖm"))), 1)
            self.assertEqual(self.answer(d, tok, q=unicodedata.normalize("NFC", "ångström")), [])
            # Exact search stays case-sensitive.
            self.assertEqual(self.answer(d, tok, name=nfc.upper()), [])
            # And the answers came from memory: searches send no statement
            # (a scrape itself sends one; a timer may too: try again).
            for _ in range(3):
                q0 = self.queries(d)
                q1 = self.queries(d)
                for _ in range(5):
                    self.assertEqual(self.answer(d, tok, name=nfc), want)
                    self.assertEqual(self.answer(d, tok, q="crème"), want)
                if self.queries(d) - q1 == q1 - q0:
                    break
            else:
                self.fail("searches on %d sent statements" % d.port)
        # The heartbeat on B under the session of ALICE reaches alice's peer.
        self.assertEqual(self.b.req("POST", "/heartbeat", tb).status_code, 200)
        # A deletion under another case removes alice from both views.
        self.delete_user("ALICE")
        p2ptest.wait_for(self.synced, timeout=5, what="both replicas to apply the deletion")
        self.assertEqual(self.b.register("zed").status_code, 201)
        tz = self.b.login("zed")
        for d in (self.a, self.b):
            self.assertEqual(self.answer(d, tz, name=nfc), [], d.port)
        self.assertEqual(self.a.req("POST", "/heartbeat", ta).status_code, 401)
        self.assertEqual(self.b.req("POST", "/heartbeat", tb).status_code, 401)

    def test_postgresql_restart_under_load(self):
        # A TTL longer than the outage: the peer stays online throughout.
        self.a.stop()
        self.b.stop()
        self.a = Dird("--ttl", "60", "--max-staleness", "2", db=self.db)
        self.b = Dird("--ttl", "60", "--max-staleness", "2", db=self.db)
        self.a.register("s")
        ta, tb = self.a.login("s"), self.b.login("s")
        self.a.register("p")
        tp = self.a.login("p")
        self.index(self.a, tp, ["holiday 1.jpg", "Song.mp3"], "p")
        # B applies A's index a moment after A answered: until then its
        # answer (no holiday) is stale within the bound, not wrong; wait,
        # so that only the restart is under test.
        p2ptest.wait_for(self.synced, timeout=5, what="both replicas to apply the stream")
        # Before the re-index, during it (stale within the bound) and after.
        allowed = ([("p", "holiday 1.jpg")], [("p", "holiday 2.jpg")])
        stop = threading.Event()
        bad, codes = [], {}

        def load(d, tok):
            while not stop.is_set():
                try:
                    r = d.req("GET", "/search", tok, params={"q": "holiday"})
                except Exception:
                    continue
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    got = sorted((h["peer"], h["name"]) for h in r.json()["results"])
                    if got not in allowed:
                        bad.append(got)
                elif r.status_code != 503:
                    bad.append((r.status_code, r.text))

        def beat():
            while not stop.is_set():
                try:
                    self.a.req("POST", "/heartbeat", tp)
                except Exception:
                    pass
                time.sleep(0.5)

        threads = [threading.Thread(target=load, args=(d, t)) for d, t in ((self.a, ta), (self.b, tb))]
        threads.append(threading.Thread(target=beat))
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            self.pg.restart(down=3)   # longer than max_staleness: 503s
            # Back: both resync and answer again (sessions re-checked).
            for d, t in ((self.a, ta), (self.b, tb)):
                p2ptest.wait_for(lambda: d.req("GET", "/search", t, params={"q": "holiday"}).status_code == 200,
                                 timeout=10, what="the replica to resync")
            self.index(self.a, tp, ["holiday 2.jpg"], "p", tries=20)
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(bad, [], codes)
        self.assertGreater(codes.get(503, 0), 0, codes)
        self.assertGreater(codes.get(200, 0), 0, codes)
        self.assertEqual(self.answer(self.b, tb, q="holiday"), [("p", "holiday 2.jpg")])

    def reloads(self, d):
        return self.metric(d, "p2p_dird_replica_reloads_total")

    def test_reload_swaps_in_a_whole_view(self):
        """A replica that cannot prove its view matches the database (its
        last change row is gone when it reconnects, as after a server that
        lost commits) reloads; searches meanwhile get the old view or the
        new one, never an empty or partial one."""
        # A TTL longer than the test: liveness stays out of the answers.
        self.a.stop()
        self.b.stop()
        self.a = Dird("--ttl", "600", "--max-staleness", "2", db=self.db)
        self.b = Dird("--ttl", "600", "--max-staleness", "2", db=self.db)
        self.a.register("s")
        ta, tb = self.a.login("s"), self.b.login("s")
        want = []
        for i in range(30):
            self.a.register("r%d" % i)
            tok = self.a.login("r%d" % i)
            self.index(self.a, tok, ["holiday %d.jpg" % (i % 6), "x%d.bin" % i], "r%d" % i)
            want.append(("r%d" % i, "holiday %d.jpg" % (i % 6)))
        want.sort()
        p2ptest.wait_for(self.synced, timeout=5, what="both replicas to apply the stream")
        stop = threading.Event()
        bad, codes = [], {}

        def load(d, tok):
            while not stop.is_set():
                r = d.req("GET", "/search", tok, params={"q": "holiday", "limit": 100})
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    got = sorted((h["peer"], h["name"]) for h in r.json()["results"])
                    if got != want:
                        bad.append(got)
                elif r.status_code != 503:
                    bad.append((r.status_code, r.text))

        before = [self.reloads(d) for d in (self.a, self.b)]
        threads = [threading.Thread(target=load, args=(d, t)) for d, t in ((self.a, ta), (self.b, tb))]
        for t in threads:
            t.start()
        try:
            for _ in range(5):
                # The rows go (as a lost commit's would), then the
                # followers' connections: each reconnects and reloads.
                n = [self.reloads(d) for d in (self.a, self.b)]
                self.pg.psql("DELETE FROM changes", self.dbname)
                self.pg.psql("SELECT pg_terminate_backend(pid) FROM replica_acks", self.dbname)
                p2ptest.wait_for(lambda: all(self.reloads(d) > x for d, x in zip((self.a, self.b), n)),
                                 timeout=10, what="both replicas to reload")
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(bad, [], codes)
        self.assertGreater(codes.get(200, 0), 0, codes)
        for d, x in zip((self.a, self.b), before):
            self.assertGreaterEqual(self.reloads(d), x + 5)


if __name__ == "__main__":
    p2ptest.run(__name__)
