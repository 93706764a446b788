#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Fault test: the directory goes away and comes back. Peers log in with a
password file; nobody touches them while p2p-dird is down. They must find
it again by themselves: heartbeats resume, a peer whose session the
directory lost logs in again and re-indexes, and files are found and
downloaded as before."""
import hashlib
import os
import signal
import sqlite3
import time
import unittest

from robusttest import Dird, Peer, download, p2ptest


class DirectoryRestart(unittest.TestCase):
    def setUp(self):
        self.base = p2ptest.tempdir("p2p-dirgone-")
        self.db = os.path.join(self.base, "dird.db")
        self.port = p2ptest.free_port()
        # ttl 5 s: a peer the directory has not heard from in 5 s leaves search.
        self.conf = {"ttl": 5}
        self.d = Dird(db=self.db, port=self.port, config=self.conf)
        self.data = os.urandom(512 * 1024)
        self.a = Peer(self.d.url, "keeper", {"notes.pdf": self.data}, register_with=self.d)
        self.b = Peer(self.d.url, "seeker", register_with=self.d)
        p2ptest.wait_for(lambda: len(self.b.search("notes.pdf")) == 1, what="notes.pdf indexed")

    def tearDown(self):
        self.a.stop()
        self.b.stop()
        self.d.stop()

    def back_and_found(self):
        # Longer than the TTL plus a heartbeat: only a peer that came back
        # by itself is in search.
        p2ptest.wait_for(lambda: len(self.b.search("notes.pdf")) == 1, timeout=20,
                         what="keeper back in search without help")
        _, last = download(self.b.v, "notes.pdf")
        self.assertEqual(last.get("parameters", {}).get("state"), "done", last)
        with open(os.path.join(self.b.folder, "notes.pdf"), "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).digest(), hashlib.sha256(self.data).digest())

    def test_1_down_longer_than_ttl(self):
        self.d.proc.stop(signal.SIGKILL)
        time.sleep(7)  # past the TTL: on its return the directory has them offline
        self.d = Dird(db=self.db, port=self.port, config=self.conf)
        self.back_and_found()
        self.assertTrue(self.a.proc.alive() and self.b.proc.alive())

    def test_2_sessions_lost(self):
        # The directory comes back without the sessions (restored from a
        # backup, or sessions wiped): heartbeats get 401, peers log in again
        # and re-index.
        self.d.stop()
        con = sqlite3.connect(self.db)
        con.execute("DELETE FROM sessions")
        con.execute("DELETE FROM files")
        con.execute("DELETE FROM peers")
        con.commit()
        con.close()
        self.d = Dird(db=self.db, port=self.port, config=self.conf)
        self.back_and_found()
        self.assertGreaterEqual(self.a.proc.output().count("logged in as keeper"), 2)
        self.assertTrue(self.b.logged_in())


if __name__ == "__main__":
    p2ptest.run()
