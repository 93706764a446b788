#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Fault test: p2p-dird killed with SIGKILL 20 times while clients write
(registrations and re-indexes) concurrently. Afterwards the database passes
PRAGMA integrity_check and every write the directory acknowledged is there:
each user it answered 201 for exists, and each peer's file list is the
last one acknowledged or a later one (a write may land without its answer
reaching the client, never the other way round)."""
import os
import random
import signal
import sqlite3
import threading
import time
import unittest

import requests

from robusttest import Dird, p2ptest

KILLS = 20
WRITERS = 4


class DirdCrash(unittest.TestCase):
    def test_kill9_during_concurrent_writes(self):
        base = p2ptest.tempdir("p2p-crash-")
        db = os.path.join(base, "dird.db")
        port = p2ptest.free_port()
        conf = {"login_burst": 10000, "register_burst": 1000000}
        d = Dird(db=db, port=port, config=conf)
        url = d.url
        # One indexing user per writer, logged in before the storm: sessions
        # are in the database, so they survive the kills.
        tokens = [d.user("indexer%d" % i) for i in range(WRITERS)]

        stop = threading.Event()
        acked_users = []
        acked_gen = [0] * WRITERS
        attempts = [0]
        wrong = []
        lock = threading.Lock()

        def writer(w):
            s = requests.Session()
            gen = 0
            i = 0
            while not stop.is_set():
                i += 1
                attempts[0] += 1
                name = "u%d_%d" % (w, i)
                try:
                    r = s.post(url + "/register", json={"username": name, "password": "pw-" + "y" * 10},
                               timeout=5)
                    if r.status_code == 201:
                        with lock:
                            acked_users.append(name)
                except requests.RequestException:
                    s = requests.Session()
                gen += 1
                files = [{"name": "w%d-gen%d-%d.bin" % (w, gen, k), "size": gen, "sha256": "%064x" % gen}
                         for k in range(20)]
                try:
                    r = s.post(url + "/index", headers={"Authorization": "Bearer " + tokens[w]},
                               json={"ip": "127.0.0.1", "port": 50001 + w, "folder": "/f", "files": files},
                               timeout=5)
                    if r.status_code == 200:
                        acked_gen[w] = gen
                    elif r.status_code not in (500, 503):
                        with lock:
                            wrong.append("index answered %d: %s" % (r.status_code, r.text))
                except requests.RequestException:
                    s = requests.Session()

        threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(WRITERS)]
        for t in threads:
            t.start()
        rng = random.Random(7)
        kills = 0
        try:
            # At least KILLS kills; on a slow machine (yescrypt under load)
            # go on, up to three times as many, until enough writes got through.
            for k in range(3 * KILLS):
                if k >= KILLS and len(acked_users) > KILLS:
                    break
                time.sleep(rng.uniform(0.15, 0.5))
                d.proc.stop(signal.SIGKILL)
                kills += 1
                d = Dird(db=db, port=port, config=conf)
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        d.stop()

        self.assertEqual(wrong, [])
        self.assertGreater(len(acked_users), KILLS, "too few writes got through to mean anything")
        con = sqlite3.connect(db)
        try:
            self.assertEqual(con.execute("PRAGMA integrity_check").fetchall(), [("ok",)])
            self.assertEqual(con.execute("PRAGMA foreign_key_check").fetchall(), [])
            users = {r[0] for r in con.execute("SELECT name FROM users")}
            missing = [u for u in acked_users if u not in users]
            self.assertEqual(missing, [], "acknowledged registrations lost")
            for w in range(WRITERS):
                names = [r[0] for r in con.execute(
                    "SELECT f.name FROM files f JOIN users u ON u.id = f.peer_id WHERE u.name = ?",
                    ("indexer%d" % w,))]
                self.assertEqual(len(names), 20, names)
                gens = {int(n.split("-gen")[1].split("-")[0]) for n in names}
                self.assertEqual(len(gens), 1, "a file list mixes two index calls: %s" % sorted(gens))
                self.assertGreaterEqual(gens.pop(), acked_gen[w], "an acknowledged index was lost")
        finally:
            con.close()
        print("# %d kills, %d write attempts, %d acknowledged registrations, index generations %s"
              % (kills, attempts[0], len(acked_users), acked_gen), flush=True)


if __name__ == "__main__":
    p2ptest.run()
