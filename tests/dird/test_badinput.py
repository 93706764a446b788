#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-dird black-box: bad input of every kind gets the right JSON error and
changes nothing; slow, idle and greedy clients cannot take the daemon down."""
import socket
import time
import unittest

import requests

import p2ptest
import dirdtest
from dirdtest import Dird, raw_http

SQLI = "x'); DROP TABLE users; --"


class BadInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Dird("--max-body", "4096", "--max-headers", "4096", "--login-burst", "3",
                     "--login-interval", "60")
        cls.tok = cls.d.user("owner", files=("a.txt",))

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def users(self):
        for line in self.d.req("GET", "/metrics").text.splitlines():
            if line.startswith("p2p_dird_users "):
                return int(line.split()[1])

    def assertJsonError(self, r, code):
        self.assertEqual(r.status_code, code, r.text)
        self.assertTrue(r.headers.get("Content-Type", "").startswith("application/json"), r.headers)
        self.assertIsInstance(r.json().get("error"), str)

    def post_raw(self, path, data, token=None):
        return self.d.req("POST", path, token, data=data, headers={"Content-Type": "application/json"})

    def test_malformed_json(self):
        before = self.users()
        for body in (b"{", b"{\"username\": }", b"[]", b"\"str\"", b"42", b"{} {}", b"", b"{\"username\":\"a\",}"):
            self.assertJsonError(self.post_raw("/register", body), 400)
        self.assertEqual(self.users(), before)

    def test_wrong_types_and_missing_fields(self):
        before = self.users()
        for body in ({}, {"username": "u1"}, {"password": "p"}, {"username": 5, "password": "p"},
                     {"username": "u1", "password": 5}, {"username": ["u1"], "password": "p"},
                     {"username": None, "password": "p"}, {"username": "u1", "password": ""},
                     {"username": "u1", "password": {"a": 1}}):
            self.assertJsonError(self.d.req("POST", "/register", json=body), 400)
            self.assertJsonError(self.d.req("POST", "/login", json=body), 400)
        self.assertEqual(self.users(), before)

    def test_invalid_usernames(self):
        before = self.users()
        for name in ("", "a" * 65, "has space", SQLI, "ñ", "a/b", "a\u0000b"):
            self.assertJsonError(self.d.req("POST", "/register", json={"username": name, "password": "p"}), 400)
        self.assertEqual(self.users(), before)

    def test_invalid_utf8(self):
        body = b'{"username": "ab\xff", "password": "p"}'
        self.assertJsonError(self.post_raw("/register", body), 400)
        r = self.d.req("GET", "/search?q=%ff%fe", self.tok)
        self.assertJsonError(r, 400)
        r = self.d.req("GET", "/search?file=a%00b", self.tok)
        self.assertJsonError(r, 400)

    def test_index_bad_fields(self):
        cases = [
            {"port": 1},                                          # no files
            {"files": []},                                        # no port
            {"port": 0, "files": []},
            {"port": 70000, "files": []},
            {"port": "80x", "files": []},
            {"port": 1, "files": "a.txt"},
            {"port": 1, "files": [5]},
            {"port": 1, "files": [""]},
            {"port": 1, "files": ["."]},
            {"port": 1, "files": [".."]},
            {"port": 1, "files": ["../etc/passwd"]},
            {"port": 1, "files": ["a/b"]},
            {"port": 1, "files": ["x" * 256]},
            {"port": 1, "files": ["dup", "dup"]},
            {"port": 1, "files": [{"name": "a", "size": -1}]},
            {"port": 1, "files": [{"name": "a", "size": "3"}]},
            {"port": 1, "files": [{"name": "a", "sha256": "XYZ"}]},
            {"port": 1, "files": [{"size": 3}]},
            {"ip": "not-an-ip", "port": 1, "files": []},
            {"ip": 5, "port": 1, "files": []},
            {"folder": 5, "port": 1, "files": []},
        ]
        for body in cases:
            self.assertJsonError(self.d.req("POST", "/index", self.tok, json=body), 400)
        # Nothing changed: the owner's file is still there, alone.
        r = self.d.req("GET", "/search", self.tok, params={"file": "a.txt"})
        self.assertEqual(r.status_code, 200)

    def test_sql_metacharacters_are_data(self):
        tok = self.d.user("sqlpeer", files=(SQLI, "it's \"quoted\"; --", "100% _done_"))
        r = self.d.req("GET", "/search", tok, params={"file": SQLI})
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.json()["peers_with_file"][0]["name"], SQLI)
        r = self.d.req("GET", "/search", tok, params={"q": "DROP TABLE"})
        self.assertEqual(r.json()["total"], 1)
        r = self.d.req("GET", "/search", tok, params={"q": "\"quoted\""})
        self.assertEqual(r.json()["total"], 1)
        r = self.d.req("GET", "/search", tok, params={"q": "% _"})
        self.assertEqual(r.json()["total"], 1)
        r = self.d.req("POST", "/tickets", tok, json={"peer": SQLI, "file": "a.txt"})
        self.assertJsonError(r, 400)
        self.assertGreater(self.users(), 0)  # the users table is still there

    def test_bad_tokens(self):
        for h in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer xyz"},
                  {"Authorization": "Basic " + "a" * 64}, {"Authorization": "Bearer " + "0" * 64},
                  {"Authorization": "Bearer " + "A" * 64}):
            r = self.d.req("POST", "/verifyLogin", headers=dict(h))
            self.assertJsonError(r, 401)
            self.assertEqual(r.headers.get("WWW-Authenticate"), "Bearer")

    def test_search_params(self):
        for params in ({}, {"file": "a.txt", "q": "a"}, {"q": ""}, {"q": "a", "limit": "0"},
                       {"q": "a", "limit": "1001"}, {"q": "a", "limit": "ten"}, {"q": "a", "offset": "-1"},
                       {"file": "../x"}, {"q": "x" * 300}):
            self.assertJsonError(self.d.req("GET", "/search", self.tok, params=params), 400)

    def test_ticket_bad_fields(self):
        for body in ({}, {"peer": "owner"}, {"file": "a.txt"}, {"peer": 1, "file": "a.txt"},
                     {"peer": "owner", "file": "../a.txt"}):
            self.assertJsonError(self.d.req("POST", "/tickets", self.tok, json=body), 400)
        for body in ({}, {"ticket": 5}):
            self.assertJsonError(self.d.req("POST", "/tickets/verify", self.tok, json=body), 400)

    def test_unknown_path_and_wrong_method(self):
        self.assertJsonError(self.d.req("GET", "/nope"), 404)
        self.assertJsonError(self.d.req("GET", "/register/"), 404)
        r = self.d.req("GET", "/login")
        self.assertJsonError(r, 405)
        self.assertEqual(r.headers["Allow"], "POST")
        r = self.d.req("DELETE", "/search")
        self.assertJsonError(r, 405)
        self.assertEqual(r.headers["Allow"], "GET, HEAD")
        r = self.d.req("PUT", "/healthz")
        self.assertJsonError(r, 405)

    def test_oversized_body(self):
        before = self.users()
        r = self.d.req("POST", "/register", json={"username": "big", "password": "p" * 6000})
        self.assertJsonError(r, 413)
        self.assertEqual(self.users(), before)

    def test_huge_headers_and_url(self):
        ans = raw_http(self.d.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10000 + b"\r\n\r\n")
        self.assertTrue(ans.startswith(b"HTTP/1.1 4"), ans[:80])
        ans = raw_http(self.d.port, b"GET /search?q=" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(ans.startswith(b"HTTP/1.1 4"), ans[:80])
        ans = raw_http(self.d.port, b"garbage\r\n\r\n")
        self.assertTrue(ans == b"" or ans.startswith(b"HTTP/1.1 4"), ans[:80])
        self.assertEqual(self.d.req("GET", "/healthz").status_code, 200)

    def test_login_rate_limit(self):
        self.d.register("victim")
        codes = [self.d.req("POST", "/login", json={"username": "victim", "password": "guess%d" % i}).status_code
                 for i in range(5)]
        self.assertEqual(codes[:3], [401, 401, 401])
        self.assertEqual(codes[3:], [429, 429])
        r = self.d.req("POST", "/login", json={"username": "victim", "password": "pw-xxxxxxxx"})
        self.assertJsonError(r, 429)  # even the right password waits
        self.assertGreaterEqual(int(r.headers["Retry-After"]), 1)


class Limits(unittest.TestCase):
    def test_idle_client_times_out(self):
        d = Dird("--timeout", "1")
        s = socket.create_connection(("127.0.0.1", d.port))
        s.settimeout(10)
        t0 = time.monotonic()
        self.assertEqual(s.recv(100), b"")  # the server closed it
        self.assertLess(time.monotonic() - t0, 9)
        s.close()
        d.stop()

    def test_connection_limit_queues_instead_of_failing(self):
        d = Dird("--max-connections", "4", "--timeout", "30")
        # Four keep-alive clients hold every slot.
        idle = [socket.create_connection(("127.0.0.1", d.port)) for _ in range(4)]
        for s in idle:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200"))
        with self.assertRaises(requests.exceptions.ReadTimeout):
            dirdtest.get(d.url + "/healthz", timeout=1)
        for s in idle:
            s.close()
        r = p2ptest.wait_for(lambda: dirdtest.get(d.url + "/healthz", timeout=5), what="accepting again")
        self.assertEqual(r.status_code, 200)
        d.stop()

    def test_registration_closed(self):
        d = Dird("--registration", "no")
        r = d.register("someone")
        self.assertEqual(r.status_code, 403)
        self.assertIn("error", r.json())
        d.stop()


if __name__ == "__main__":
    p2ptest.run()
