#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-peerd black-box: the directory goes away and comes back. The peer
keeps serving, retries with backoff, and by itself is searchable again once
p2p-dird is back on the same port and database."""
import os
import time
import unittest

import p2ptest
from dirdtest import Dird
from test_download import Net


class DirectoryAway(unittest.TestCase):
    def setUp(self):
        self.net = Net()
        # A short TTL: an outage longer than it drops the peer from search.
        self.net.d.stop()
        self.net.d = Dird("--ttl", "5", db=self.net.d.db, port=self.net.d.port)

    def tearDown(self):
        self.net.close()

    def searchable(self, name):
        r = self.net.d.req("GET", "/search", self.tok, params={"file": name})
        return r.status_code == 200 and [h["peer"] for h in r.json()["peers_with_file"]] == ["keeper"]

    def test_back_by_itself(self):
        _, _, proc = self.net.peer("keeper", {"kept.txt": b"still here"},
                                   ["--heartbeat", "1", "--retry-max", "2"])
        self.net.d.register("watcher")
        self.tok = self.net.d.login("watcher")
        p2ptest.wait_for(lambda: self.searchable("kept.txt"), timeout=30, what="keeper in search")
        db, port = self.net.d.db, self.net.d.port
        self.net.d.stop()
        p2ptest.wait_for(lambda: "cannot be reached; retrying" in proc.output(), what="the peer noticing")
        time.sleep(6)  # longer than the TTL: the directory will have dropped it
        self.assertTrue(proc.alive())
        self.net.d = Dird("--ttl", "5", db=db, port=port)
        self.tok = self.net.d.login("watcher")
        p2ptest.wait_for(lambda: self.searchable("kept.txt"), timeout=30, what="keeper back in search")
        # The peer logs it once its re-index is answered, just after the
        # directory has stored it.
        p2ptest.wait_for(lambda: "is back" in proc.output(), timeout=10, what="the peer saying the directory is back")


if __name__ == "__main__":
    p2ptest.run()
