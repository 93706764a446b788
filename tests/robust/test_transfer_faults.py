#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Fault tests of downloads between real peers: the sender killed with
SIGKILL mid-transfer (the download goes on from another peer at the same
offset), the receiver's disk filling up (a small tmpfs: a clear error, no
file under the final name, the daemon keeps serving, and the partial file
resumes once there is room), and a slow, high-latency link (a delaying
proxy in front of the sender)."""
import hashlib
import os
import signal
import time
import unittest

from robusttest import Background, Dird, Peer, Proxy, download, need_root, p2ptest, run_quiet


def sha(data):
    return hashlib.sha256(data).hexdigest()


def file_sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# peerd's range (block) size: the unit a download keeps or fetches again.
RANGE = 4 * 1024 * 1024


class TransferFaults(unittest.TestCase):
    def setUp(self):
        self.d = Dird()
        self.peers = []
        self.proxies = []
        self.mounts = []

    def tearDown(self):
        for p in self.peers:
            p.stop()
        for x in self.proxies:
            x.close()
        self.d.stop()
        for m in self.mounts:
            run_quiet(["umount", "-l", m], check=False)

    def peer(self, name, files=None, proxy=None, **kw):
        port = p2ptest.free_port()
        if proxy is not None:
            # Other peers reach this one through the proxy: --port (what the
            # directory is told) names the proxy, --listen the real socket.
            x = Proxy(("127.0.0.1", port), **proxy)
            self.proxies.append(x)
            kw["advertise"] = x.port
        p = Peer(self.d.url, name, files, port=port, register_with=self.d, **kw)
        if proxy is not None:
            p2ptest.wait_for(lambda: "advertising gRPC port %d" % x.port in p.proc.output(),
                             what="the proxy's port advertised")
        p2ptest.wait_for(p.logged_in, what=name + " logged in")
        p.proxy = self.proxies[-1] if proxy is not None else None
        self.peers.append(p)
        return p

    def test_sender_killed_mid_transfer_resumes_from_another_peer(self):
        # Four 4 MiB ranges, fetched from both sources in parallel.
        data = os.urandom(16 * 1024 * 1024)
        rate = {"rate": 1.5e6}
        a = self.peer("src-a", {"big.iso": data}, proxy=rate)
        b = self.peer("src-b", {"big.iso": data}, proxy=rate)
        g = self.peer("getter")
        p2ptest.wait_for(lambda: len(g.search("big.iso")) == 2, what="both sources indexed")
        job = Background(g, "big.iso")
        first = p2ptest.wait_for(lambda: next((p for p in (a, b) if p.proxy.bytes_down > 6000000), None),
                                 timeout=30, what="6 MB from the first source (a range done)")
        other = b if first is a else a
        killed_at = first.proxy.bytes_down
        first.proc.stop(signal.SIGKILL)
        progress, last = job.result()
        self.assertNotIn("error", last, last)
        self.assertEqual(last["parameters"]["state"], "done")
        self.assertEqual(file_sha(os.path.join(g.folder, "big.iso")), sha(data))
        # What the first source had finished was kept: the two together
        # sent the file once plus at most the range in flight at the kill.
        self.assertLess(killed_at + other.proxy.bytes_down, len(data) + RANGE + 256 * 1024,
                        "more than the range in flight was fetched again")
        self.assertGreater(other.proxy.bytes_down, 0)
        print("# first source sent %d bytes before SIGKILL, the second %d of %d"
              % (killed_at, other.proxy.bytes_down, len(data)), flush=True)

    def test_receiver_disk_full(self):
        reason = need_root()
        if reason:
            self.skipTest(reason)
        # Three 4 MiB ranges; the first fits on the 6 MiB disk, the second does not.
        data = os.urandom(12 * 1024 * 1024)
        self.peer("source", {"dvd.img": data, "small.txt": b"small file\n"})
        base = p2ptest.tempdir("p2p-tmpfs-")
        folder = os.path.join(base, "files")
        os.mkdir(folder)
        run_quiet(["mount", "-t", "tmpfs", "-o", "size=6m,mode=0755", "tmpfs", folder])
        self.mounts.append(folder)
        g = self.peer("cramped", folder=folder)
        t0 = time.monotonic()
        _, last = download(g.v, "dvd.img")
        self.assertEqual(last.get("error"), "io.p2p.Peer.TransferFailed", last)
        msg = last.get("parameters", {}).get("message", "")
        self.assertRegex(msg, "(?i)space", "the error does not say the disk is full")
        self.assertLess(time.monotonic() - t0, 30)
        self.assertFalse(os.path.exists(os.path.join(folder, "dvd.img")), "a short file landed")
        # The daemon keeps serving: its control socket, a download into a
        # folder with room, and its own gRPC service to other peers.
        self.assertTrue(g.proc.alive())
        st = g.call("Status")
        self.assertNotIn("error", st, st)
        other = p2ptest.tempdir("p2p-room-")
        _, last2 = download(g.v, "small.txt", to=other)
        self.assertEqual(last2["parameters"]["state"], "done", last2)
        # Room again: the same download resumes from the kept partial file.
        kept = os.path.getsize(os.path.join(folder, ".p2p-partial", "dvd.img"))
        self.assertGreater(kept, 0)
        run_quiet(["mount", "-o", "remount,size=32m", folder])
        _, last3 = download(g.v, "dvd.img")
        self.assertEqual(last3["parameters"]["state"], "done", last3)
        self.assertEqual(file_sha(os.path.join(folder, "dvd.img")), sha(data))
        self.assertRegex(g.proc.output(), r"resuming, [1-9]\d* of 3 ranges verified on disk")

    def test_slow_link_with_latency(self):
        data = os.urandom(2 * 1024 * 1024 + 333)
        # 20 ms added to every segment both ways and 1 MB/s down.
        self.peer("far", {"far.bin": data}, proxy={"delay": 0.02, "rate": 1e6})
        g = self.peer("near")
        _, last = download(g.v, "far.bin")
        self.assertEqual(last["parameters"]["state"], "done", last)
        self.assertEqual(file_sha(os.path.join(g.folder, "far.bin")), sha(data))
        self.assertGreaterEqual(self.proxies[0].bytes_down, len(data), "the download bypassed the proxy")


if __name__ == "__main__":
    p2ptest.run()
