#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-dird black-box: every REST call of the contract, with a real HTTP client."""
import time
import unittest

import p2ptest
from dirdtest import SHA, Dird


class Api(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Dird()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def test_healthz(self):
        r = self.d.req("GET", "/healthz")
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.headers["Content-Type"], "application/json")
        self.assertEqual(r.json()["status"], "ok")

    def test_register_login_verify_logout(self):
        r = self.d.register("alice")
        self.assertEqual(r.status_code, 201)
        self.assertEqual(r.json(), {"username": "alice"})
        r = self.d.register("alice")
        self.assertEqual(r.status_code, 409)
        self.assertIn("error", r.json())
        r = self.d.req("POST", "/login", json={"username": "alice", "password": "wrong"})
        self.assertEqual(r.status_code, 401)
        r = self.d.req("POST", "/login", json={"username": "nobody", "password": "x"})
        self.assertEqual(r.status_code, 401)
        r = self.d.req("POST", "/login", json={"username": "alice", "password": "pw-xxxxxxxx"})
        self.assertEqual(r.status_code, 200)
        body = r.json()
        self.assertEqual(set(body), {"token", "expires_at", "message"})
        self.assertRegex(body["token"], "^[0-9a-f]{64}$")
        self.assertGreater(body["expires_at"], time.time() + 3600)
        tok = body["token"]
        r = self.d.req("POST", "/verifyLogin", tok)
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.json()["username"], "alice")
        self.assertEqual(r.json()["expires_at"], body["expires_at"])
        r = self.d.req("POST", "/logout", tok)
        self.assertEqual(r.status_code, 200)
        self.assertIn("message", r.json())
        r = self.d.req("POST", "/verifyLogin", tok)
        self.assertEqual(r.status_code, 401)

    def test_index_object_form_and_exact_search(self):
        tok = self.d.user("bob", files=("song.mp3", "notes.txt"), port=50002)
        r = self.d.req("GET", "/search", tok, params={"file": "song.mp3"})
        self.assertEqual(r.status_code, 200)
        hits = r.json()["peers_with_file"]
        self.assertEqual(hits, [{"peer": "bob", "ip": "127.0.0.1", "port": 50002, "folder": "/srv/bob",
                                 "name": "song.mp3", "size": 3, "sha256": SHA}])
        r = self.d.req("GET", "/search", tok, params={"file": "SONG.mp3"})
        self.assertEqual(r.status_code, 404)
        self.assertIn("message", r.json())

    def test_index_seed_list_form(self):
        self.d.register("seeduser")
        tok = self.d.login("seeduser")
        # The seed's peer sends port as a string and files as names.
        r = self.d.req("POST", "/index", tok, json={"ip": "127.0.0.1", "port": "50001", "folder": "myFiles",
                                                     "files": ["file1.txt", "seedonly.txt"]})
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.json(), {"status": "success", "indexed": 2})
        r = self.d.req("GET", "/search", tok, params={"file": "seedonly.txt"})
        self.assertEqual(r.status_code, 200)
        hit = r.json()["peers_with_file"][0]
        self.assertEqual((hit["peer"], hit["port"], hit["folder"], hit["size"], hit["sha256"]),
                         ("seeduser", 50001, "myFiles", None, None))

    def test_index_replaces_the_list(self):
        tok = self.d.user("carol", files=("old.bin",))
        r = self.d.req("POST", "/index", tok, json={"ip": "127.0.0.1", "port": 1, "folder": "f", "files": ["new.bin"]})
        self.assertEqual(r.status_code, 200)
        self.assertEqual(self.d.req("GET", "/search", tok, params={"file": "old.bin"}).status_code, 404)
        self.assertEqual(self.d.req("GET", "/search", tok, params={"file": "new.bin"}).status_code, 200)

    def test_index_unspecified_ip_uses_source_address(self):
        self.d.register("anyaddr")
        tok = self.d.login("anyaddr")
        r = self.d.req("POST", "/index", tok, json={"ip": "0.0.0.0", "port": 9, "folder": "", "files": ["anyaddr.txt"]})
        self.assertEqual(r.status_code, 200)
        hit = self.d.req("GET", "/search", tok, params={"file": "anyaddr.txt"}).json()["peers_with_file"][0]
        self.assertEqual(hit["ip"], "127.0.0.1")

    def test_substring_search(self):
        tok = self.d.user("dave", files=["Holiday Photos %d.JPG" % i for i in range(30)] + ["x_y.txt", "a%b.txt"])
        r = self.d.req("GET", "/search", tok, params={"q": "photos"})
        self.assertEqual(r.status_code, 200)
        body = r.json()
        self.assertEqual(body["total"], 30)
        self.assertEqual(len(body["results"]), 30)
        self.assertEqual(set(body["results"][0]), {"peer", "ip", "port", "folder", "name", "size", "sha256"})
        r = self.d.req("GET", "/search", tok, params={"q": "PHOTOS 1", "limit": 5, "offset": 0})
        body = r.json()
        self.assertEqual(body["total"], 11)  # 1, 10..19
        self.assertEqual(len(body["results"]), 5)
        page2 = self.d.req("GET", "/search", tok, params={"q": "PHOTOS 1", "limit": 5, "offset": 5}).json()
        self.assertEqual(len(page2["results"]), 5)
        self.assertFalse({h["name"] for h in body["results"]} & {h["name"] for h in page2["results"]})
        # Fewer than three characters, and LIKE metacharacters taken literally.
        self.assertEqual(self.d.req("GET", "/search", tok, params={"q": "_"}).json()["total"], 1)
        self.assertEqual(self.d.req("GET", "/search", tok, params={"q": "%"}).json()["total"], 1)
        self.assertEqual(self.d.req("GET", "/search", tok, params={"q": "a%b"}).json()["total"], 1)
        r = self.d.req("GET", "/search", tok, params={"q": "no-such-thing-anywhere"})
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.json()["results"], [])
        self.assertEqual(r.json()["total"], 0)

    def test_logout_removes_files_at_once(self):
        tok = self.d.user("erin", files=("erin-only.txt",))
        other = self.d.user("erin-watcher", files=())
        self.assertEqual(self.d.req("GET", "/search", other, params={"file": "erin-only.txt"}).status_code, 200)
        self.assertEqual(self.d.req("POST", "/logout", tok).status_code, 200)
        self.assertEqual(self.d.req("GET", "/search", other, params={"file": "erin-only.txt"}).status_code, 404)
        self.assertEqual(self.d.req("GET", "/search", other, params={"q": "erin-only"}).json()["total"], 0)
        # Logging in and indexing again brings them back.
        tok = self.d.login("erin")
        self.d.req("POST", "/index", tok, json={"port": 1, "files": ["erin-only.txt"]})
        self.assertEqual(self.d.req("GET", "/search", other, params={"file": "erin-only.txt"}).status_code, 200)

    def test_heartbeat(self):
        self.d.register("frank")
        tok = self.d.login("frank")
        r = self.d.req("POST", "/heartbeat", tok)
        self.assertEqual(r.status_code, 409)  # nothing indexed yet
        self.d.req("POST", "/index", tok, json={"port": 1, "files": []})
        r = self.d.req("POST", "/heartbeat", tok)
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.json()["status"], "ok")
        self.assertEqual(self.d.req("POST", "/heartbeat").status_code, 401)

    def test_tickets(self):
        server = self.d.user("server1", files=("shared.iso",))
        client = self.d.user("client1", files=())
        other = self.d.user("server2", files=("shared.iso",))
        r = self.d.req("POST", "/tickets", client, json={"peer": "server1", "file": "shared.iso"})
        self.assertEqual(r.status_code, 201)
        ticket = r.json()["ticket"]
        self.assertRegex(ticket, "^[0-9a-f]{64}$")
        self.assertGreater(r.json()["expires_at"], time.time())
        # The serving peer verifies it.
        r = self.d.req("POST", "/tickets/verify", server, json={"ticket": ticket})
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.json(), {"username": "client1", "file": "shared.iso"})
        # Another peer cannot use it.
        r = self.d.req("POST", "/tickets/verify", other, json={"ticket": ticket})
        self.assertEqual(r.status_code, 403)
        r = self.d.req("POST", "/tickets/verify", server, json={"ticket": "0" * 64})
        self.assertEqual(r.status_code, 403)
        r = self.d.req("POST", "/tickets/verify", server, json={"ticket": "not-a-ticket"})
        self.assertEqual(r.status_code, 403)
        # A file the peer does not share, or a peer that does not exist.
        r = self.d.req("POST", "/tickets", client, json={"peer": "server1", "file": "nothere.iso"})
        self.assertEqual(r.status_code, 404)
        r = self.d.req("POST", "/tickets", client, json={"peer": "ghost", "file": "shared.iso"})
        self.assertEqual(r.status_code, 404)

    def test_metrics(self):
        self.d.req("GET", "/healthz")
        r = self.d.req("GET", "/metrics")
        self.assertEqual(r.status_code, 200)
        self.assertTrue(r.headers["Content-Type"].startswith("text/plain"))
        text = r.text
        self.assertIn('p2p_dird_requests_total{route="healthz",code="200"}', text)
        self.assertIn('p2p_dird_request_duration_seconds_bucket{le="+Inf"}', text)
        for g in ("p2p_dird_users", "p2p_dird_sessions", "p2p_dird_peers_online", "p2p_dird_files_indexed"):
            self.assertRegex(text, r"(?m)^%s \d+$" % g)
        count = [int(l.split()[-1]) for l in text.splitlines() if l.startswith("p2p_dird_request_duration_seconds_count")]
        self.assertGreater(count[0], 0)


if __name__ == "__main__":
    p2ptest.run()
