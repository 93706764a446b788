#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Fault tests: the connection to a sender cut mid-stream. The sender runs
in its own network namespace joined to this one by a veth pair, its link
limited to 2 MB/s with tc tbf so the transfer takes seconds; nftables
inside the namespace then cuts the gRPC connection:

  reject  (TCP reset) — the download fails at once with TransferFailed and
          a resume point; the next download resumes from it;
  drop    (silence) for a few seconds, then lifted — the download carries
          on over the same connection and completes verified;
  drop    for good — the download fails within a bound, keeping what it
          has, instead of hanging forever.

Everything stays on this machine (private addresses on a veth pair). Needs
root, ip, tc with tbf and nft; skips with the reason otherwise."""
import hashlib
import os
import shutil
import subprocess
import time
import unittest

import requests

from robusttest import Background, Peer, download, p2ptest, run_quiet
from test_control import Varlink

NS = "p2pr-%d" % os.getpid()
VETH = "p2pr%da" % (os.getpid() % 100000)
VETH_NS = "p2pr%db" % (os.getpid() % 100000)
NET = "10.231.%d" % (os.getpid() % 250 + 1)
HOST_IP, NS_IP = NET + ".1", NET + ".2"


def missing_feature():
    if os.geteuid() != 0:
        return "needs root (CI runs as root)"
    for tool in ("ip", "tc", "nft"):
        if not shutil.which(tool):
            return "%s is not installed" % tool
    return None


class NetDird:
    """p2p-dird listening on the host side of the veth pair."""

    def __init__(self):
        self.port = p2ptest.free_port()
        self.url = "http://%s:%d" % (HOST_IP, self.port)
        db = os.path.join(p2ptest.tempdir("p2p-netdird-"), "dird.db")
        self.proc = p2ptest.Process([p2ptest.binary("p2p-dird"), "--listen", "%s:%d" % (HOST_IP, self.port),
                                     "--database", db])
        p2ptest.wait_for(self.healthy, what="p2p-dird on " + self.url)

    def healthy(self):
        try:
            return requests.get(self.url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def register(self, name, password):
        return requests.post(self.url + "/register", json={"username": name, "password": password}, timeout=5)


class NetCut(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # A skip raised here would hide the test cases from the TAP plan:
        # each test skips itself in setUp with the reason.
        cls.made = False
        cls.d = None
        cls.reason = missing_feature()
        if cls.reason:
            return
        ns = ["ip", "-n", NS]
        try:
            run_quiet(["ip", "netns", "add", NS])
            cls.made = True
            run_quiet(["ip", "link", "add", VETH, "type", "veth", "peer", "name", VETH_NS])
            run_quiet(["ip", "link", "set", VETH_NS, "netns", NS])
            run_quiet(["ip", "addr", "add", HOST_IP + "/24", "dev", VETH])
            run_quiet(["ip", "link", "set", VETH, "up"])
            run_quiet(ns + ["addr", "add", NS_IP + "/24", "dev", VETH_NS])
            run_quiet(ns + ["link", "set", VETH_NS, "up"])
            run_quiet(ns + ["link", "set", "lo", "up"])
            # 16 Mbit/s out of the namespace: a 12 MiB file takes ~6 s.
            run_quiet(["tc", "-n", NS, "qdisc", "add", "dev", VETH_NS, "root", "tbf", "rate", "16mbit",
                       "burst", "64kbit", "latency", "200ms"])
        except RuntimeError as e:
            cls.tearDownClass()
            cls.made = False
            cls.reason = "the kernel or tools lack a feature: %s" % e
            return
        cls.d = NetDird()

    @classmethod
    def tearDownClass(cls):
        if cls.d:
            cls.d.proc.stop()
        if cls.made:
            run_quiet(["ip", "link", "del", VETH], check=False)
            run_quiet(["ip", "netns", "del", NS], check=False)

    def setUp(self):
        if self.reason:
            self.skipTest(self.reason)
        # Three 4 MiB ranges: a cut after the first keeps one verified.
        self.data = os.urandom(12 * 1024 * 1024)
        self.name = "cut-%s.bin" % self._testMethodName[-6:]
        self.sender = Peer(self.d.url, "sender" + self._testMethodName[-4:], {self.name: self.data},
                           listen_ip=NS_IP, ip=NS_IP, prefix=["ip", "netns", "exec", NS],
                           register_with=self.d, chunk_size=262144)
        self.getter = Peer(self.d.url, "getter" + self._testMethodName[-4:], register_with=self.d)
        p2ptest.wait_for(lambda: len(self.getter.search(self.name)) == 1, what="file indexed")
        self.partial = os.path.join(self.getter.folder, ".p2p-partial", self.name)
        self.final = os.path.join(self.getter.folder, self.name)

    def tearDown(self):
        self.nft_flush()
        self.getter.stop()
        self.sender.stop()

    def nft(self, verdict):
        port = self.sender.port
        rules = ("table inet p2pcut {\n"
                 " chain in { type filter hook input priority 0; tcp dport %d %s; }\n"
                 " chain out { type filter hook output priority 0; tcp sport %d %s; }\n"
                 "}\n") % (port, verdict, port, "drop" if verdict == "drop" else "accept")
        r = subprocess.run(["ip", "netns", "exec", NS, "nft", "-f", "-"], input=rules.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertEqual(r.returncode, 0, r.stdout)

    def nft_flush(self):
        run_quiet(["ip", "netns", "exec", NS, "nft", "delete", "table", "inet", "p2pcut"], check=False)

    def partial_size(self):
        try:
            return os.path.getsize(self.partial)
        except OSError:
            return 0

    def received(self):
        """Bytes the running download has received (the partial file has
        its full size from the start, so its size says nothing)."""
        v = Varlink(self.getter.sock)  # the download's own connection is busy
        try:
            r = v.call("Transfers")
        finally:
            v.close()
        for t in r.get("parameters", {}).get("transfers", []):
            if t["name"] == self.name and t["state"] == "running":
                return t["received"]
        return 0

    def start_and_wait_for_bytes(self, n=5 * 1024 * 1024):
        job = Background(self.getter, self.name)
        p2ptest.wait_for(lambda: self.received() >= n, timeout=20, what="%d bytes received" % n)
        self.assertLess(self.received(), len(self.data), "the link is not slow enough to cut mid-stream")
        return job

    def verified(self):
        with open(self.final, "rb") as f:
            return hashlib.sha256(f.read()).digest() == hashlib.sha256(self.data).digest()

    def test_reject_fails_with_resume_point_then_resumes(self):
        job = self.start_and_wait_for_bytes()
        self.nft("reject with tcp reset")
        _, last = job.result(30)
        self.assertEqual(last.get("error"), "io.p2p.Peer.TransferFailed", last)
        self.assertIn("kept to resume", last["parameters"]["message"])
        self.assertFalse(os.path.exists(self.final))
        kept = self.partial_size()
        self.assertGreater(kept, 0)
        self.nft_flush()
        _, last = download(self.getter.v, self.name)
        self.assertEqual(last.get("parameters", {}).get("state"), "done", last)
        self.assertTrue(self.verified())
        # At least the first range was verified on disk and not fetched again.
        self.assertRegex(self.getter.proc.output(), r"resuming, [1-9]\d* of 3 ranges verified on disk")

    def test_drop_for_a_while_then_continue(self):
        job = self.start_and_wait_for_bytes()
        self.nft("drop")
        time.sleep(4)
        before = self.received()
        self.nft_flush()
        _, last = job.result(60)
        self.assertEqual(last.get("parameters", {}).get("state"), "done", last)
        self.assertTrue(self.verified())
        self.assertLess(before, len(self.data))

    def test_drop_for_good_fails_with_resume_point(self):
        job = self.start_and_wait_for_bytes()
        self.nft("drop")
        _, last = job.result(50)
        self.assertEqual(last.get("error"), "io.p2p.Peer.TransferFailed", last)
        self.assertFalse(os.path.exists(self.final))
        self.assertGreater(self.partial_size(), 0)


if __name__ == "__main__":
    p2ptest.run()
