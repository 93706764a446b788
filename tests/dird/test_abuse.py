#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-dird under abuse (issue 17): no request holds the event loop, the
work one index may cause is bounded (max_files), registration floods from
one address are throttled (behind trusted proxies too), and names cannot
impersonate one another (case of user names, Unicode normalisation of file
names). test_abuse_pg.py runs the same on PostgreSQL."""
import http.client
import json
import os
import re
import shutil
import subprocess
import threading
import time
import unittest
import unicodedata

import requests

import p2ptest
import pgtest
from dirdtest import Dird, on_postgresql

PW = "pw-" + "x" * 8


class Loop(unittest.TestCase):
    def test_healthz_answers_while_a_maximum_index_is_stored(self):
        # Defaults (max_files 100000, max_body 8 MiB), but a sweep of expired
        # sessions every second: it must not wait for the store on the loop.
        d = Dird("--sweep-interval", "1")
        try:
            d.register("big")
            tok = d.login("big")
            files = [{"name": "folder-%06d-some-song-title.ogg" % i, "size": i} for i in range(100000)]
            body = json.dumps({"port": 50001, "files": files}).encode()
            self.assertLess(len(body), 8 << 20)
            result = {}

            def index():
                result["r"] = requests.post(d.url + "/index", data=body, timeout=120,
                                            headers={"Authorization": "Bearer " + tok,
                                                     "Content-Type": "application/json"})
                result["t"] = time.monotonic()

            probe = requests.Session()
            probe.get(d.url + "/healthz", timeout=5)  # connected before the index
            th = threading.Thread(target=index)
            start = time.monotonic()
            th.start()
            # Probe until the index is answered: every /healthz meanwhile
            # must come back within 50 ms.
            took = []
            while th.is_alive():
                t0 = time.monotonic()
                r = probe.get(d.url + "/healthz", timeout=5)
                took.append(round((time.monotonic() - t0) * 1000))
                self.assertEqual(r.status_code, 200)
                time.sleep(0.005)
            th.join()
            self.assertEqual(result["r"].status_code, 200, result["r"].text)
            self.assertEqual(result["r"].json()["indexed"], 100000)
            during = result["t"] - start
            self.assertGreaterEqual(len(took), 5, "the index took only %.3f s" % during)
            took.sort()
            print("# /healthz during a %.2f s index: %d probes, median %d ms, max %d ms"
                  % (during, len(took), took[len(took) // 2], took[-1]))
            # Every probe within 50 ms on a quiet machine; on a loaded one
            # (CI, two cores shared) a few wait for a CPU, so allow one in
            # ten, and none that waited for the index (main: 769 ms).
            slow = [t for t in took if t > 50]
            self.assertLessEqual(len(slow), len(took) // 10, "/healthz over 50 ms: %s of %d" % (slow, len(took)))
            self.assertLess(took[-1], 500, took)
            # And it is all searchable.
            r = d.req("GET", "/search", tok, params={"file": "folder-099999-some-song-title.ogg"})
            self.assertEqual(r.status_code, 200, r.text)
        finally:
            d.stop()

    def test_more_files_than_max_files_is_413(self):
        d = Dird("--max-files", "10")
        try:
            tok = d.user("small", files=["f%d" % i for i in range(10)])
            r = d.req("POST", "/index", tok, json={"port": 50001, "files": ["g%d" % i for i in range(11)]})
            self.assertEqual(r.status_code, 413, r.text)
            self.assertTrue(r.headers["Content-Type"].startswith("application/json"))
            self.assertIn("max_files 10", r.json()["error"])
            # The earlier index stands.
            self.assertEqual(d.req("GET", "/search", tok, params={"file": "f9"}).status_code, 200)
            self.assertEqual(d.req("GET", "/search", tok, params={"file": "g0"}).status_code, 404)
        finally:
            d.stop()

    def test_defaults_are_documented(self):
        out = subprocess.run([p2ptest.binary("p2p-dird"), "--help"], capture_output=True, text=True).stdout
        self.assertRegex(out, r"--max-files .*\(100000\)")


def register_from(d, source, user, xff=None):
    """POST /register from the local address source, with X-Forwarded-For
    lines xff (a string or a list of header lines)."""
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10, source_address=(source, 0))
    try:
        conn.putrequest("POST", "/register")
        for line in ([xff] if isinstance(xff, str) else xff or []):
            conn.putheader("X-Forwarded-For", line)
        body = json.dumps({"username": user, "password": PW}).encode()
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), json.loads(r.read() or b"{}")
    finally:
        conn.close()


class Floods(unittest.TestCase):
    def test_101st_registration_from_one_address_is_429(self):
        d = Dird()  # the defaults: 100 registrations, then one per 36 s
        try:
            start = time.monotonic()
            for i in range(110):
                r = d.register("flood%03d" % i)
                if i < 100:
                    self.assertEqual(r.status_code, 201, (i, r.text))
                elif r.status_code != 201:
                    break
            # The 101st, unless the run was so slow that tokens came back
            # (one per 36 s).
            self.assertEqual(r.status_code, 429, r.text)
            self.assertLessEqual(i, 100 + (time.monotonic() - start) / 36)
            self.assertIn("too many registrations", r.json()["error"])
            self.assertTrue(1 <= int(r.headers["Retry-After"]) <= 36, r.headers)
            # Taken names count too: every attempt costs a password hash.
            self.assertEqual(d.register("flood000").status_code, 429)
            self.assertIn("registration of flood%03d from 127.0.0.1 throttled" % i, d.proc.output())
            # Logins are limited separately.
            d.login("flood000")
        finally:
            d.stop()

    def test_throttle_ends_after_retry_after(self):
        d = Dird("--register-burst", "2", "--register-interval", "2")
        try:
            start = time.monotonic()
            for i in range(20):
                r = d.register("u%d" % i)
                if r.status_code != 201:
                    break
            self.assertEqual(r.status_code, 429, r.text)
            self.assertLessEqual(i, 2 + (time.monotonic() - start) / 2)
            time.sleep(int(r.headers["Retry-After"]) + 0.1)
            self.assertEqual(d.register("v").status_code, 201)
        finally:
            d.stop()

    def test_x_forwarded_for_only_from_trusted_proxies(self):
        d = Dird("--register-burst", "2", "--register-interval", "3600",
                 "--trusted-proxies", "127.0.0.2,10.1.0.0/16,fd00::/8")
        try:
            # From an untrusted address the header is ignored: varying it
            # does not get around the limit of 127.0.0.1.
            codes = [register_from(d, "127.0.0.1", "a%d" % i, "192.0.2.%d" % i)[0] for i in range(3)]
            self.assertEqual(codes, [201, 201, 429])
            # Through the trusted proxy, each client has its own bucket.
            for i in range(3):
                self.assertEqual(register_from(d, "127.0.0.2", "b%d" % i, "192.0.2.%d" % (10 + i))[0], 201)
            # The client is the right-most address that is not a trusted
            # proxy: what the client itself wrote to the left is ignored,
            # trusted hops (10.1.x.x, fd00::) are skipped, lines are joined.
            codes = [register_from(d, "127.0.0.2", "c%d" % i,
                                   ["198.51.100.%d, 192.0.2.99" % i, "10.1.2.3", "fd00::1"])[0]
                     for i in range(3)]
            self.assertEqual(codes, [201, 201, 429])
            self.assertIn("registration of c2 from 192.0.2.99 throttled", d.proc.output())
            # A proxy with no header, or a malformed one, is the client itself.
            codes = [register_from(d, "127.0.0.2", "d%d" % i, None if i % 2 else "not-an-address")[0]
                     for i in range(3)]
            self.assertEqual(codes, [201, 201, 429])
            self.assertIn("registration of d2 from 127.0.0.2 throttled", d.proc.output())
        finally:
            d.stop()

    @unittest.skipIf(not (shutil.which("haproxy") or os.path.exists("/usr/sbin/haproxy")), "haproxy not installed")
    def test_behind_haproxy(self):
        # haproxy adds X-Forwarded-For and talks to p2p-dird from 127.0.0.3.
        d = Dird("--register-burst", "2", "--register-interval", "3600", "--trusted-proxies", "127.0.0.3")
        lb_port = p2ptest.free_port()
        cfg = os.path.join(p2ptest.tempdir("p2p-haproxy-"), "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("global\n    maxconn 64\ndefaults\n    mode http\n    timeout connect 1s\n"
                    "    timeout client 10s\n    timeout server 10s\n    option forwardfor\n"
                    "listen dird\n    bind 127.0.0.1:%d\n    server r0 127.0.0.1:%d source 127.0.0.3\n"
                    % (lb_port, d.port))
        lb = p2ptest.Process([shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f", cfg])
        try:
            p2ptest.wait_for(lambda: p2ptest.port_open(lb_port), what="haproxy")

            class Via:
                port = lb_port
            codes = [register_from(Via, "127.0.0.1", "h%d" % i)[0] for i in range(3)]
            self.assertEqual(codes, [201, 201, 429])
            self.assertIn("registration of h2 from 127.0.0.1 throttled", d.proc.output())
            # Another client of the same balancer has its own bucket.
            self.assertEqual(register_from(Via, "127.0.0.4", "h3")[0], 201)
            # The balancer itself, connecting directly, is one more client.
            self.assertEqual(register_from(d, "127.0.0.3", "h4")[0], 201)
        finally:
            lb.stop()
            d.stop()

    @unittest.skipIf(not (shutil.which("haproxy") or os.path.exists("/usr/sbin/haproxy")), "haproxy not installed")
    def test_proxy_protocol_behind_haproxy(self):
        # haproxy in TCP mode, sending PROXY v1 on one port and v2 on another.
        d = Dird("--register-burst", "2", "--register-interval", "3600", "--trusted-proxies", "127.0.0.3",
                 "--proxy-protocol", "yes", wait=False)
        p2ptest.wait_for(lambda: p2ptest.port_open(d.port), what="p2p-dird")
        v1, v2 = p2ptest.free_port(), p2ptest.free_port()
        cfg = os.path.join(p2ptest.tempdir("p2p-haproxy-"), "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("global\n    maxconn 64\ndefaults\n    mode tcp\n    timeout connect 1s\n"
                    "    timeout client 10s\n    timeout server 10s\n"
                    "listen v1\n    bind 127.0.0.1:%d\n    server r0 127.0.0.1:%d source 127.0.0.3 send-proxy\n"
                    "listen v2\n    bind 127.0.0.1:%d\n    server r0 127.0.0.1:%d source 127.0.0.3 send-proxy-v2\n"
                    % (v1, d.port, v2, d.port))
        lb = p2ptest.Process([shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f", cfg])
        try:
            p2ptest.wait_for(lambda: p2ptest.port_open(v1) and p2ptest.port_open(v2), what="haproxy")

            class V1:
                port = v1

            class V2:
                port = v2
            # One client through both: one bucket, its own address.
            codes = [register_from(V1 if i % 2 else V2, "127.0.0.1", "p%d" % i)[0] for i in range(3)]
            self.assertEqual(codes, [201, 201, 429])
            self.assertIn("registration of p2 from 127.0.0.1 throttled", d.proc.output())
            self.assertEqual(register_from(V1, "127.0.0.4", "p3")[0], 201)
            self.assertEqual(register_from(V2, "127.0.0.5", "p4")[0], 201)
            # Search still works over the same connections (the header is
            # read once, the rest passes through).
            s = requests.Session()
            r = s.post("http://127.0.0.1:%d/login" % v2, json={"username": "p3", "password": PW}, timeout=10)
            self.assertEqual(r.status_code, 200, r.text)
            tok = r.json()["token"]
            for _ in range(3):
                r = s.post("http://127.0.0.1:%d/verifyLogin" % v2, headers={"Authorization": "Bearer " + tok},
                           timeout=10)
                self.assertEqual(r.json()["username"], "p3")
            # Directly, from an address that is not a trusted proxy, or
            # without a header: closed.
            with self.assertRaises(requests.ConnectionError):
                requests.get(d.url + "/healthz", timeout=5)
            with self.assertRaises((http.client.HTTPException, OSError)):
                register_from(d, "127.0.0.3", "p5")
            self.assertIn("not one of trusted_proxies", d.proc.output())
            self.assertIn("no valid header from 127.0.0.3", d.proc.output())
        finally:
            lb.stop()
            d.stop()

    def test_bad_trusted_proxies_is_refused(self):
        for bad in ("10.0.0.0/33", "example.com", "::1/129", "10.0.0.1/"):
            r = subprocess.run([p2ptest.binary("p2p-dird"), "--trusted-proxies", bad, "-n"],
                               capture_output=True, text=True)
            self.assertNotEqual(r.returncode, 0, bad)
            self.assertIn("trusted_proxies", r.stderr, bad)
        r = subprocess.run([p2ptest.binary("p2p-dird"), "--proxy-protocol", "yes", "-n"],
                           capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("proxy_protocol: list the proxies that send it in trusted_proxies", r.stderr)

    def test_defaults_are_documented(self):
        out = subprocess.run([p2ptest.binary("p2p-dird"), "--help"], capture_output=True, text=True).stdout
        self.assertRegex(out, r"--register-burst .*\(100\)")
        self.assertRegex(out, r"--register-interval .*\(36\)")
        with open(os.path.join(os.environ.get("P2P_SRCDIR", "."), "man", "p2p-dird.8.in")) as f:
            man = f.read()
        for key, default in (("register_burst", "100"), ("register_interval", "36"),
                             ("max_files", "100000")):
            section = man[man.index(".It Cm " + key):]
            section = section[:section.index("\n.It ")]
            self.assertIn("Default " + default + ".", section, key)


NFC = unicodedata.normalize("NFC", "Café Crème.mp3")
NFD = unicodedata.normalize("NFD", "Café Crème.mp3")


class Connections(unittest.TestCase):
    def test_max_connections_counts_each_connection_once(self):
        # A connection counts from its first request until it closes, once
        # however many requests it sends; at max_connections accept pauses
        # (the next client waits in the backlog, it is not refused) and
        # resumes when one closes.
        import socket

        def ask(s, path="/healthz"):
            s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
            data = b""
            while b"\r\n\r\n" not in data:
                data += s.recv(65536)
            head, body = data.split(b"\r\n\r\n", 1)
            n = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))
            while len(body) < n:
                body += s.recv(65536)
            return head.split(b" ")[1], body.decode()

        def gauge(s):
            code, text = ask(s, "/metrics")
            self.assertEqual(code, b"200")
            return int(re.search(r"^p2p_dird_connections (\d+)$", text, re.M).group(1))

        d = Dird(config={"max_connections": 4})
        conns = []
        try:
            for _ in range(3):
                s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
                conns.append(s)
                for _ in range(20):
                    self.assertEqual(ask(s)[0], b"200")
            self.assertEqual(gauge(conns[0]), 3)
            conns.append(socket.create_connection(("127.0.0.1", d.port), timeout=10))
            self.assertEqual(gauge(conns[3]), 4)
            # The fifth connection is not accepted while four are open.
            late = socket.create_connection(("127.0.0.1", d.port), timeout=1)
            late.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            with self.assertRaises(socket.timeout):
                late.recv(1)
            self.assertIn("connection limit (4) reached; pausing accept", d.proc.output())
            conns.pop(1).close()
            late.settimeout(10)
            conns.append(late)
            data = b""
            while b"\r\n\r\n" not in data:
                data += late.recv(65536)
            self.assertIn(b" 200 ", data.split(b"\r\n")[0])
            p2ptest.wait_for(lambda: gauge(conns[0]) == 4, timeout=10, what="the gauge back at 4")
            for s in conns[1:]:
                s.close()
            p2ptest.wait_for(lambda: gauge(conns[0]) == 1, timeout=10, what="closed connections uncounted")
        finally:
            for s in conns:
                s.close()
            d.stop()


class Names(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Dird()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def test_user_names_are_unique_without_case(self):
        d = self.d
        self.assertEqual(d.register("alice").status_code, 201)
        for other in ("Alice", "ALICE", "aLiCe"):
            r = d.register(other, password="another password")
            self.assertEqual(r.status_code, 409, r.text)
            self.assertIn("without case", r.json()["error"])
        # Login does not care about case either; the name stays as typed.
        tok = d.login("ALICE")
        self.assertEqual(d.req("POST", "/verifyLogin", tok).json()["username"], "alice")
        r = d.req("POST", "/login", json={"username": "Alice", "password": "another password"})
        self.assertEqual(r.status_code, 401)
        # A peer named in another case is the same peer.
        d.req("POST", "/index", tok, json={"port": 50001, "files": ["shared.txt"]})
        self.assertEqual(d.register("bob").status_code, 201)
        bob = d.login("bob")
        r = d.req("POST", "/tickets", bob, json={"peer": "ALICE", "file": "shared.txt"})
        self.assertEqual(r.status_code, 201, r.text)
        r = d.req("POST", "/tickets/verify", tok, json={"ticket": r.json()["ticket"]})
        self.assertEqual(r.json(), {"username": "bob", "file": "shared.txt"})
        # A mixed-case name keeps its case.
        self.assertEqual(d.register("CamelCase").status_code, 201)
        self.assertEqual(d.req("POST", "/verifyLogin", d.login("camelcase")).json()["username"], "CamelCase")

    def test_file_names_compare_in_nfc(self):
        d = self.d
        self.assertNotEqual(NFC, NFD)
        nfd_peer = d.user("nfdpeer", files=(NFD, "x" + unicodedata.normalize("NFD", "ÅNGSTRÖM") + ".txt"),
                          port=50002)
        d.user("nfcpeer", files=(NFC,), port=50003)
        for form in (NFC, NFD):
            r = d.req("GET", "/search", nfd_peer, params={"file": form})
            self.assertEqual(r.status_code, 200, r.text)
            hits = r.json()["peers_with_file"]
            # Each peer's name comes back as it indexed it.
            self.assertEqual(sorted((h["peer"], h["name"]) for h in hits),
                             [("nfcpeer", NFC), ("nfdpeer", NFD)])
            for q in ("é Cr", "CAFé", "crème"):
                r = d.req("GET", "/search", nfd_peer,
                          params={"q": unicodedata.normalize("NFC" if form == NFC else "NFD", q)})
                self.assertEqual(r.json()["total"], 2, (q, form, r.text))
        # NFC first, then ASCII case: the NFC query finds the NFD name.
        r = d.req("GET", "/search", nfd_peer, params={"q": "ångström"})
        self.assertEqual(r.json()["total"], 0, r.text)  # Å and å are not ASCII
        r = d.req("GET", "/search", nfd_peer, params={"q": "ÅNGSTRÖM"})
        self.assertEqual(r.json()["total"], 1, r.text)
        # Exact search keeps case.
        r = d.req("GET", "/search", nfd_peer, params={"file": NFC.upper()})
        self.assertEqual(r.status_code, 404, r.text)

    def test_invalid_utf8_stays_refused(self):
        tok = self.d.user("badutf8")
        r = self.d.req("POST", "/index", tok, data=b'{"port": 1, "files": ["caf\xc3"]}',
                       headers={"Content-Type": "application/json"})
        self.assertEqual(r.status_code, 400, r.text)
        r = self.d.req("GET", "/search?q=caf%C3", tok)
        self.assertEqual(r.status_code, 400, r.text)


class Migration(unittest.TestCase):
    """A database of schema 2 whose user names collide without case is not
    upgraded: p2p-dird refuses to start and names them."""

    def sql(self, d, statements):
        if on_postgresql():
            pgtest.server().psql(statements, db=d.db.rsplit("/", 1)[1])
        else:
            import sqlite3
            con = sqlite3.connect(d.db)
            con.executescript(statements)
            con.close()

    def test_colliding_user_names_stop_the_upgrade(self):
        d = Dird()
        d.register("alice")
        d.user("carol", files=(NFD,))
        self.assertEqual(d.stop(), 0)
        # Back to schema 2 with two more spellings of alice.
        if on_postgresql():
            # Schema 4 (the replicas' change stream) goes too, to be redone.
            downgrade = ("DROP INDEX users_name_lower; DROP TABLE changes, change_seq, replica_acks;"
                         " UPDATE p2p_schema SET version = 2;")
        else:
            downgrade = "DROP INDEX users_name_nocase; PRAGMA user_version = 2;"
        self.sql(d, downgrade + "INSERT INTO users(name, hash, created) VALUES ('ALICE', 'x', 0), ('Alice', 'x', 0);")
        d2 = Dird(db=d.db, wait=False)
        self.assertNotEqual(d2.proc.wait(30), 0)
        self.assertIn("these users differ only in case: ALICE, Alice, alice", d2.proc.output())
        # Once one spelling is left, the upgrade goes through.
        self.sql(d, "DELETE FROM users WHERE name IN ('ALICE', 'Alice');")
        d3 = Dird(db=d.db)
        try:
            self.assertIn("migrated to version 3", d3.proc.output())
            self.assertEqual(d3.register("Alice").status_code, 409)
            tok = d3.login("Carol")
            self.assertEqual(d3.req("GET", "/search", tok, params={"file": NFC}).status_code, 200)
        finally:
            d3.stop()


if __name__ == "__main__":
    p2ptest.run()
