#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Login brute force against p2p-dird: guessing many user names from one
address is throttled too (the per-user limit is in tests/dird/test_badinput.py),
every throttled answer is 429 with Retry-After, and after waiting that long
the right password works again (throttling, not a lockout)."""
import time
import unittest

import p2ptest
from dirdtest import Dird


class BruteForce(unittest.TestCase):
    def setUp(self):
        # Per user: burst 2, one attempt back per second; per address: 4x the burst.
        self.d = Dird("--login-burst", "2", "--login-interval", "1")

    def tearDown(self):
        self.d.stop()

    def login(self, user, password):
        return self.d.req("POST", "/login", json={"username": user, "password": password})

    def test_spraying_user_names_from_one_address_is_throttled(self):
        # Every name is new, so only the address's bucket (8, one back per
        # 0.25 s) can stop this; a failed login costs a yescrypt run meanwhile.
        start, failed = time.monotonic(), 0
        for i in range(60):
            r = self.login("nobody%d" % i, "guess")
            if r.status_code != 401:
                break
            failed += 1
        self.assertEqual(r.status_code, 429, "no throttling after %d guesses" % failed)
        self.assertLessEqual(failed, 8 + 4 * (time.monotonic() - start) + 1)
        self.assertGreaterEqual(failed, 8)
        self.assertIn("too many login attempts", r.json()["error"])
        self.assertGreaterEqual(int(r.headers["Retry-After"]), 1)
        self.assertIn("throttled", self.d.proc.output())

    def test_throttle_ends_after_retry_after(self):
        self.assertEqual(self.d.register("carol").status_code, 201)
        codes = [self.login("carol", "guess%d" % i).status_code for i in range(3)]
        self.assertEqual(codes, [401, 401, 429])
        r = self.login("carol", "pw-" + "x" * 8)
        self.assertEqual(r.status_code, 429)
        time.sleep(int(r.headers["Retry-After"]) + 0.2)
        self.assertEqual(self.login("carol", "pw-" + "x" * 8).status_code, 200)


if __name__ == "__main__":
    p2ptest.run()
