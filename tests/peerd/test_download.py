#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-peerd black-box: downloads between real peers — the whole flow with
progress, verification, re-indexing, resume from a partial file, falling
back to another source, and a source serving corrupt bytes."""
import hashlib
import json
import os
import re
import signal
import subprocess
import time
import unittest

import p2ptest
from dirdtest import Dird
from test_control import Varlink


def connect(sock):
    """A connection to a control socket, or None while it is not listening
    (a restarted peer's old socket file may still be there)."""
    try:
        return Varlink(sock)
    except OSError:
        return None


class Net:
    """A directory and peers, each logged in through its control socket."""

    def __init__(self):
        self.d = Dird()
        self.peers = {}
        self.bases = {}

    def peer(self, name, files=None, extra=(), base=None):
        """Start a peer (again, when base is the one it had) and log it in."""
        fresh = base is None
        if fresh:
            base = p2ptest.tempdir("p2p-%s-" % name)
            os.mkdir(os.path.join(base, "files"))
        folder = os.path.join(base, "files")
        for fname, data in (files or {}).items():
            with open(os.path.join(folder, fname), "wb") as f:
                f.write(data)
        sock = os.path.join(base, "ctl.sock")
        port = p2ptest.free_port()
        proc = p2ptest.Process([p2ptest.binary("p2p-peerd"), "--name", name, "--directory", self.d.url,
                                "--folder", folder, "--listen", "127.0.0.1:%d" % port, "--port", str(port),
                                "--ip", "127.0.0.1", "--control-socket", sock, "--chunk-size", "65536",
                                "--state-dir", os.path.join(base, "state")] + list(extra))
        v = p2ptest.wait_for(lambda: connect(sock), what="control socket of " + name)
        if fresh:
            self.assert_ok(v.call("Register", {"username": name, "password": "pw-" + name}))
        self.assert_ok(v.call("Login", {"username": name, "password": "pw-" + name}))
        if name in self.peers:
            self.peers[name][1].close()
            self.peers[name][0].stop()
        self.peers[name] = (proc, v, folder)
        self.bases[name] = base
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
    v.send_raw(json.dumps({"method": "io.p2p.Peer.Download", "parameters": params, "more": True}).encode() + b"\0")
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
        v2, f2, proc2 = self.net.peer("peer2")
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
        # One source: every chunk went to the whole-file hash from memory,
        # none was read back from the file.
        self.assertIn("(%d bytes, verified; %d hashed as they arrived)" % (len(data), len(data)), proc2.output())
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
        # The range kept was read back for the whole-file hash, not taken
        # as if it had arrived.
        m = re.search(r"\(%d bytes, verified; (\d+) hashed as they arrived\)" % len(data), proc2.output())
        self.assertTrue(m, proc2.output())
        self.assertLessEqual(int(m.group(1)), len(data) - block)

    def test_corrupt_source_never_lands(self):
        data = os.urandom(1024 * 1024)
        _, f1, _ = self.net.peer("liar", {"doc.pdf": data})
        # Same size, other bytes, after indexing: the index promises data.
        corrupt(os.path.join(f1, "doc.pdf"), 1000)
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


MiB = 1024 * 1024
BLOCK = 4 * MiB


def corrupt(path, offset, length=100):
    """Overwrite bytes but keep size and mtime, so the serving peer's hash
    cache still vouches for the old content: a source that lies."""
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\0" * length)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


class Swarm(unittest.TestCase):
    """Several sources at once, per-range verification, resume, limits."""

    def setUp(self):
        self.net = Net()

    def tearDown(self):
        self.net.close()

    def test_three_sources_share_the_work(self):
        data = os.urandom(6 * BLOCK + 777)
        for name in ("src1", "src2", "src3"):
            # Each source is slow on its own, so the work is spread.
            self.net.peer(name, {"big.iso": data}, ["--upload-rate", str(6 * MiB)])
        v, folder, proc = self.net.peer("getter")
        progress, last = download(v, "big.iso")
        p = self.net.assert_ok(last)
        self.assertEqual(p["state"], "done")
        self.assertGreaterEqual(p["sources_used"], 2, p)
        self.assertGreaterEqual(max(x["sources"] for x in progress), 2, progress)
        with open(os.path.join(folder, "big.iso"), "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).digest(), hashlib.sha256(data).digest())
        # Ranges from several sources land out of order and one could be
        # refetched: the whole-file hash reads each back once it is done.
        self.assertIn("(%d bytes, verified; 0 hashed as they arrived)" % len(data), proc.output())

    def test_a_corrupt_range_is_fetched_elsewhere(self):
        data = os.urandom(5 * BLOCK)
        # The honest source is slow; the liar is fast and so takes the later
        # ranges, and its last range is damaged.
        self.net.peer("honest", {"set.tar": data}, ["--upload-rate", str(4 * MiB)])
        _, lf, _ = self.net.peer("liar", {"set.tar": data})
        corrupt(os.path.join(lf, "set.tar"), 4 * BLOCK + 10)
        v, folder, proc = self.net.peer("getter")
        _, last = download(v, "set.tar")
        p = self.net.assert_ok(last)
        self.assertEqual(p["state"], "done")
        self.assertEqual(p["sources_used"], 2, p)
        self.assertRegex(proc.output(), r"range 4 \(bytes 16777216-20971519\) from liar does not match")
        with open(os.path.join(folder, "set.tar"), "rb") as f:
            self.assertEqual(f.read(), data)

    def _interrupted(self, sig):
        data = os.urandom(5 * BLOCK + 99)
        self.net.peer("seed", {"film.mkv": data}, ["--upload-rate", str(4 * MiB)])
        v, folder, proc = self.net.peer("getter")
        # Start it on a second connection; this one watches.
        starter = Varlink(os.path.join(self.net.bases["getter"], "ctl.sock"))
        starter.send_raw(b'{"method":"io.p2p.Peer.Download","parameters":{"name":"film.mkv"},"more":true}\0')

        def two_ranges():
            t = v.call("Transfers")["parameters"]["transfers"]
            return t and t[0]["received"] >= 2 * BLOCK + MiB

        p2ptest.wait_for(two_ranges, timeout=20, what="two ranges in")
        proc.send_signal(sig)
        proc.wait()
        starter.close()
        partial = os.path.join(folder, ".p2p-partial", "film.mkv")
        self.assertTrue(os.path.exists(partial))
        self.assertFalse(os.path.exists(os.path.join(folder, "film.mkv")))
        v, folder, proc = self.net.peer("getter", base=self.net.bases["getter"])
        # It continues by itself after logging in; a Download of the same
        # name watches that transfer rather than starting a second one.
        p2ptest.wait_for(lambda: "continuing the download of film.mkv" in proc.output(), what="continue")
        _, last = download(v, "film.mkv")
        self.assertEqual(self.net.assert_ok(last)["state"], "done", last)
        self.assertEqual(len(v.call("Transfers")["parameters"]["transfers"]), 1)
        kept = int(__import__("re").search(r"resuming, (\d) of 6 ranges verified", proc.output()).group(1))
        self.assertGreaterEqual(kept, 2)
        with open(os.path.join(folder, "film.mkv"), "rb") as f:
            self.assertEqual(f.read(), data)
        return proc

    def test_resume_after_kill_9(self):
        self._interrupted(signal.SIGKILL)

    def test_sigterm_keeps_verified_ranges(self):
        self._interrupted(signal.SIGTERM)

    def test_download_rate_limit(self):
        data = os.urandom(6 * MiB)
        self.net.peer("fast", {"a.bin": data})
        v, _, _ = self.net.peer("slow", extra=["--download-rate", str(2 * MiB)])
        t0 = time.monotonic()
        _, last = download(v, "a.bin")
        self.assertEqual(self.net.assert_ok(last)["state"], "done")
        # 6 MiB at 2 MiB/s: about 3 s (a 64 KiB burst aside).
        self.assertGreaterEqual(time.monotonic() - t0, 2.5)

    def test_upload_rate_limit(self):
        data = os.urandom(6 * MiB)
        self.net.peer("slow", {"b.bin": data}, ["--upload-rate", str(2 * MiB)])
        v, _, _ = self.net.peer("getter")
        t0 = time.monotonic()
        _, last = download(v, "b.bin")
        self.assertEqual(self.net.assert_ok(last)["state"], "done")
        self.assertGreaterEqual(time.monotonic() - t0, 2.5)

    def _download_started(self, getter, name):
        """Start a Download on a second control connection; return it."""
        starter = Varlink(os.path.join(self.net.bases[getter], "ctl.sock"))
        starter.send_raw(json.dumps({"method": "io.p2p.Peer.Download", "parameters": {"name": name},
                                     "more": True}).encode() + b"\0")
        v = self.net.peers[getter][1]

        def some_in():
            t = [x for x in v.call("Transfers")["parameters"]["transfers"] if x["name"] == name]
            return t and t[0]["received"] > 0

        p2ptest.wait_for(some_in, timeout=20, what="the first bytes of " + name)
        return starter

    @staticmethod
    def _finish(starter):
        while True:
            m = starter.recv()
            if not m.get("continues"):
                starter.close()
                return m

    def test_set_rates_while_transferring(self):
        """SetRates changes both limits at once: a download held to 256 KiB/s
        by its own download_rate, or by the source's upload_rate, finishes at
        full speed when the limit is lifted mid-way; a limit set at runtime
        holds the next download; Status counts the bytes both ways."""
        a, b, c = os.urandom(4 * MiB), os.urandom(4 * MiB), os.urandom(3 * MiB)
        vs, _, _ = self.net.peer("seed", {"a.bin": a, "b.bin": b, "c.bin": c}, ["--upload-rate", str(256 * 1024)])
        vg, folder, proc = self.net.peer("getter", extra=["--download-rate", str(256 * 1024)])
        st = self.net.assert_ok(vg.call("Status"))
        self.assertEqual((st["download_rate"], st["upload_rate"], st["bytes_down"]), (256 * 1024, 0, 0))

        # Both limits lifted while a.bin runs (16 s at 256 KiB/s).
        t0 = time.monotonic()
        starter = self._download_started("getter", "a.bin")
        self.assertEqual(self.net.assert_ok(vg.call("SetRates", {"download_rate": 0})),
                         {"upload_rate": 0, "download_rate": 0})
        self.assertEqual(self.net.assert_ok(vs.call("SetRates", {"upload_rate": 0})),
                         {"upload_rate": 0, "download_rate": 0})
        self.assertEqual(self.net.assert_ok(self._finish(starter))["state"], "done")
        self.assertLess(time.monotonic() - t0, 10)
        self.assertIn("download_rate: 0 bytes/s (was 262144)", proc.output())

        # Only the source's upload_rate lifted: the download, still held
        # by it, goes on at once (the Reads paced under the old rate go).
        self.net.assert_ok(vs.call("SetRates", {"upload_rate": 256 * 1024}))
        t0 = time.monotonic()
        starter = self._download_started("getter", "b.bin")
        self.net.assert_ok(vs.call("SetRates", {"upload_rate": 0}))
        self.assertEqual(self.net.assert_ok(self._finish(starter))["state"], "done")
        self.assertLess(time.monotonic() - t0, 10)

        # A limit set at runtime holds: 3 MiB at 1 MiB/s takes about 3 s.
        self.assertEqual(self.net.assert_ok(vs.call("SetRates", {"upload_rate": MiB})),
                         {"upload_rate": MiB, "download_rate": 0})
        t0 = time.monotonic()
        _, last = download(vg, "c.bin")
        self.assertEqual(self.net.assert_ok(last)["state"], "done")
        self.assertGreaterEqual(time.monotonic() - t0, 2.0)
        for name, data in (("a.bin", a), ("b.bin", b), ("c.bin", c)):
            with open(os.path.join(folder, name), "rb") as f:
                self.assertEqual(f.read(), data, name)

        # Bytes since start, as Status says (file bytes; nothing else counts).
        total = len(a) + len(b) + len(c)
        sg, ss = self.net.assert_ok(vg.call("Status")), self.net.assert_ok(vs.call("Status"))
        self.assertEqual(sg["bytes_down"], total)
        self.assertEqual(ss["bytes_up"], total)
        self.assertEqual(ss["upload_rate"], MiB)
        # SetRates without parameters reads the rates.
        self.assertEqual(self.net.assert_ok(vs.call("SetRates")), {"upload_rate": MiB, "download_rate": 0})
        # Totals add earlier runs (STATE_DIR/totals, saved at a clean stop):
        # the same as since start on a first run, kept across a restart.
        self.assertEqual((sg["bytes_down_total"], ss["bytes_up_total"]), (total, total))
        vg.close()
        self.assertEqual(proc.stop(), 0)
        vg, _, _ = self.net.peer("getter", base=self.net.bases["getter"])
        sg = self.net.assert_ok(vg.call("Status"))
        self.assertEqual((sg["bytes_down"], sg["bytes_down_total"], sg["bytes_up_total"]), (0, total, 0))
        with open(os.path.join(self.net.bases["getter"], "state", "totals")) as f:
            self.assertEqual(f.read(), "bytes_up 0\nbytes_down %d\n" % total)

    def test_lifting_a_rate_frees_waiting_chunks(self):
        """At 8 KiB/s a 64 KiB chunk waits 7-8 s for its tokens: lifting the
        limit lets what waits go within a second, not when its old wait
        ends — on the serving side (upload_rate) and the receiving side
        (download_rate)."""
        d, e = os.urandom(MiB), os.urandom(MiB)
        vs, _, _ = self.net.peer("seed", {"d.bin": d, "e.bin": e}, ["--upload-rate", str(8 * 1024)])
        vg, folder, _ = self.net.peer("getter", extra=["--download-rate", str(8 * 1024)])
        self.net.assert_ok(vg.call("SetRates", {"download_rate": 0}))
        starter = self._download_started("getter", "d.bin")
        t0 = time.monotonic()
        self.net.assert_ok(vs.call("SetRates", {"upload_rate": 0}))
        self.assertEqual(self.net.assert_ok(self._finish(starter))["state"], "done")
        self.assertLess(time.monotonic() - t0, 5)
        self.net.assert_ok(vg.call("SetRates", {"download_rate": 8 * 1024}))
        starter = self._download_started("getter", "e.bin")
        t0 = time.monotonic()
        self.net.assert_ok(vg.call("SetRates", {"download_rate": 0}))
        self.assertEqual(self.net.assert_ok(self._finish(starter))["state"], "done")
        self.assertLess(time.monotonic() - t0, 5)
        for name, data in (("d.bin", d), ("e.bin", e)):
            with open(os.path.join(folder, name), "rb") as f:
                self.assertEqual(f.read(), data, name)

    def test_set_rates_bad_values(self):
        v, _, _ = self.net.peer("p", extra=["--upload-rate", "1000"])
        for params, bad in (({"upload_rate": -1}, "upload_rate"), ({"download_rate": "fast"}, "download_rate"),
                            ({"upload_rate": 2 ** 40 + 1}, "upload_rate"), ({"download_rate": 1.5}, "download_rate"),
                            ({"upload_rate": 5, "download_rate": True}, "download_rate")):
            r = v.call("SetRates", params)
            self.assertEqual(r.get("error"), "org.varlink.service.InvalidParameter", params)
            self.assertEqual(r["parameters"], {"parameter": bad})
        # Nothing changed, not even by the call whose other value was good.
        st = self.net.assert_ok(v.call("Status"))
        self.assertEqual((st["upload_rate"], st["download_rate"]), (1000, 0))

    def test_bad_rate_options(self):
        for opt in ("--upload-rate", "--download-rate"):
            r = subprocess.run([p2ptest.binary("p2p-peerd"), "--folder", "/tmp", opt, "-5", "--check"],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 2, r)
            self.assertIn(opt[2:].replace("-", "_"), r.stderr)


if __name__ == "__main__":
    p2ptest.run()
