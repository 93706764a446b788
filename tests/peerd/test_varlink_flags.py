#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-peerd black-box: the varlink call flags as the spec and systemd use
them — "oneway" runs the call and never answers (not even an error),
"parameters" may be absent or null, "more" on a method that does not stream
gets one reply, "upgrade" is refused with InvalidParameter and the
connection stays usable."""
import json
import os
import socket
import unittest

import p2ptest
from test_control import Varlink
from test_download import Net


def send(v, msg):
    v.send_raw(json.dumps(msg).encode() + b"\0")


def status(v):
    send(v, {"method": "io.p2p.Peer.Status"})
    r = v.recv()
    assert "error" not in r, r
    return r["parameters"]


class Flags(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.net = Net()
        cls.a, _, _ = cls.net.peer("alice", {"tune.ogg": b"t" * 300000})
        cls.b, cls.bfolder, _ = cls.net.peer("bob")

    @classmethod
    def tearDownClass(cls):
        cls.net.close()

    def assert_next_is_status(self, v):
        """The next message on v is the reply to a Status sent now: nothing
        else was answered before it."""
        send(v, {"method": "io.p2p.Peer.Status"})
        r = v.recv()
        self.assertEqual(set(r), {"parameters"}, r)
        self.assertIn("logged_in", r["parameters"], r)
        return r["parameters"]

    def test_1_parameters_absent_or_null(self):
        for msg in ({"method": "io.p2p.Peer.Status"}, {"method": "io.p2p.Peer.Status", "parameters": None},
                    {"method": "org.varlink.service.GetInfo", "parameters": None}):
            send(self.a, msg)
            r = self.a.recv()
            self.assertNotIn("error", r, msg)
        # A method that needs parameters reads null as {}: the first one is missing.
        send(self.a, {"method": "io.p2p.Peer.Login", "parameters": None})
        r = self.a.recv()
        self.assertEqual(r, {"error": "org.varlink.service.InvalidParameter", "parameters": {"parameter": "username"}})

    def test_2_oneway_unknown_and_failing_calls_get_no_answer(self):
        v = self.a
        for msg in ({"method": "io.p2p.Peer.Frobnicate", "oneway": True},
                    {"method": "org.varlink.service.Nothing", "oneway": True},
                    {"method": "io.p2p.Peer.Login", "parameters": {}, "oneway": True},
                    {"method": "io.p2p.Peer.Cancel", "parameters": {"id": "nope"}, "oneway": True},
                    {"method": "org.varlink.service.GetInfo", "oneway": True},
                    {"method": "io.p2p.Peer.Status", "oneway": True, "upgrade": True},
                    {"method": "io.p2p.Peer.Status", "oneway": True}):
            send(v, msg)
        self.assert_next_is_status(v)
        # and nothing is left behind it
        v.s.settimeout(0.5)
        with self.assertRaises(socket.timeout):
            v.recv()
        v.s.settimeout(20)

    def test_3_oneway_logout_runs(self):
        v = self.net.peers["alice"][1]
        self.assertTrue(status(v)["logged_in"])
        send(v, {"method": "io.p2p.Peer.Logout", "oneway": True})
        self.assertFalse(self.assert_next_is_status(v)["logged_in"])
        send(v, {"method": "io.p2p.Peer.Login", "parameters": {"username": "alice", "password": "pw-alice"},
                 "oneway": True})
        p2ptest.wait_for(lambda: status(v)["logged_in"], what="oneway Login")

    def test_4_oneway_download_runs_without_reply(self):
        v = self.b
        p2ptest.wait_for(lambda: status(self.a)["logged_in"], what="alice logged in")
        send(v, {"method": "io.p2p.Peer.Download", "parameters": {"name": "tune.ogg"}, "oneway": True})
        self.assert_next_is_status(v)

        def done():
            send(v, {"method": "io.p2p.Peer.Transfers"})
            r = v.recv()
            self.assertEqual(set(r), {"parameters"}, r)  # never the Download's answer
            return [t for t in r["parameters"]["transfers"] if t["name"] == "tune.ogg" and t["state"] == "done"]

        p2ptest.wait_for(done, timeout=30, what="the oneway download to finish")
        with open(os.path.join(self.bfolder, "tune.ogg"), "rb") as f:
            self.assertEqual(f.read(), b"t" * 300000)
        # The end of the transfer is not reported either.
        v.s.settimeout(1)
        with self.assertRaises(socket.timeout):
            v.recv()
        v.s.settimeout(20)

    def test_5_more_on_a_method_that_does_not_stream(self):
        for method in ("io.p2p.Peer.Status", "org.varlink.service.GetInfo"):
            send(self.a, {"method": method, "more": True})
            r = self.a.recv()
            self.assertNotIn("error", r)
            self.assertNotIn("continues", r)
        self.assert_next_is_status(self.a)

    def test_6_upgrade_is_refused(self):
        for method in ("io.p2p.Peer.Status", "org.varlink.service.GetInfo", "io.p2p.Peer.Logout"):
            send(self.a, {"method": method, "upgrade": True})
            self.assertEqual(self.a.recv(), {"error": "org.varlink.service.InvalidParameter",
                                             "parameters": {"parameter": "upgrade"}}, method)
        # Not run, and the connection goes on speaking varlink.
        self.assertTrue(self.assert_next_is_status(self.a)["logged_in"])
        # "upgrade" that is not a boolean breaks the protocol, like "more".
        v = Varlink(os.path.join(self.net.bases["alice"], "ctl.sock"))
        send(v, {"method": "io.p2p.Peer.Status", "upgrade": "yes"})
        self.assertEqual(v.recv(), {"error": "org.varlink.service.InvalidParameter",
                                    "parameters": {"parameter": "\"upgrade\" is not a boolean"}})
        v.close()


if __name__ == "__main__":
    p2ptest.run()
