#!/usr/bin/python3
"""p2p-peerd black-box: downloads between real peers — the whole flow with
progress, verification, re-indexing, resume from a partial file, falling
back to another source, and a source serving corrupt bytes."""
import hashlib
import os
import signal
import time
import unittest

import p2ptest
from dirdtest import Dird
from test_control import Varlink


class Net:
    """A directory and peers, each logged in through its control socket."""

    def __init__(self):
        self.d = Dird()
        self.peers = {}

    def peer(self, name, files=None):
        base = p2ptest.tempdir("p2p-%s-" % name)
        folder = os.path.join(base, "files")
        os.mkdir(folder)
        for fname, data in (files or {}).items():
            with open(os.path.join(folder, fname), "wb") as f:
                f.write(data)
        sock = os.path.join(base, "ctl.sock")
        port = p2ptest.free_port()
        proc = p2ptest.Process([p2ptest.binary("p2p-peerd"), "--name", name, "--directory", self.d.url,
                                "--folder", folder, "--listen", "127.0.0.1:%d" % port, "--port", str(port),
                                "--ip", "127.0.0.1", "--control-socket", sock, "--chunk-size", "65536"])
        p2ptest.wait_for(lambda: os.path.exists(sock), what="control socket of " + name)
        v = Varlink(sock)
        self.assert_ok(v.call("Register", {"username": name, "password": "pw-" + name}))
        self.assert_ok(v.call("Login", {"username": name, "password": "pw-" + name}))
        self.peers[name] = (proc, v, folder)
        return v, folder, proc

    @staticmethod
    def assert_ok(r):
        assert "error" not in r, r
        return r["parameters"]

    def close(self):
        for proc, v, _ in self.peers.values():
            v.close()
            proc.stop()
        self.d.stop()


def download(v, name, **kw):
    """Call Download with more=true; return (progress replies, last message)."""
    params = {"name": name}
    params.update(kw)
    v.send_raw(__import__("json").dumps({"method": "io.p2p.Peer.Download", "parameters": params,
                                         "more": True}).encode() + b"\0")
    progress = []
    while True:
        m = v.recv()
        if m.get("continues"):
            progress.append(m["parameters"])
            continue
        return progress, m


class Download(unittest.TestCase):
    def setUp(self):
        self.net = Net()

    def tearDown(self):
        self.net.close()

    def test_flow_progress_verify_reindex(self):
        data = os.urandom(8 * 1024 * 1024 + 5)
        v1, f1, _ = self.net.peer("peer1", {"movie.mkv": data})
        v2, f2, _ = self.net.peer("peer2")
        progress, last = download(v2, "movie.mkv")
        self.assertNotIn("error", last, last)
        p = last["parameters"]
        self.assertEqual(p["state"], "done")
        self.assertEqual(p["size"], len(data))
        self.assertEqual(p["sha256"], hashlib.sha256(data).hexdigest())
        self.assertEqual(p["path"], os.path.realpath(os.path.join(f2, "movie.mkv")))
        with open(os.path.join(f2, "movie.mkv"), "rb") as f:
            self.assertEqual(f.read(), data)
        for pr in progress:
            self.assertEqual(pr["state"], "running")
            self.assertLessEqual(pr["received"], len(data))
        self.assertFalse(os.listdir(os.path.join(f2, ".p2p-partial")))
        # peer2 shares the new copy.
        hits = p2ptest.wait_for(lambda: len(v1.call("Search", {"exact": "movie.mkv"})["parameters"]["results"]) == 2,
                                what="re-index")
        self.assertTrue(hits)
        t = v2.call("Transfers")["parameters"]["transfers"]
        self.assertEqual([(x["name"], x["state"]) for x in t], [("movie.mkv", "done")])

    def test_not_found_and_not_from_self(self):
        v1, _, _ = self.net.peer("peer1", {"mine.txt": b"x"})
        _, last = download(v1, "mine.txt")
        self.assertEqual(last.get("error"), "io.p2p.Peer.NotFound")
        _, last = download(v1, "nothing-anywhere.txt")
        self.assertEqual(last.get("error"), "io.p2p.Peer.NotFound")
        for params in ({"name": "../x"}, {"name": "a", "to": "relative/dir"}, {"name": "a", "from": "bad peer"}):
            r = v1.call("Download", params)
            self.assertEqual(r.get("error"), "org.varlink.service.InvalidParameter", params)

    def test_resume_from_partial_file(self):
        # Three ranges of 4 MiB: the first on disk intact, the second
        # damaged, the third missing. Only the first is kept.
        block = 4 * 1024 * 1024
        data = os.urandom(2 * block + 12345)
        self.net.peer("peer1", {"iso.img": data})
        v2, f2, proc2 = self.net.peer("peer2")
        os.mkdir(os.path.join(f2, ".p2p-partial"))
        with open(os.path.join(f2, ".p2p-partial", "iso.img"), "wb") as f:
            f.write(data[:block] + b"\xff" * 1000 + data[block + 1000:2 * block])
        _, last = download(v2, "iso.img")
        self.assertEqual(last["parameters"]["state"], "done", last)
        with open(os.path.join(f2, "iso.img"), "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertIn("resuming, 1 of 3 ranges verified on disk", proc2.output())

    def test_corrupt_source_never_lands(self):
        data = os.urandom(1024 * 1024)
        _, f1, _ = self.net.peer("liar", {"doc.pdf": data})
        # Same size, other bytes, after indexing: the index promises data.
        with open(os.path.join(f1, "doc.pdf"), "r+b") as f:
            f.seek(1000)
            f.write(b"\0" * 100)
        v2, f2, _ = self.net.peer("victim")
        _, last = download(v2, "doc.pdf")
        self.assertEqual(last.get("error"), "io.p2p.Peer.VerificationFailed", last)
        self.assertFalse(os.path.exists(os.path.join(f2, "doc.pdf")))
        self.assertFalse(os.path.exists(os.path.join(f2, ".p2p-partial", "doc.pdf")))

    def test_falls_back_to_another_source(self):
        data = os.urandom(2 * 1024 * 1024)
        _, _, dead = self.net.peer("gone", {"pkg.deb": data})
        self.net.peer("alive", {"pkg.deb": data})
        v3, f3, _ = self.net.peer("getter")
        # kill -9: no logout, so the directory still lists the dead peer.
        dead.send_signal(signal.SIGKILL)
        dead.wait()
        _, last = download(v3, "pkg.deb")
        self.assertEqual(last["parameters"]["state"], "done", last)
        with open(os.path.join(f3, "pkg.deb"), "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), hashlib.sha256(data).hexdigest())


if __name__ == "__main__":
    p2ptest.run()
