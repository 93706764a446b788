#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-dird scaled out: two replicas on one PostgreSQL database behind
haproxy. Register and log in through A, index through B, search and tickets
through either; then A is killed mid-run and the network (real peers
downloading through the balancer) keeps working through B."""
import hashlib
import os
import shutil
import signal
import threading
import unittest

import requests

import p2ptest
import pgtest
from dirdtest import SHA, Dird
from test_control import Varlink
from test_download import download

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def haproxy(port, backends):
    """haproxy in HTTP mode on 127.0.0.1:port, round robin over backends,
    health-checked with GET /healthz; a request whose connection fails is
    sent to another replica."""
    d = p2ptest.tempdir("p2p-haproxy-")
    cfg = os.path.join(d, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write("""global
    maxconn 512
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
listen dird
    bind 127.0.0.1:%d
    balance roundrobin
    option httpchk GET /healthz
    default-server check inter 200ms fall 1 rise 1
""" % port)
        for i, p in enumerate(backends):
            f.write("    server r%d 127.0.0.1:%d\n" % (i, p))
    proc = p2ptest.Process([HAPROXY, "-db", "-f", cfg])
    p2ptest.wait_for(lambda: p2ptest.port_open(port), what="haproxy on port %d" % port)
    return proc


def skip_reason():
    if not pgtest.bindir() or not pgtest._built_with_pg():
        return "p2p-dird built without PostgreSQL, or PostgreSQL not installed"
    if not os.access(HAPROXY, os.X_OK):
        return "haproxy not installed"
    return None


@unittest.skipIf(skip_reason(), skip_reason() or "")
class Replicas(unittest.TestCase):
    def setUp(self):
        db = pgtest.server().create_database()
        # Both start at once on an empty database: the schema migration
        # must happen exactly once (advisory lock) and both must come up.
        self.a = Dird("--sweep-interval", "1", db=db, wait=False)
        self.b = Dird("--sweep-interval", "1", db=db, wait=False)
        self.a.wait_healthy()
        self.b.wait_healthy()
        self.lb_port = p2ptest.free_port()
        self.lb = haproxy(self.lb_port, [self.a.port, self.b.port])
        self.url = "http://127.0.0.1:%d" % self.lb_port
        self.peers = []

    def tearDown(self):
        for proc, v in self.peers:
            v.close()
            proc.stop()
        self.lb.stop()
        self.a.stop()
        self.b.stop()

    def lb_req(self, method, path, token=None, **kw):
        headers = {"Authorization": "Bearer " + token} if token else {}
        return requests.request(method, self.url + path, headers=headers, timeout=10, **kw)

    def test_migrated_once(self):
        out = self.a.proc.output() + self.b.proc.output()
        for v in (1, 2, 3, 4):
            self.assertEqual(out.count("database schema migrated to version %d" % v), 1, out)
        self.assertEqual(pgtest.server().psql("SELECT version FROM p2p_schema", self.a.db.rsplit("/", 1)[1]).strip(),
                         "4")

    def test_state_is_shared(self):
        a, b = self.a, self.b
        self.assertEqual(a.register("alice").status_code, 201)
        self.assertEqual(b.register("alice").status_code, 409)
        tok = a.login("alice")
        self.assertEqual(b.req("POST", "/verifyLogin", tok).status_code, 200)
        r = b.req("POST", "/index", tok, json={"ip": "127.0.0.1", "port": 50001, "folder": "/srv/alice",
                                                "files": [{"name": "Shared Song.ogg", "size": 3, "sha256": SHA}]})
        self.assertEqual(r.status_code, 200, r.text)
        a.register("bob")
        bob = b.login("bob")
        for d in (a, b):
            r = d.req("GET", "/search", bob, params={"file": "Shared Song.ogg"})
            self.assertEqual(r.status_code, 200, r.text)
            self.assertEqual(r.json()["peers_with_file"][0]["peer"], "alice")
            r = d.req("GET", "/search", bob, params={"q": "song"})
            self.assertEqual(r.json()["total"], 1, r.text)
        # A ticket from one replica is verified by the other.
        r = a.req("POST", "/tickets", bob, json={"peer": "alice", "file": "Shared Song.ogg"})
        self.assertEqual(r.status_code, 201, r.text)
        r = b.req("POST", "/tickets/verify", tok, json={"ticket": r.json()["ticket"]})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json(), {"username": "bob", "file": "Shared Song.ogg"})
        # Logout through B takes alice's files out of A's answers at once.
        self.assertEqual(b.req("POST", "/logout", tok).status_code, 200)
        self.assertEqual(a.req("POST", "/verifyLogin", tok).status_code, 401)
        self.assertEqual(a.req("GET", "/search", bob, params={"file": "Shared Song.ogg"}).status_code, 404)
        # The balancer spreads requests over both replicas.
        for _ in range(10):
            self.assertEqual(self.lb_req("GET", "/search", bob, params={"q": "x"}).status_code, 200)

    def peer(self, name, files=None):
        base = p2ptest.tempdir("p2p-%s-" % name)
        folder = os.path.join(base, "files")
        os.mkdir(folder)
        for fname, data in (files or {}).items():
            with open(os.path.join(folder, fname), "wb") as f:
                f.write(data)
        sock = os.path.join(base, "ctl.sock")
        port = p2ptest.free_port()
        proc = p2ptest.Process([p2ptest.binary("p2p-peerd"), "--name", name, "--directory", self.url,
                                "--folder", folder, "--listen", "127.0.0.1:%d" % port, "--port", str(port),
                                "--ip", "127.0.0.1", "--control-socket", sock])
        p2ptest.wait_for(lambda: os.path.exists(sock), what="control socket of " + name)
        v = Varlink(sock)
        self.peers.append((proc, v))
        for method in ("Register", "Login"):
            r = v.call(method, {"username": name, "password": "pw-" + name})
            self.assertNotIn("error", r, r)
        return v, folder

    def test_kill_one_replica_mid_run(self):
        first, second = os.urandom(300000), os.urandom(300000)
        v1, _ = self.peer("seeder", {"first.bin": first, "second.bin": second})
        v2, f2 = self.peer("leecher")
        _, last = download(v2, "first.bin")
        self.assertEqual(last.get("parameters", {}).get("state"), "done", last)

        # Searches keep going through the balancer while A dies.
        self.assertEqual(self.lb_req("POST", "/register", json={"username": "watcher", "password": "pw-watcher1"}
                                     ).status_code, 201)
        tok = self.lb_req("POST", "/login", json={"username": "watcher", "password": "pw-watcher1"}).json()["token"]
        stop, results = threading.Event(), []

        def searcher():
            while not stop.is_set():
                try:
                    results.append(self.lb_req("GET", "/search", tok, params={"q": "bin"}).status_code)
                except requests.RequestException as e:
                    results.append(str(e))

        t = threading.Thread(target=searcher)
        t.start()
        p2ptest.wait_for(lambda: len(results) >= 20, what="searches before the kill")
        self.a.proc.send_signal(signal.SIGKILL)
        self.a.proc.wait()
        n = len(results)
        p2ptest.wait_for(lambda: len(results) >= n + 50, what="searches after the kill")
        stop.set()
        t.join()
        self.assertEqual([r for r in results if r != 200], [], "every search through the balancer answered")

        # The network works through B alone: search, tickets, a download.
        _, last = download(v2, "second.bin")
        self.assertEqual(last.get("parameters", {}).get("state"), "done", last)
        with open(os.path.join(f2, "second.bin"), "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), hashlib.sha256(second).hexdigest())
        # The leecher shares its new copy once its re-index (after the
        # folder watch settles) reaches B.
        def both():
            r = self.lb_req("GET", "/search", tok, params={"file": "second.bin"})
            return r.status_code == 200 and sorted(h["peer"] for h in r.json()["peers_with_file"]) == ["leecher", "seeder"]
        p2ptest.wait_for(both, timeout=20, what="the leecher's copy in search through B")
        self.assertEqual(self.b.req("GET", "/healthz").status_code, 200)


if __name__ == "__main__":
    p2ptest.run()
