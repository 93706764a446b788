#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The control socket's access check with real second uids (needs root):
a user in the socket's group (primary or supplementary) is let in, one
outside it is refused even when the file mode would allow it, also for a
socket that systemd bound and passed."""
import json
import os
import subprocess
import sys
import unittest

import p2ptest
from test_control import Varlink

GROUP = 4242  # a gid nobody is in; numeric, so it need not exist in /etc/group
NOBODY = 65534

CLIENT = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(10)\ns.connect(sys.argv[1])\n"
          "try:\n    s.sendall(b'{\"method\":\"io.p2p.Peer.Status\",\"parameters\":{}}\\0')\n"
          "except OSError:\n    pass  # refused: the answer is already waiting\nb=b''\n"
          "while b'\\0' not in b:\n    d=s.recv(4096)\n    if not d: break\n    b+=d\n"
          "print(b.split(b'\\0')[0].decode())\n")


def call_as(sock, gid, groups):
    """Status over the socket as uid nobody with the given gid and groups."""
    def become():
        os.setgroups(groups)
        os.setgid(gid)
        os.setuid(NOBODY)
    r = subprocess.run([sys.executable, "-c", CLIENT, sock], capture_output=True, text=True, timeout=20,
                       preexec_fn=become)
    return json.loads(r.stdout) if r.stdout.strip() else {"stderr": r.stderr}


@unittest.skipUnless(os.getuid() == 0, "needs root to switch to other uids")
class Access(unittest.TestCase):
    def check_socket(self, sock):
        os.chown(sock, -1, GROUP)
        os.chmod(sock, 0o666)  # the file lets everyone connect: the daemon's check must decide
        self.assertIn("parameters", call_as(sock, NOBODY, [GROUP]), "supplementary member")
        self.assertIn("parameters", call_as(sock, GROUP, []), "primary member")
        self.assertEqual(call_as(sock, NOBODY, []).get("error"), "io.p2p.Peer.PermissionDenied")
        self.assertEqual(call_as(sock, NOBODY, [NOBODY, 100]).get("error"), "io.p2p.Peer.PermissionDenied")
        self.assertIn("parameters", Varlink(sock).call("Status"), "root")

    def test_bound_by_peerd(self):
        d = p2ptest.tempdir()
        os.chmod(d, 0o755)
        sock = os.path.join(d, "ctl.sock")
        p = p2ptest.Process([p2ptest.binary("p2p-peerd"), "--folder", d, "--listen", "127.0.0.1:0",
                             "--control-socket", sock, "--directory", "http://127.0.0.1:9"])
        try:
            p2ptest.wait_for(lambda: "control socket" in p.output(), what="control socket")
            self.check_socket(sock)
            self.assertIn("control: refused uid %d" % NOBODY, p.output())
        finally:
            p.stop()

    def test_passed_by_systemd(self):
        d = p2ptest.tempdir()
        os.chmod(d, 0o755)
        sock = os.path.join(d, "ctl.sock")
        port = p2ptest.free_port()
        p = p2ptest.Process(["systemd-socket-activate", "-l", "127.0.0.1:%d" % port, "-l", sock,
                             "--fdname=grpc:control", p2ptest.binary("p2p-peerd"), "--folder", d,
                             "--directory", "http://127.0.0.1:9"])
        try:
            p2ptest.wait_for(lambda: os.path.exists(sock), what="activation socket")
            self.assertIn("parameters", Varlink(sock).call("Status"), "root starts it")
            self.assertIn("control socket (passed by systemd)", p.output())
            self.check_socket(sock)
        finally:
            p.stop()


if __name__ == "__main__":
    p2ptest.run()
