#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-dird migrate: an SQLite directory copied into PostgreSQL keeps its
users, logins, indexed files and tickets, and goes on working there."""
import os
import subprocess
import unittest

import p2ptest
import pgtest
from dirdtest import SHA, Dird


def dird_cmd(*args):
    return subprocess.run([p2ptest.binary("p2p-dird")] + list(args), capture_output=True, text=True, timeout=60)


@unittest.skipIf(not pgtest.bindir() or not pgtest._built_with_pg(),
                 "p2p-dird built without PostgreSQL, or PostgreSQL not installed")
class Migrate(unittest.TestCase):
    def test_copy_then_serve(self):
        src = Dird()
        alice = src.user("alice", files=("tab\tand\\back slash.txt", "Ünïcode Song.ogg"), port=50007)
        src.register("bob")
        bob = src.login("bob")
        r = src.req("POST", "/tickets", bob, json={"peer": "alice", "file": "Ünïcode Song.ogg"})
        self.assertEqual(r.status_code, 201, r.text)
        ticket = r.json()["ticket"]
        self.assertEqual(src.stop(), 0)

        url = pgtest.server().create_database()
        r = dird_cmd("--database", url, "migrate", src.db)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stderr, r"files: 2 rows")
        # A second copy into the same database is refused.
        r = dird_cmd("--database", url, "migrate", src.db)
        self.assertEqual(r.returncode, 1)
        self.assertIn("already holds users", r.stderr)

        # (trust authentication ignores the password; the log must not show it)
        d = Dird(db=url.replace("p2p@", "p2p:s3cr3t@") + "?password=s3cr3t&connect_timeout=5")
        self.assertNotIn("s3cr3t", d.proc.output())
        self.assertIn("p2p:***@", d.proc.output())
        self.assertIn("password=***&connect_timeout=5", d.proc.output())
        self.assertEqual(d.req("POST", "/verifyLogin", alice).json()["username"], "alice")
        r = d.req("GET", "/search", bob, params={"file": "tab\tand\\back slash.txt"})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json()["peers_with_file"][0]["port"], 50007)
        self.assertEqual(r.json()["peers_with_file"][0]["sha256"], SHA)
        # ASCII letters fold, other letters match exactly (both backends).
        r = d.req("GET", "/search", bob, params={"q": "ÜnïCODE"})
        self.assertEqual(r.json()["total"], 1, r.text)
        r = d.req("GET", "/search", bob, params={"q": "ünïcode"})
        self.assertEqual(r.json()["total"], 0, r.text)
        r = d.req("POST", "/tickets/verify", alice, json={"ticket": ticket})
        self.assertEqual(r.json(), {"username": "bob", "file": "Ünïcode Song.ogg"})
        # New rows get fresh ids after the copied ones.
        d.user("carol", files=("new.txt",))
        self.assertEqual(d.req("GET", "/search", bob, params={"file": "new.txt"}).status_code, 200)
        d.stop()

    def test_bad_arguments(self):
        url = pgtest.server().create_database()
        r = dird_cmd("--database", url, "migrate", "/nonexistent/dird.db")
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot read /nonexistent/dird.db", r.stderr)
        r = dird_cmd("--database", os.path.join(p2ptest.tempdir(), "x.db"), "migrate", url)
        self.assertEqual(r.returncode, 1)
        self.assertIn("copies an SQLite file into PostgreSQL", r.stderr)
        self.assertEqual(dird_cmd("--database", url, "migrate").returncode, 2)
        r = dird_cmd("--database", "postgresql://127.0.0.1:1/nothing?connect_timeout=2", "user", "list")
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot connect to PostgreSQL", r.stderr)
        r = dird_cmd("--database", "postgresql://[bad", "user", "list")
        self.assertEqual(r.returncode, 1)
        self.assertIn("not a valid PostgreSQL URI", r.stderr)


if __name__ == "__main__":
    p2ptest.run()
