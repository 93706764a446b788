#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-peerd's gRPC completion-queue thread never waits on a disk (issue 13):
files are read on reader threads of their own. A shim (slowread.so, through
LD_PRELOAD) makes every pread() of slow.bin take 3 s, as a dying disk would;
while Reads and a DownloadFile of it wait, Stat, Read and DownloadFile of
another file are answered at once, and the slow calls still end with the
right bytes. Before the readers, every call of the peer waited the 3 s."""
import concurrent.futures
import os
import time
import unittest

import grpc

import p2ptest
from dirdtest import Dird
from test_serve import Peer, generate_stubs

SLOW_MS = 3000


class SlowDisk(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.seed_pb2, cls.seed_grpc, cls.pb2, cls.pgrpc = generate_stubs()
        cls.d = Dird()
        cls.d.register("srv", "pw")
        cls.tok = cls.d.user("cl", files=())
        cls.folder = p2ptest.tempdir()
        # Text, since DownloadFile's file_content is a protobuf string.
        cls.slow = os.urandom(300 << 10).hex().encode()  # 600 KiB: three chunks of 256 KiB, three slow preads
        cls.fast = os.urandom(150 << 10).hex().encode()
        for name, data in (("slow.bin", cls.slow), ("fast.bin", cls.fast)):
            with open(os.path.join(cls.folder, name), "wb") as f:
                f.write(data)
        cls.flag = os.path.join(p2ptest.tempdir(), "slow-now")
        env = {"LD_PRELOAD": os.path.join(p2ptest.BUILDDIR, "tests", "peerd", "slowread.so"),
               "SLOWREAD_FLAG": cls.flag, "SLOWREAD_MS": str(SLOW_MS)}
        # An ASan build wants its runtime first in the list; the shim has none.
        env["ASAN_OPTIONS"] = ":".join(x for x in (os.environ.get("ASAN_OPTIONS", ""), "verify_asan_link_order=0") if x)
        cls.peer = Peer(cls.d, "srv", "pw", cls.folder, env=env)
        p2ptest.wait_for(lambda: all(cls.d.req("GET", "/search", cls.tok, params={"file": n}).status_code == 200
                                     for n in ("slow.bin", "fast.bin")), timeout=30, what="indexed")
        cls.ch = grpc.insecure_channel(cls.peer.target)
        cls.stub = cls.pgrpc.PeerStub(cls.ch)
        cls.seed = cls.seed_grpc.FileServiceStub(cls.ch)
        cls.pool = concurrent.futures.ThreadPoolExecutor(4)

    @classmethod
    def tearDownClass(cls):
        cls.pool.shutdown(wait=True)
        cls.ch.close()
        cls.peer.proc.stop()
        cls.d.stop()

    def tearDown(self):
        if os.path.exists(self.flag):
            os.unlink(self.flag)

    def md(self, name):
        r = self.d.req("POST", "/tickets", self.tok, json={"peer": "srv", "file": name})
        self.assertEqual(r.status_code, 201, r.text)
        return [("authorization", "Bearer " + r.json()["ticket"])]

    def read(self, name):
        return b"".join(c.data for c in self.stub.Read(self.pb2.ReadRequest(name=name), metadata=self.md(name),
                                                         timeout=60))

    def test_a_slow_file_does_not_stop_the_others(self):
        # Tickets first (cached by the peer after one check each).
        self.assertEqual(self.read("fast.bin"), self.fast)
        open(self.flag, "w").close()
        t0 = time.monotonic()
        slow = [self.pool.submit(self.read, "slow.bin") for _ in range(2)]
        slow.append(self.pool.submit(lambda: self.seed.DownloadFile(self.seed_pb2.FileRequest(file_name="slow.bin"),
                                                                    metadata=self.md("slow.bin"), timeout=60)))
        time.sleep(0.5)  # the slow calls are waiting on their first pread now
        for _ in range(3):
            s0 = time.monotonic()
            st = self.stub.Stat(self.pb2.StatRequest(name="fast.bin"), metadata=self.md("fast.bin"), timeout=10)
            self.assertEqual(st.size, len(self.fast))
            self.assertEqual(self.read("fast.bin"), self.fast)
            r = self.seed.DownloadFile(self.seed_pb2.FileRequest(file_name="fast.bin"), metadata=self.md("fast.bin"),
                                       timeout=10)
            self.assertEqual(r.file_content, self.fast.decode())
            took = time.monotonic() - s0
            print("# Stat + Read + DownloadFile of fast.bin while slow.bin waits: %.3f s" % took)
            self.assertLess(took, SLOW_MS / 1000 / 2, "a call waited on another file's disk")
        self.assertFalse(any(f.done() for f in slow), "the slow calls did wait on the disk")
        self.assertEqual(slow[0].result(), self.slow)
        self.assertEqual(slow[1].result(), self.slow)
        self.assertEqual(slow[2].result().file_content, self.slow.decode())
        self.assertGreater(time.monotonic() - t0, 3 * SLOW_MS / 1000)  # three chunks, three slow preads
        os.unlink(self.flag)

    def test_cancelling_while_the_disk_is_slow(self):
        open(self.flag, "w").close()
        call = self.stub.Read(self.pb2.ReadRequest(name="slow.bin"), metadata=self.md("slow.bin"), timeout=60)
        time.sleep(0.5)
        call.cancel()
        os.unlink(self.flag)
        # The peer lets go of the call once its read ends, and serves on.
        time.sleep(SLOW_MS / 1000)
        self.assertEqual(self.read("slow.bin"), self.slow)
        self.assertTrue(self.peer.proc.alive())


if __name__ == "__main__":
    p2ptest.run()
