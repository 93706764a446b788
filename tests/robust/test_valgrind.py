#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""valgrind smoke run: p2p-dird, two p2p-peerd and p2pctl under valgrind
(memcheck, --errors-for-leak-kinds=definite) through a whole download:
register, login from a password file, index, search, ticket, Read,
verify, re-index, status, SIGTERM. Every program must exit 0 with no
error reported. Skips when valgrind is not installed or the build has
sanitizers."""
import hashlib
import os
import re
import shutil
import subprocess
import unittest

from robusttest import Dird, Peer, p2ptest, sanitized

SUPP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "valgrind.supp")


def valgrind(log):
    return ["valgrind", "--quiet", "--leak-check=full", "--errors-for-leak-kinds=definite",
            "--show-leak-kinds=definite", "--error-exitcode=99", "--suppressions=" + SUPP,
            "--log-file=" + log]


class Valgrind(unittest.TestCase):
    def test_download_flow_under_valgrind(self):
        if not shutil.which("valgrind"):
            self.skipTest("valgrind is not installed")
        if sanitized():
            self.skipTest("a sanitizer build: valgrind cannot run it")
        logs = p2ptest.tempdir("p2p-vg-")
        d = Dird(env=None)
        # dird restarted under valgrind on the same database and port.
        db, port = d.db, d.port
        d.stop()
        dl = os.path.join(logs, "dird.vg")
        dv = p2ptest.Process(valgrind(dl) + [p2ptest.binary("p2p-dird"), "--listen", "127.0.0.1:%d" % port,
                                             "--database", db])
        d.proc = dv
        p2ptest.wait_for(d.healthy, timeout=60, what="p2p-dird under valgrind")
        data = os.urandom(1024 * 1024 + 3)
        a = Peer(d.url, "vg-a", {"vg.bin": data}, register_with=d, wait=90,
                 wrapper=valgrind(os.path.join(logs, "a.vg")))
        b = Peer(d.url, "vg-b", register_with=d, wait=90, wrapper=valgrind(os.path.join(logs, "b.vg")))
        p2ptest.wait_for(lambda: len(b.search("vg.bin")) == 1, timeout=60, what="vg.bin indexed")
        # p2pctl under valgrind too: search, a streamed download, status.
        for args in (["search", "vg.bin"], ["download", "vg.bin"], ["status"], ["transfers"]):
            log = os.path.join(logs, "p2pctl-%s.vg" % args[0])
            r = subprocess.run(valgrind(log) + [p2ptest.binary("p2pctl"), "-s", b.sock, "--json"] + args,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
            with open(log) as f:
                report = f.read()
            self.assertEqual(r.returncode, 0, "p2pctl %s: %s\n%s" % (args[0], r.stdout.decode(errors="replace"),
                                                                      report[-6000:]))
        with open(os.path.join(b.folder, "vg.bin"), "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).digest(), hashlib.sha256(data).digest())
        self.assertNotIn("error", b.call("Status"))
        self.assertNotIn("error", b.call("Transfers"))
        codes = {}
        for name, peer in (("vg-a", a), ("vg-b", b)):
            peer.v.close()
            codes[name] = peer.proc.stop(timeout=60)
        codes["dird"] = dv.stop(timeout=60)
        reports = {}
        for name, log in (("dird", dl), ("vg-a", os.path.join(logs, "a.vg")), ("vg-b", os.path.join(logs, "b.vg"))):
            with open(log) as f:
                reports[name] = f.read()
        for name, rc in codes.items():
            self.assertEqual(rc, 0, "%s exited %s under valgrind:\n%s" % (name, rc, reports[name][-6000:]))
        for name, text in reports.items():
            self.assertFalse(re.search(r"ERROR SUMMARY: [1-9]", text), "%s:\n%s" % (name, text[-6000:]))


if __name__ == "__main__":
    p2ptest.run()
