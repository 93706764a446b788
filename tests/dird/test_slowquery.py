#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A query that waits on PostgreSQL holds one worker, not the event loop.

Another session locks the users table, so a login (which reads users)
waits; meanwhile /healthz (SELECT 1) must still be answered. With
--workers 0 the same login stalls the loop and /healthz waits too, which
shows that the first case measures the workers and not luck."""
import os
import subprocess
import threading
import unittest

import requests

import p2ptest
import pgtest
import dirdtest
from dirdtest import Dird


class LockedTable:
    """A psql session holding an exclusive lock on table until release()."""

    def __init__(self, server, db, table):
        self.proc = subprocess.Popen([os.path.join(server.bin, "psql"), "-X", "-q", "-A", "-t",
                                      server.url + db], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.proc.stdin.write("BEGIN; LOCK TABLE %s IN ACCESS EXCLUSIVE MODE; SELECT 'locked';\n" % table)
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()
        if line != "locked":
            raise RuntimeError("psql did not take the lock: %r" % line)

    def release(self):
        self.proc.stdin.write("COMMIT;\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def login_async(d, results):
    def go():
        try:
            results.append(requests.post(d.url + "/login", json={"username": "slow", "password": "pw-xxxxxxxx"},
                                         timeout=30).status_code)
        except requests.RequestException as e:
            results.append(e)
    t = threading.Thread(target=go)
    t.start()
    return t


class SlowQuery(unittest.TestCase):
    def run_with_lock(self, workers):
        server = pgtest.server()
        url = server.create_database()
        d = Dird("--workers", str(workers), db=url)
        d.register("slow")
        lock = LockedTable(server, url.rsplit("/", 1)[1], "users")
        results = []
        try:
            t = login_async(d, results)
            # The login is waiting for the lock in the database now.
            p2ptest.wait_for(lambda: "Lock" in server.psql(
                "SELECT wait_event_type FROM pg_stat_activity WHERE wait_event_type = 'Lock'"),
                timeout=10, what="the login to wait for the lock")
            try:
                healthz = dirdtest.get(d.url + "/healthz", timeout=2).status_code
            except requests.Timeout:
                healthz = "timeout"
        finally:
            lock.release()
        t.join(30)
        d.stop()
        return healthz, results

    def test_workers_keep_the_loop_free(self):
        healthz, login = self.run_with_lock(2)
        self.assertEqual(healthz, 200)
        self.assertEqual(login, [200])

    def test_without_workers_the_loop_waits(self):
        healthz, login = self.run_with_lock(0)
        self.assertEqual(healthz, "timeout")
        self.assertEqual(login, [200])


if __name__ == "__main__":
    if not pgtest.bindir() or not pgtest._built_with_pg():
        print("1..0 # SKIP p2p-dird built without PostgreSQL, or PostgreSQL not installed")
    else:
        p2ptest.run()
