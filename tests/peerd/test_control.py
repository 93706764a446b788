#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-peerd black-box: the control socket contract (docs/CONTROL.md) over a
raw varlink connection, with a real p2p-dird."""
import json
import os
import socket
import stat
import subprocess
import sys
import unittest

import p2ptest
from dirdtest import Dird


class Varlink:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(20)
        self.s.connect(path)
        self.buf = b""

    def send_raw(self, data):
        self.s.sendall(data)

    def recv(self):
        while b"\0" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise ConnectionResetError("closed")
            self.buf += d
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None):
        self.send_raw(json.dumps({"method": "io.p2p.Peer." + method, "parameters": params or {}}).encode() + b"\0")
        return self.recv()

    def close(self):
        self.s.close()


def connect(sock):
    try:
        return Varlink(sock)
    except OSError:
        return None


class Control(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Dird()
        cls.dir = p2ptest.tempdir("p2p-ctl-")
        cls.folder = os.path.join(cls.dir, "files")
        os.mkdir(cls.folder)
        with open(os.path.join(cls.folder, "song.mp3"), "wb") as f:
            f.write(b"la" * 1000)
        cls.sock = os.path.join(cls.dir, "peer1.sock")
        cls.port = p2ptest.free_port()
        cls.peer = p2ptest.Process([p2ptest.binary("p2p-peerd"), "--directory", cls.d.url, "--folder", cls.folder,
                                    "--listen", "127.0.0.1:%d" % cls.port, "--port", str(cls.port),
                                    "--ip", "127.0.0.1", "--control-socket", cls.sock])
        p2ptest.wait_for(lambda: os.path.exists(cls.sock), what="control socket")
        cls.v = Varlink(cls.sock)

    @classmethod
    def tearDownClass(cls):
        cls.v.close()
        cls.peer.stop()
        cls.d.stop()

    def test_1_not_logged_in(self):
        for m in ("Index", "Logout"):
            self.assertEqual(self.v.call(m).get("error"), "io.p2p.Peer.NotLoggedIn", m)
        r = self.v.call("Search", {"query": "song"})
        self.assertEqual(r["error"], "io.p2p.Peer.NotLoggedIn")
        r = self.v.call("Status")
        self.assertFalse(r["parameters"]["logged_in"])
        self.assertIsNone(r["parameters"]["username"])

    def test_2_register_login_flow(self):
        r = self.v.call("Register", {"username": "alice", "password": "pw1"})
        self.assertEqual(r, {"parameters": {"username": "alice"}})
        r = self.v.call("Register", {"username": "alice", "password": "pw1"})
        self.assertEqual(r["error"], "io.p2p.Peer.UserExists")
        r = self.v.call("Login", {"username": "alice", "password": "wrong"})
        self.assertEqual(r["error"], "io.p2p.Peer.AuthenticationFailed")
        r = self.v.call("Login", {"username": "alice", "password": "pw1"})
        self.assertEqual(r["parameters"]["username"], "alice")
        self.assertIn("expires_at", r["parameters"])
        r = self.v.call("Status")["parameters"]
        self.assertTrue(r["logged_in"])
        self.assertEqual(r["username"], "alice")
        self.assertTrue(r["directory"]["reachable"])
        self.assertEqual(r["shared_files"], 1)
        self.assertEqual(r["shared_bytes"], 2000)
        r = self.v.call("ListShared")["parameters"]["files"]
        self.assertEqual([f["name"] for f in r], ["song.mp3"])
        self.assertEqual(r[0]["size"], 2000)
        with open(os.path.join(self.folder, "new.txt"), "w") as f:
            f.write("new")
        # inotify re-indexes by itself once the folder is quiet.
        p2ptest.wait_for(lambda: self.v.call("Search", {"exact": "new.txt"})["parameters"]["results"],
                         what="re-index after a new file")
        r = self.v.call("Index")
        self.assertEqual(r["parameters"]["indexed"], 2)
        r = self.v.call("Search", {"query": "SONG"})["parameters"]
        self.assertEqual(r["total"], 1)
        self.assertEqual(r["results"][0]["name"], "song.mp3")
        self.assertEqual(r["results"][0]["port"], self.port)
        r = self.v.call("Search", {"exact": "new.txt"})["parameters"]
        self.assertEqual([h["peer"] for h in r["results"]], ["alice"])
        r = self.v.call("Search", {"exact": "absent.txt"})["parameters"]
        self.assertEqual(r["results"], [])
        self.assertEqual(self.v.call("Transfers")["parameters"], {"transfers": []})
        self.assertEqual(self.v.call("Cancel", {"id": "x"})["error"], "io.p2p.Peer.NotFound")
        self.assertEqual(self.v.call("Logout"), {"parameters": {}})
        self.assertFalse(self.v.call("Status")["parameters"]["logged_in"])

    def test_3_invalid_parameters(self):
        for method, params, bad in (("Login", {}, "username"), ("Login", {"username": 5, "password": "x"}, "username"),
                                    ("Login", {"username": "bad name", "password": "x"}, "username"),
                                    ("Register", {"username": "bob"}, "password"),
                                    ("Search", {}, "query"), ("Search", {"query": "a", "exact": "b"}, "exact"),
                                    ("Search", {"exact": "../x"}, "exact"), ("Search", {"query": "a", "limit": 0}, "limit"),
                                    ("Search", {"query": "a", "limit": "5"}, "limit"), ("Cancel", {}, "id")):
            r = self.v.call(method, params)
            self.assertEqual(r.get("error"), "org.varlink.service.InvalidParameter", (method, params, r))
            self.assertEqual(r["parameters"]["parameter"], bad, (method, params))

    def test_4_unknown_method(self):
        r = self.v.call("Frobnicate")
        self.assertEqual(r["error"], "org.varlink.service.MethodNotFound")

    def test_5_broken_messages_close_the_connection(self):
        for data in (b"not json\0", b"[1,2]\0", b'{"method": 5}\0', b'{"method":"x"}\0',
                     b'{"method":"io.p2p.Peer.Status","more":1}\0'):
            v = Varlink(self.sock)
            v.send_raw(data)
            r = v.recv()
            self.assertEqual(r["error"], "org.varlink.service.InvalidParameter", data)
            with self.assertRaises((ConnectionResetError, OSError)):
                v.recv()
            v.close()
        v = Varlink(self.sock)
        v.send_raw(b"{" + b" " * (1024 * 1024 + 10))
        with self.assertRaises((ConnectionResetError, OSError)):
            v.recv()
        v.close()
        # The daemon is fine.
        self.assertIn("parameters", Varlink(self.sock).call("Status"))

    def test_6_socket_mode_and_live_instance(self):
        self.assertEqual(stat.S_IMODE(os.stat(self.sock).st_mode), 0o660)
        r = subprocess.run([p2ptest.binary("p2p-peerd"), "--folder", self.folder, "--listen", "127.0.0.1:0",
                            "--control-socket", self.sock, "--directory", self.d.url],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 1)
        self.assertIn("another p2p-peerd is running", r.stderr)
        self.assertIn("parameters", Varlink(self.sock).call("Status"))

    def test_7_other_uid_refused(self):
        if os.getuid() != 0:
            self.skipTest("needs root to switch to another uid")
        os.chmod(self.dir, 0o755)
        os.chmod(self.sock, 0o666)  # let the file allow it: SO_PEERCRED must still refuse
        # The refusal is sent as soon as the connection is accepted, and the
        # server closes at once: read it without writing first.
        code = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(10)\ns.connect(sys.argv[1])\n"
                "print(s.recv(4096).split(b'\\0')[0].decode())\n")
        r = subprocess.run([sys.executable, "-c", code, self.sock], capture_output=True, text=True, timeout=20,
                           preexec_fn=lambda: (os.setgid(65534), os.setuid(65534)))
        os.chmod(self.sock, 0o660)
        self.assertEqual(json.loads(r.stdout)["error"], "io.p2p.Peer.PermissionDenied", r.stderr)


class Stale(unittest.TestCase):
    def test_stale_socket_is_replaced(self):
        d = p2ptest.tempdir()
        sock = os.path.join(d, "p.sock")
        s = socket.socket(socket.AF_UNIX)
        s.bind(sock)
        s.close()  # a socket file nobody listens on
        folder = p2ptest.tempdir()
        p = p2ptest.Process([p2ptest.binary("p2p-peerd"), "--folder", folder, "--listen", "127.0.0.1:0",
                             "--control-socket", sock, "--directory", "http://127.0.0.1:9"])
        p2ptest.wait_for(lambda: "control socket" in p.output(), what="control socket")
        self.assertIn("replacing the stale control socket", p.output())
        # "control socket" is also in the line above, logged before the new
        # socket is linked into place: wait until it accepts.
        v = p2ptest.wait_for(lambda: connect(sock), what="the new control socket")
        self.assertIn("parameters", v.call("Status"))
        v.close()
        p.stop()
        self.assertFalse(os.path.exists(sock))


if __name__ == "__main__":
    p2ptest.run()
