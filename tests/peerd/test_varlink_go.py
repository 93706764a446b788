#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-peerd black-box: a varlink client from Debian's golang-github-varlink-go-dev
(tests/peerd/varlink_go_client.go, built here in GOPATH mode, offline) calls
GetInfo, GetInterfaceDescription (and parses the answer with the library's own
IDL parser), Status with "parameters": null, errors, oneway, more and upgrade
on a real p2p-peerd. Skipped only when the Go toolchain or the library is not
installed (scripts/setup-deps installs both)."""
import os
import shutil
import subprocess
import sys
import unittest

import p2ptest
from test_control import Varlink

SRC = os.environ.get("P2P_SRCDIR", os.path.join(os.path.dirname(__file__), "..", ".."))
GOPATH = "/usr/share/gocode"
LIBRARY = os.path.join(GOPATH, "src", "github.com", "varlink", "go", "varlink")


class GoClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = p2ptest.tempdir("p2p-vlgo-")
        cls.client = os.path.join(cls.dir, "varlink_go_client")
        env = dict(os.environ, GOPATH=GOPATH, GO111MODULE="off", GOFLAGS="", GOPROXY="off",
                   GOCACHE=os.path.join(cls.dir, "gocache"), HOME=cls.dir, CGO_ENABLED="0")
        r = subprocess.run(["go", "build", "-o", cls.client, os.path.join(SRC, "tests", "peerd", "varlink_go_client.go")],
                           env=env, cwd=cls.dir, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise AssertionError("go build failed:\n" + r.stdout + r.stderr)
        os.mkdir(os.path.join(cls.dir, "files"))
        cls.sock = os.path.join(cls.dir, "ctl.sock")
        cls.peer = p2ptest.Process([p2ptest.binary("p2p-peerd"),
                                    "--directory", "http://127.0.0.1:%d" % p2ptest.free_port(),
                                    "--folder", os.path.join(cls.dir, "files"), "--listen", "127.0.0.1:0",
                                    "--control-socket", cls.sock])
        p2ptest.wait_for(lambda: os.path.exists(cls.sock), what="control socket")

    @classmethod
    def tearDownClass(cls):
        cls.peer.stop()

    def test_go_client(self):
        r = subprocess.run([self.client, self.sock, os.path.join(SRC, "docs", "io.p2p.Peer.varlink")],
                           capture_output=True, text=True, timeout=60)
        sys.stdout.write("".join("# " + line + "\n" for line in (r.stdout + r.stderr).splitlines()))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn("FAIL:", r.stdout)
        # The library's parser saw every method and error p2p-peerd serves.
        methods = [line for line in r.stdout.splitlines() if line.startswith("methods:")][0].split()[1:]
        for m in ("Register", "Login", "Logout", "Index", "Search", "Download", "Status", "ListShared",
                  "Transfers", "Cancel"):
            self.assertIn(m, methods)
        errors = [line for line in r.stdout.splitlines() if line.startswith("errors:")][0].split()[1:]
        self.assertIn("NotLoggedIn", errors)
        # The daemon is still there and well.
        v = Varlink(self.sock)
        self.assertIn("parameters", v.call("Status"))
        v.close()


if __name__ == "__main__":
    if shutil.which("go") is None or not os.path.isdir(LIBRARY):
        print("1..0 # SKIP the Go toolchain (golang-go) or golang-github-varlink-go-dev is not installed")
        sys.exit(0)
    p2ptest.run()
