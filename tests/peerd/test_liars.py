#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-peerd black-box (issue 14): downloads from sources that lie
(tests/peerd/liar.py, a grpcio p2p.v1.Peer server indexed at the real
directory) and with local interference (writes into the partial file, two
downloads of one name into one folder, an existing file). What must hold:
no wrong byte ever under the final name, no user file lost, the honest copy
fetched whenever one is online, a stalling source replaced within the
progress deadline, and errors that name the cause."""
import hashlib
import json
import os
import threading
import time
import unittest

import p2ptest
from h2liar import H2Liar
from liar import Liar
from test_control import Varlink
from test_download import Net, download, MiB
from test_serve import generate_stubs

STUBS = None
INTERVAL = 2  # --download-progress-interval of the downloading peers, seconds


def sha(data):
    return hashlib.sha256(data).hexdigest()


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        global STUBS
        if STUBS is None:
            STUBS = generate_stubs()

    def setUp(self):
        self.net = Net()
        self.liars = []

    def tearDown(self):
        for x in self.liars:
            x.stop()
        self.net.close()

    def liar(self, user, name, data, lie, **kw):
        x = Liar(STUBS, self.net.d, user, name, data, lie, **kw)
        self.liars.append(x)
        return x

    def getter(self, name="getter", extra=()):
        return self.net.peer(name, extra=["--download-progress-interval", str(INTERVAL)] + list(extra))

    def assert_never_wrong(self, folder, name, data):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                self.assertEqual(sha(f.read()), sha(data), "wrong bytes under the final name")

    def assert_landed(self, folder, name, data):
        with open(os.path.join(folder, name), "rb") as f:
            self.assertEqual(sha(f.read()), sha(data))


class LyingSources(Base):
    def test_bogus_entries_do_not_block_the_honest_copy(self):
        # Two users index a popular name with a made-up size and SHA-256:
        # theirs is the version with most sources, so it is tried first.
        data = os.urandom(3 * MiB)
        self.liar("aaa-bogus1", "popular.iso", data, "bogus")
        self.liar("aaa-bogus2", "popular.iso", data, "bogus")
        # And one more made-up version at an address where nothing listens,
        # tied with the honest copy and before it in the directory's order.
        d = self.net.d
        d.register("aaa-ghost", "pw-ghost-0123456789")
        tok = d.login("aaa-ghost", "pw-ghost-0123456789")
        r = d.req("POST", "/index", tok, json={"ip": "127.0.0.1", "port": p2ptest.free_port(), "folder": "/g",
                                               "files": [{"name": "popular.iso", "size": 12345, "sha256": "ab" * 32}]})
        self.assertEqual(r.status_code, 200, r.text)
        self.net.peer("honest", {"popular.iso": data})
        v, folder, proc = self.getter()
        _, last = download(v, "popular.iso")
        p = self.net.assert_ok(last)
        self.assertEqual(p["state"], "done")
        self.assertEqual(p["sha256"], sha(data))
        self.assert_landed(folder, "popular.iso", data)
        out = proc.output()
        self.assertIn("aaa-bogus1 sent bytes whose whole-file SHA-256", out)
        self.assertIn("trying the next version (12345 bytes", out)
        self.assertIn("aaa-ghost failed", out)
        self.assertIn("trying the next version (%d bytes, SHA-256 %s)" % (len(data), sha(data)), out)

    def test_own_block_list_tied_with_the_honest_source(self):
        # One liar and one honest source, tied 1:1, the liar first in the
        # directory's order; the liar's block list matches its own bytes.
        data = os.urandom(2 * 4 * MiB + 10)
        self.liar("aaa-liar", "l.bin", data, "own-list")
        self.net.peer("honest", {"l.bin": data})
        v, folder, proc = self.getter()
        _, last = download(v, "l.bin")
        p = self.net.assert_ok(last)
        self.assertEqual(p["state"], "done", last)
        self.assert_landed(folder, "l.bin", data)
        out = proc.output()
        self.assertIn("honest sends other block hashes than 1 other source(s); it is used only if they fail", out)
        self.assertIn("aaa-liar sent bytes whose whole-file SHA-256", out)

    def test_only_a_liar_fails_naming_it(self):
        data = os.urandom(5 * MiB)
        self.liar("aaa-liar", "w.bin", data, "wrong-bytes")
        v, folder, _ = self.getter()
        _, last = download(v, "w.bin")
        self.assertEqual(last.get("error"), "io.p2p.Peer.VerificationFailed", last)
        msg = last["parameters"]["message"]
        self.assertIn("aaa-liar", msg)
        self.assertIn("retrying will not help", msg)
        self.assertIs(last["parameters"]["retry"], False)
        self.assertFalse(os.path.exists(os.path.join(folder, "w.bin")))
        self.assertFalse(os.path.exists(os.path.join(folder, ".p2p-partial", "w.bin")))

    def test_stalling_source_loses_its_range(self):
        # Three ranges; the honest source is slow (about 1 s a range), so
        # the staller surely claims one; within the deadline that range
        # goes to the honest source.
        for lie in ("trickle", "hang"):
            name = lie + ".bin"
            data = os.urandom(3 * 4 * MiB)
            self.liar("aaa-" + lie, name, data, lie)
            self.net.peer("honest-" + lie, {name: data}, ["--upload-rate", str(4 * MiB)])
            v, folder, proc = self.getter("getter-" + lie)
            t0 = time.monotonic()
            _, last = download(v, name)
            took = time.monotonic() - t0
            self.assertEqual(self.net.assert_ok(last)["state"], "done", last)
            self.assert_landed(folder, name, data)
            self.assertIn("aaa-%s stalled" % lie, proc.output())
            self.assertLess(took, 3 + INTERVAL + 8, "the stalled range was not handed over within the deadline")

    def test_stalling_source_alone_fails_in_bounded_time(self):
        for lie in ("trickle", "hang"):
            name = "alone-" + lie + ".bin"
            data = os.urandom(MiB)
            self.liar("aaa-alone-" + lie, name, data, lie)
            v, folder, _ = self.getter("getter-alone-" + lie)
            t0 = time.monotonic()
            _, last = download(v, name)
            took = time.monotonic() - t0
            self.assertEqual(last.get("error"), "io.p2p.Peer.TransferFailed", last)
            msg = last["parameters"]["message"]
            self.assertIn("aaa-alone-%s stalled" % lie, msg)
            self.assertIn("kept to resume", msg)
            self.assertIs(last["parameters"]["retry"], True)
            self.assertLess(took, INTERVAL + 8)
            self.assertFalse(os.path.exists(os.path.join(folder, name)))

    def test_protocol_violations_end_a_source_at_once(self):
        # No waiting for a deadline: each ends the source when it happens.
        cases = (("past-range", "past the requested range"), ("wrong-offset", "chunk at offset"),
                 ("huge", "larger than the limit"))
        for lie, words in cases:
            name = lie + ".bin"
            data = os.urandom(MiB)
            self.liar("aaa-" + lie, name, data, lie)
            v, folder, _ = self.getter("getter-" + lie, extra=["--download-progress-interval", "60"])
            t0 = time.monotonic()
            _, last = download(v, name)
            self.assertLess(time.monotonic() - t0, 10)
            self.assertEqual(last.get("error"), "io.p2p.Peer.VerificationFailed", last)
            self.assertIn(words, last["parameters"]["message"])
            self.assertIn("aaa-" + lie, last["parameters"]["message"])
            self.assertFalse(os.path.exists(os.path.join(folder, name)))

    def test_announced_huge_message_ends_the_source_at_once(self):
        # A hand-made HTTP/2 source announces a 3 GiB gRPC message; gRPC
        # checks the size only once a message is whole, so peerd's channel
        # quota must end it, long before the progress deadline (60 s here).
        _, _, pb2, _ = STUBS
        data = os.urandom(MiB)
        stat = pb2.StatResponse(name="h.bin", size=len(data), sha256=sha(data), mtime=1).SerializeToString()
        h = H2Liar(stat)
        self.liars.append(h)
        self.net.d.register("aaa-h2", "pw-h2-0123456789")
        tok = self.net.d.login("aaa-h2", "pw-h2-0123456789")
        r = self.net.d.req("POST", "/index", tok, json={"ip": "127.0.0.1", "port": h.port, "folder": "/h2", "files": [
            {"name": "h.bin", "size": len(data), "sha256": sha(data)}]})
        self.assertEqual(r.status_code, 200, r.text)
        v, folder, proc = self.getter(extra=["--download-progress-interval", "60"])
        t0 = time.monotonic()
        _, last = download(v, "h.bin")
        took = time.monotonic() - t0
        self.assertEqual(last.get("error"), "io.p2p.Peer.VerificationFailed", last)
        self.assertIn("aaa-h2 sent or announced a message larger than the limit", last["parameters"]["message"])
        self.assertLess(took, 10)
        # What it could push into peerd's memory is bounded by the quota
        # (16 MiB for a Read channel), not by the announced 3 GiB.
        self.assertLess(h.sent, 64 * MiB, "the source pushed %d bytes" % h.sent)
        print("# the announcing source could send %d bytes in %.1f s" % (h.sent, took), flush=True)
        self.assertFalse(os.path.exists(os.path.join(folder, "h.bin")))

    def test_past_range_source_replaced_by_honest_one(self):
        # Three ranges and a slow honest source: the liar surely claims one.
        data = os.urandom(3 * 4 * MiB)
        self.liar("aaa-past", "p.bin", data, "past-range")
        self.net.peer("honest", {"p.bin": data}, ["--upload-rate", str(4 * MiB)])
        v, folder, proc = self.getter()
        _, last = download(v, "p.bin")
        self.assertEqual(self.net.assert_ok(last)["state"], "done", last)
        self.assert_landed(folder, "p.bin", data)
        self.assertIn("aaa-past sent data past the requested range", proc.output())


def start_download(sock, params):
    """A Download call (more=true) on its own connection, in a thread;
    returns (thread, result holder)."""
    out = {}

    def run():
        v = Varlink(sock)
        v.s.settimeout(120)
        v.send_raw(json.dumps({"method": "io.p2p.Peer.Download", "parameters": params, "more": True}).encode()
                   + b"\0")
        while True:
            m = v.recv()
            if not m.get("continues"):
                out["last"] = m
                v.close()
                return
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


class LocalInterference(Base):
    def test_existing_file_is_kept(self):
        data = os.urandom(MiB)
        self.net.peer("src", {"mine.txt": data})
        v, folder, _ = self.getter()
        mine = b"the user's own mine.txt\n"
        with open(os.path.join(folder, "mine.txt"), "wb") as f:
            f.write(mine)
        _, last = download(v, "mine.txt")
        self.assertEqual(last.get("error"), "io.p2p.Peer.FileExists", last)
        self.assertIn("kept", last["parameters"]["message"])
        with open(os.path.join(folder, "mine.txt"), "rb") as f:
            self.assertEqual(f.read(), mine)
        # The same content already there: done, nothing replaced.
        other = p2ptest.tempdir("p2p-same-")
        with open(os.path.join(other, "mine.txt"), "wb") as f:
            f.write(data)
        ino = os.stat(os.path.join(other, "mine.txt")).st_ino
        _, last = download(v, "mine.txt", to=other)
        self.assertEqual(self.net.assert_ok(last)["state"], "done", last)
        self.assertEqual(os.stat(os.path.join(other, "mine.txt")).st_ino, ino)
        # force replaces it.
        _, last = download(v, "mine.txt", force=True)
        self.assertEqual(self.net.assert_ok(last)["state"], "done", last)
        self.assert_landed(folder, "mine.txt", data)
        r = v.call("Download", {"name": "mine.txt", "force": "yes"})
        self.assertEqual(r.get("error"), "org.varlink.service.InvalidParameter")

    def test_force_kept_by_pause_and_resume(self):
        data = os.urandom(6 * MiB + 3)
        self.net.peer("src", {"mine.iso": data}, ["--upload-rate", str(MiB)])
        v, folder, _ = self.getter()
        with open(os.path.join(folder, "mine.iso"), "wb") as f:
            f.write(b"the user's own mine.iso\n")
        starter = Varlink(os.path.join(self.net.bases["getter"], "ctl.sock"))
        self.addCleanup(starter.close)
        starter.send_raw(b'{"method":"io.p2p.Peer.Download","parameters":{"name":"mine.iso","force":true},'
                         b'"more":true}\0')

        def transfer():
            t = v.call("Transfers")["parameters"]["transfers"]
            return t[0] if t else None
        p2ptest.wait_for(lambda: transfer() and transfer()["received"] >= MiB, timeout=30, what="1 MiB in")
        tid = transfer()["id"]
        self.assertNotIn("error", v.call("Pause", {"id": tid}))
        saved = os.path.join(self.net.bases["getter"], "state", "transfers")

        def listed():
            with open(saved) as f:
                return json.load(f)
        p2ptest.wait_for(lambda: listed() == [{"name": "mine.iso", "to": os.path.realpath(folder), "paused": True,
                                               "force": True}], what="force kept in STATE_DIR/transfers")
        self.assertNotIn("error", v.call("Resume", {"id": tid}))
        _, last = download(v, "mine.iso")
        self.assertEqual(self.net.assert_ok(last)["state"], "done", last)
        self.assert_landed(folder, "mine.iso", data)

    def test_write_into_the_partial_file_is_caught(self):
        block = 4 * MiB
        data = os.urandom(2 * block)
        self.net.peer("slow", {"movie.mkv": data}, ["--upload-rate", str(2 * MiB)])
        v, folder, proc = self.getter()
        sock = os.path.join(self.net.bases["getter"], "ctl.sock")
        t, out = start_download(sock, {"name": "movie.mkv"})
        partial = os.path.join(folder, ".p2p-partial", "movie.mkv")

        def half_in():
            tr = v.call("Transfers")["parameters"]["transfers"]
            return tr and tr[0]["received"] >= MiB
        p2ptest.wait_for(half_in, timeout=20, what="a MiB in")
        wrote = {}

        def scribble():
            # Another process (here: thread of the test) writes 4 KiB into
            # the partial file while the single-source download runs.
            with open(partial, "r+b") as f:
                f.seek(100)
                f.write(b"\xee" * 4096)
            wrote["at"] = time.monotonic()
        w = threading.Thread(target=scribble, daemon=True)
        w.start()
        t.join(60)
        w.join(60)
        self.assertIn("at", wrote, "the write never happened")
        last = out["last"]
        self.assertEqual(last.get("error"), "io.p2p.Peer.TransferFailed", last)
        self.assertRegex(last["parameters"]["message"], "another process|changed on disk")
        self.assertFalse(os.path.exists(os.path.join(folder, "movie.mkv")), "a file landed after the write")
        self.assertIn("another process opened the partial file", proc.output())
        # The next try checks the ranges again and fetches what was hit.
        _, last = download(v, "movie.mkv")
        self.assertEqual(self.net.assert_ok(last)["state"], "done", last)
        self.assert_landed(folder, "movie.mkv", data)
        self.assertIn("resuming, 1 of 2 ranges verified on disk", proc.output())

    def test_partial_file_held_open_by_another_process(self):
        # Someone has the partial file open before the download starts (no
        # lease can be had): the download may run, but the file is not
        # put into place while that process could still write to it.
        data = os.urandom(MiB)
        self.net.peer("src", {"held.bin": data})
        v, folder, proc = self.getter()
        os.mkdir(os.path.join(folder, ".p2p-partial"))
        partial = os.path.join(folder, ".p2p-partial", "held.bin")
        holder = open(partial, "wb")
        try:
            _, last = download(v, "held.bin")
            self.assertEqual(last.get("error"), "io.p2p.Peer.TransferFailed", last)
            self.assertIn("another process has", last["parameters"]["message"])
            self.assertIs(last["parameters"]["retry"], True)
            self.assertFalse(os.path.exists(os.path.join(folder, "held.bin")))
            self.assertIn("no write lease on the partial file", proc.output())
        finally:
            holder.close()
        _, last = download(v, "held.bin")
        self.assertEqual(self.net.assert_ok(last)["state"], "done", last)
        self.assert_landed(folder, "held.bin", data)

    def test_two_peers_one_folder_two_versions(self):
        v1, v2 = os.urandom(6 * MiB), os.urandom(6 * MiB)
        self.net.peer("src1", {"doc.bin": v1}, ["--upload-rate", str(3 * MiB)])
        self.net.peer("src2", {"doc.bin": v2}, ["--upload-rate", str(3 * MiB)])
        _, folder, _ = self.getter("g1")
        self.net.peer("g2", extra=["--download-progress-interval", str(INTERVAL), "--folder", folder])
        t1, o1 = start_download(os.path.join(self.net.bases["g1"], "ctl.sock"), {"name": "doc.bin", "from": "src1"})
        t2, o2 = start_download(os.path.join(self.net.bases["g2"], "ctl.sock"), {"name": "doc.bin", "from": "src2"})
        t1.join(90)
        t2.join(90)
        results = [o1["last"], o2["last"]]
        done = [r["parameters"] for r in results if "error" not in r]
        failed = [r for r in results if "error" in r]
        self.assertLessEqual(len(done), 1, results)
        for r in failed:
            self.assertIn(r["error"], ("io.p2p.Peer.TransferFailed", "io.p2p.Peer.FileExists"), r)
            self.assertRegex(r["parameters"]["message"], "another download of doc.bin|exists with other content|"
                             "appeared during the download", r)
        path = os.path.join(folder, "doc.bin")
        if done:
            with open(path, "rb") as f:
                self.assertEqual(sha(f.read()), done[0]["sha256"], "verified one version, another one landed")
        else:
            self.assertFalse(os.path.exists(path))


if __name__ == "__main__":
    p2ptest.run()
