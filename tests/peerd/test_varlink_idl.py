#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-peerd black-box: the control socket against its interface definition,
docs/io.p2p.Peer.varlink. The file is parsed here (tests/peerd/varlinkidl.py)
and every method, parameter, reply and error the daemon produces is checked
against it: what GetInterfaceDescription returns is the file byte for byte,
every method in the file is served, every parameter is checked under the name
the file gives it, and every reply and error has the declared fields and types."""
import json
import os
import unittest

import p2ptest
import varlinkidl
from test_download import Net, download

SRC = os.environ.get("P2P_SRCDIR", os.path.join(os.path.dirname(__file__), "..", ".."))
PEER_IDL = os.path.join(SRC, "docs", "io.p2p.Peer.varlink")
SERVICE_IDL = os.path.join(SRC, "src", "common", "org.varlink.service.varlink")

# A valid value of each parameter type, and one of the wrong type.
WRONG = {"string": 5, "int": "5", "bool": "yes", "float": "x"}
# Valid parameters for each method: everything else is derived from the file.
VALID = {
    "Register": {"username": "idlcheck", "password": "pw"},
    "Login": {"username": "idlcheck", "password": "pw"},
    "Search": {"query": "song", "limit": 5, "offset": 0},
    "Download": {"name": "absent.bin"},
    "Cancel": {"id": "none"},
    "Pause": {"id": "none"},
    "Resume": {"id": "none"},
}


def base_type(t):
    return t[1] if t[0] == "maybe" else t


class IDL(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(PEER_IDL, "rb") as f:
            cls.peer_text = f.read()
        with open(SERVICE_IDL, "rb") as f:
            cls.service_text = f.read()
        cls.idl = varlinkidl.parse(cls.peer_text.decode())
        cls.service = varlinkidl.parse(cls.service_text.decode())
        cls.seen_errors = set()
        cls.net = Net()
        cls.a, cls.afolder, _ = cls.net.peer("alice", {"song.mp3": b"la" * 100000})
        cls.b, cls.bfolder, _ = cls.net.peer("bob")

    @classmethod
    def tearDownClass(cls):
        cls.net.close()

    def check_message(self, method, msg, more):
        """A reply or error of method, against the interface definitions."""
        iface = self.service if method.startswith("org.varlink.service.") else self.idl
        member = method.rsplit(".", 1)[1]
        if "error" in msg:
            name = msg["error"]
            ename = name.rsplit(".", 1)
            decl = {"io.p2p.Peer": self.idl, "org.varlink.service": self.service}.get(ename[0])
            self.assertIsNotNone(decl, "error %s of an unknown interface" % name)
            self.assertIn(ename[1], decl.errors, "error %s is not declared in %s" % (name, decl.name))
            self.assertEqual(varlinkidl.check_struct(decl, msg.get("parameters", {}), decl.errors[ename[1]],
                                                     name), [], msg)
            self.seen_errors.add(name)
            self.assertNotIn("continues", msg)
            return
        self.assertIn(member, iface.methods, method)
        self.assertEqual(varlinkidl.check_struct(iface, msg["parameters"], iface.methods[member][1], method), [],
                         msg)
        if not more:
            self.assertNotIn("continues", msg)

    def call(self, v, method, params=None, more=False):
        """Call and check every answer; return the last one."""
        full = method if "." in method else "io.p2p.Peer." + method
        msg = {"method": full, "parameters": params if params is not None else {}}
        if more:
            msg["more"] = True
        v.send_raw(json.dumps(msg).encode() + b"\0")
        while True:
            r = v.recv()
            self.check_message(full, r, more)
            if not r.get("continues"):
                return r

    def test_1_description_is_the_file(self):
        r = self.call(self.a, "org.varlink.service.GetInterfaceDescription", {"interface": "io.p2p.Peer"})
        self.assertEqual(r["parameters"]["description"].encode(), self.peer_text)
        r = self.call(self.a, "org.varlink.service.GetInterfaceDescription", {"interface": "org.varlink.service"})
        self.assertEqual(r["parameters"]["description"].encode(), self.service_text)
        # The standard interface as the varlink spec defines it.
        self.assertEqual(self.service.methods["GetInfo"][1],
                         {"vendor": ("string",), "product": ("string",), "version": ("string",),
                          "url": ("string",), "interfaces": ("array", ("string",))})
        self.assertEqual(self.service.methods["GetInterfaceDescription"],
                         ({"interface": ("string",)}, {"description": ("string",)}))
        self.assertEqual(set(self.service.errors), {"InterfaceNotFound", "MethodNotFound", "MethodNotImplemented",
                                                    "InvalidParameter", "PermissionDenied", "ExpectedMore"})
        r = self.call(self.a, "org.varlink.service.GetInterfaceDescription", {"interface": "io.p2p.Nothing"})
        self.assertEqual(r["error"], "org.varlink.service.InterfaceNotFound")
        self.assertEqual(r["parameters"], {"interface": "io.p2p.Nothing"})

    def test_2_info(self):
        r = self.call(self.a, "org.varlink.service.GetInfo")["parameters"]
        self.assertEqual(r["vendor"], "p2p")
        self.assertEqual(r["product"], "p2p-peerd")
        self.assertEqual(r["version"], self.call(self.a, "Status")["parameters"]["version"])
        self.assertTrue(r["url"].startswith("https://"))
        self.assertEqual(r["interfaces"], ["org.varlink.service", "io.p2p.Peer"])

    def test_3_every_method_is_served(self):
        for m in self.idl.methods:
            r = self.call(self.b, m, VALID.get(m, {}))
            self.assertNotIn(r.get("error"), ("org.varlink.service.MethodNotFound",
                                              "org.varlink.service.MethodNotImplemented"), m)
        r = self.call(self.b, "Frobnicate")
        self.assertEqual(r["error"], "org.varlink.service.MethodNotFound")

    def test_4_every_parameter_is_checked_by_its_name(self):
        v = self.net.peers["bob"][1]
        for m, (inp, _) in self.idl.methods.items():
            # a parameter the file does not declare is refused, as systemd does
            r = self.call(v, m, dict(VALID.get(m, {}), undeclared=1))
            self.assertEqual(r, {"error": "org.varlink.service.InvalidParameter",
                                 "parameters": {"parameter": "undeclared"}}, m)
            for p, t in inp.items():
                valid = dict(VALID.get(m, {}))
                kind = base_type(t)[0]
                self.assertIn(kind, WRONG, "%s.%s: no wrong value for type %s" % (m, p, kind))
                for params in ([dict(valid, **{p: WRONG[kind]})] +
                               ([] if t[0] == "maybe" else [{k: x for k, x in valid.items() if k != p}])):
                    r = self.call(v, m, params)
                    self.assertEqual(r.get("error"), "org.varlink.service.InvalidParameter", (m, params, r))
                    self.assertEqual(r["parameters"]["parameter"], p, (m, params))
                if t[0] == "maybe":
                    # null is the same as absent
                    absent = {k: x for k, x in valid.items() if k != p}
                    self.assertEqual(self.call(v, m, dict(absent, **{p: None})), self.call(v, m, absent), (m, p))

    def test_5_replies_and_errors_match_the_file(self):
        v = self.b
        # Not logged in: every method that needs a session says so.
        self.call(v, "Logout")  # logged in or not, after test 3
        for m, params in (("Index", {}), ("Logout", {}), ("Search", {"query": "x"}), ("Download", {"name": "x"})):
            self.assertEqual(self.call(v, m, params).get("error"), "io.p2p.Peer.NotLoggedIn", m)
        self.assertEqual(self.call(v, "Register", {"username": "bob", "password": "x"})["error"],
                         "io.p2p.Peer.UserExists")
        self.assertEqual(self.call(v, "Login", {"username": "bob", "password": "wrong"})["error"],
                         "io.p2p.Peer.AuthenticationFailed")
        self.assertNotIn("error", self.call(v, "Login", {"username": "bob", "password": "pw-bob"}))
        for m in ("Status", "ListShared", "Transfers", "Index"):
            self.assertNotIn("error", self.call(v, m), m)
        r = self.call(v, "Search", {"query": "song"})["parameters"]
        self.assertEqual([h["name"] for h in r["results"]], ["song.mp3"])
        self.assertNotIn("error", self.call(v, "Search", {"exact": "song.mp3"}))
        self.assertEqual(self.call(v, "Download", {"name": "absent.bin"})["error"], "io.p2p.Peer.NotFound")
        for m in ("Cancel", "Pause", "Resume"):
            r = self.call(v, m, {"id": "none"})
            self.assertEqual(r, {"error": "io.p2p.Peer.NotFound", "parameters": {"id": "none"}}, m)
        # A download with progress, and one without: both shapes of the reply.
        r = self.call(v, "Download", {"name": "song.mp3", "to": self.net.bases["bob"]}, more=True)
        self.assertEqual(r["parameters"]["state"], "done", r)
        r = self.call(v, "Download", {"name": "song.mp3"})
        self.assertEqual(r["parameters"]["state"], "done", r)
        r = self.call(v, "Transfers")["parameters"]["transfers"]
        self.assertEqual({t["state"] for t in r}, {"done"})
        self.assertNotIn("error", self.call(v, "Status"))
        self.assertNotIn("error", self.call(v, "Logout"))

    def test_6_directory_unreachable(self):
        base = p2ptest.tempdir("p2p-idl-")
        os.mkdir(os.path.join(base, "f"))
        sock = os.path.join(base, "c.sock")
        proc = p2ptest.Process([p2ptest.binary("p2p-peerd"), "--directory", "http://127.0.0.1:%d" % p2ptest.free_port(),
                                "--folder", os.path.join(base, "f"), "--listen", "127.0.0.1:0",
                                "--control-socket", sock])
        try:
            from test_download import connect
            v = p2ptest.wait_for(lambda: connect(sock), what="control socket")
            r = self.call(v, "Login", {"username": "carol", "password": "x"})
            self.assertEqual(r["error"], "io.p2p.Peer.DirectoryUnreachable")
            r = self.call(v, "Register", {"username": "carol", "password": "x"})
            self.assertEqual(r["error"], "io.p2p.Peer.DirectoryUnreachable")
            self.assertFalse(self.call(v, "Status")["parameters"]["directory"]["reachable"])
            v.close()
        finally:
            proc.stop()

    def test_7_busy(self):
        """One connection over the cap (64, src/common/peer_iface.h) is told
        io.p2p.Peer.Busy as the file declares it, and closed; the others are
        served."""
        from test_control import Varlink
        sock = os.path.join(self.net.bases["bob"], "ctl.sock")
        call = json.dumps({"method": "org.varlink.service.GetInfo", "parameters": {}}).encode() + b"\0"
        conns, busy = [], None
        try:
            for _ in range(64 + 4):
                v = Varlink(sock)
                conns.append(v)
                try:
                    v.send_raw(call)
                except OSError:
                    pass  # closed already: its Busy is waiting to be read
                r = v.recv()
                if "error" in r:
                    busy = r
                    break
                self.check_message("org.varlink.service.GetInfo", r, False)
            self.assertIsNotNone(busy, "no connection was refused")
            self.check_message("io.p2p.Peer.Status", busy, False)
            self.assertEqual(busy["error"], "io.p2p.Peer.Busy", busy)
            self.assertLessEqual(len(conns), 64)
            with self.assertRaises(OSError):
                conns[-1].recv()  # closed after saying so
        finally:
            for v in conns:
                v.close()
        # Once they are gone, a new connection is served again.
        def info():
            v = Varlink(sock)
            try:
                r = self.call(v, "org.varlink.service.GetInfo")
            finally:
                v.close()
            return None if "error" in r else r["parameters"]
        r = p2ptest.wait_for(info, what="a call after the others closed")
        self.assertEqual(r["product"], "p2p-peerd")

    def test_8_pause_and_resume(self):
        """Pause, Resume, a paused transfer in Transfers and the Download it
        ends, all as the file declares them."""
        from test_control import Varlink
        MiB = 1 << 20
        self.net.peer("slowseed", {"slow.iso": os.urandom(4 * MiB + 3)}, ["--upload-rate", str(MiB)])
        v = self.b
        self.assertNotIn("error", self.call(v, "Login", {"username": "bob", "password": "pw-bob"}))  # test 5 left
        follower = Varlink(os.path.join(self.net.bases["bob"], "ctl.sock"))
        follower.send_raw(json.dumps({"method": "io.p2p.Peer.Download", "parameters": {"name": "slow.iso"},
                                      "more": True}).encode() + b"\0")

        def transfer():
            for t in self.call(v, "Transfers")["parameters"]["transfers"]:
                if t["name"] == "slow.iso":
                    return t
            return None
        p2ptest.wait_for(lambda: (transfer() or {}).get("received", 0) >= MiB // 2, timeout=30, what="bytes in")
        tid = transfer()["id"]
        self.assertEqual(self.call(v, "Pause", {"id": tid}), {"parameters": {}})
        p2ptest.wait_for(lambda: transfer()["state"] == "paused", what="paused")
        while True:  # the follower's Download ends with Cancelled
            r = follower.recv()
            self.check_message("io.p2p.Peer.Download", r, True)
            if not r.get("continues"):
                break
        follower.close()
        self.assertEqual(r["error"], "io.p2p.Peer.Cancelled", r)
        self.assertEqual(self.call(v, "Resume", {"id": tid}), {"parameters": {"id": tid}})
        r = self.call(v, "Download", {"name": "slow.iso"}, more=True)
        self.assertEqual((r["parameters"]["state"], r["parameters"]["id"]), ("done", tid), r)

    def test_9_errors_seen(self):
        """Every error the file declares is produced by one of the tests here,
        or by a named test that needs a setup this one lacks."""
        elsewhere = {
            "RegistrationClosed": "a directory with registration off",
            "RateLimited": "a directory that answers 429",
            "VerificationFailed": "test_sources.py: corrupt sources",
            "TransferFailed": "test_download.py: a source that goes away",
            "Cancelled": "test_download.py: Cancel of a running transfer",
            "PermissionDenied": "test_control.py: another uid",
            "FileExists": "test_liars.py: a different local file of the name",
        }
        for e in self.idl.errors:
            if e not in elsewhere:
                self.assertIn("io.p2p.Peer." + e, self.seen_errors, e)
        self.assertIn("org.varlink.service.InvalidParameter", self.seen_errors)
        self.assertIn("org.varlink.service.MethodNotFound", self.seen_errors)
        self.assertIn("org.varlink.service.InterfaceNotFound", self.seen_errors)


if __name__ == "__main__":
    p2ptest.run()
