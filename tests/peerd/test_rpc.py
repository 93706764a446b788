#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-peerd's gRPC server under pressure (issue 13): ticket checks that
wait on a stalled directory do not stop the completion queue, their number
is bounded, calls with the same unchecked ticket share one check; and the
bugs black-box clients found. A real p2p-dird and p2p-peerd on 127.0.0.1,
clients generated at test time (test_serve.generate_stubs)."""
import concurrent.futures
import hashlib
import os
import signal
import time
import unittest

import grpc

import p2ptest
from dirdtest import Dird
from test_serve import Peer, generate_stubs


class AsyncTickets(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.seed_pb2, cls.seed_grpc, cls.pb2, cls.pgrpc = generate_stubs()
        cls.d = Dird()
        cls.d.register("srv", "pw")
        cls.tok = cls.d.user("cl", files=())
        cls.folder = p2ptest.tempdir()
        cls.data = os.urandom(48 << 20)
        with open(os.path.join(cls.folder, "big.bin"), "wb") as f:
            f.write(cls.data)
        with open(os.path.join(cls.folder, "small.txt"), "w") as f:
            f.write("small")
        # Calls from one address past max_calls_per_client would wait in the client.
        cls.peer = Peer(cls.d, "srv", "pw", cls.folder, "--max-calls-per-client", "200")
        p2ptest.wait_for(lambda: cls.d.req("GET", "/search", cls.tok, params={"file": "big.bin"}).status_code == 200,
                         timeout=30, what="indexed")
        cls.ch = grpc.insecure_channel(cls.peer.target, options=[("grpc.max_receive_message_length", 64 << 20)])
        cls.stub = cls.pgrpc.PeerStub(cls.ch)

    @classmethod
    def tearDownClass(cls):
        cls.ch.close()
        cls.d.proc.send_signal(signal.SIGCONT)
        cls.peer.proc.stop()
        cls.d.stop()

    def md(self, name):
        r = self.d.req("POST", "/tickets", self.tok, json={"peer": "srv", "file": name})
        self.assertEqual(r.status_code, 201, r.text)
        return [("authorization", "Bearer " + r.json()["ticket"])]

    def read_all(self, md):
        h = hashlib.sha256()
        for c in self.stub.Read(self.pb2.ReadRequest(name="big.bin"), metadata=md, timeout=60):
            h.update(c.data)
        return h.hexdigest()

    def test_a_stalled_directory_does_not_stop_uploads(self):
        md = self.md("big.bin")
        self.assertEqual(self.stub.Stat(self.pb2.StatRequest(name="big.bin"), metadata=md, timeout=10).size,
                         len(self.data))  # the ticket is now cached
        t0 = time.monotonic()
        self.read_all(md)
        alone = time.monotonic() - t0
        self.d.proc.send_signal(signal.SIGSTOP)
        try:
            # Calls with unknown tickets wait on the stalled directory...
            bad = [self.stub.Stat.future(self.pb2.StatRequest(name="big.bin"),
                                         metadata=[("authorization", "Bearer %064x" % i)], timeout=30)
                   for i in range(1, 9)]
            time.sleep(0.3)
            # ...while a Read whose ticket is known goes on at full speed.
            t0 = time.monotonic()
            self.assertEqual(self.read_all(md), hashlib.sha256(self.data).hexdigest())
            during = time.monotonic() - t0
            self.assertLess(during, max(2.0, 4 * alone), "the Read waited on other calls' ticket checks")
            self.assertFalse(any(f.done() for f in bad), "the checks should still wait on the directory")
        finally:
            self.d.proc.send_signal(signal.SIGCONT)
        for f in bad:
            with self.assertRaises(grpc.RpcError) as cm:
                f.result()
            self.assertIn(cm.exception.code(), (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE))

    def test_checks_waiting_on_the_directory_are_bounded(self):
        self.d.proc.send_signal(signal.SIGSTOP)
        try:
            futs = [self.stub.Stat.future(self.pb2.StatRequest(name="small.txt"),
                                          metadata=[("authorization", "Bearer %064x" % (1000 + i))], timeout=30)
                    for i in range(80)]
            # Past the bound (64 checks), calls are refused at once.
            p2ptest.wait_for(lambda: sum(f.done() for f in futs) >= 16, timeout=5, what="calls past the bound")
            refused = [f for f in futs if f.done()]
            for f in refused:
                self.assertEqual(f.exception().code(), grpc.StatusCode.UNAVAILABLE)
                self.assertIn("too many ticket checks", f.exception().details())
        finally:
            self.d.proc.send_signal(signal.SIGCONT)
        for f in futs:
            self.assertIsNotNone(f.exception())

    def test_calls_with_one_ticket_share_its_check(self):
        md = self.md("small.txt")
        self.d.proc.send_signal(signal.SIGSTOP)
        try:
            futs = [self.stub.Stat.future(self.pb2.StatRequest(name="small.txt"), metadata=md, timeout=30)
                    for _ in range(100)]
            time.sleep(0.5)
            self.assertFalse(any(f.done() for f in futs), "one check for all: none refused")
        finally:
            self.d.proc.send_signal(signal.SIGCONT)
        for f in futs:
            self.assertEqual(f.result().size, 5)


class Bugs(unittest.TestCase):
    """Each of these failed before its fix (issue 13 item 5)."""
    @classmethod
    def setUpClass(cls):
        cls.seed_pb2, cls.seed_grpc, cls.pb2, cls.pgrpc = generate_stubs()
        cls.d = Dird()
        cls.d.register("bugs", "pw")
        cls.tok = cls.d.user("bugcl", files=())
        cls.folder = p2ptest.tempdir()
        cls.exact = b"e" * 4194304       # the default max_message
        cls.fits = b"f" * (4194304 - 5)    # 5 bytes of framing: exactly 4 MiB encoded
        for name, data in (("exact.bin", cls.exact), ("fits.bin", cls.fits), ("big.bin", b"big"),
                           ("doomed.txt", b"doomed")):
            with open(os.path.join(cls.folder, name), "wb") as f:
                f.write(data)
        cls.peer = Peer(cls.d, "bugs", "pw", cls.folder)
        p2ptest.wait_for(lambda: cls.d.req("GET", "/search", cls.tok, params={"file": "doomed.txt"}).status_code == 200,
                         what="indexed")
        cls.ch = grpc.insecure_channel(cls.peer.target)  # gRPC's default 4 MiB receive limit

    @classmethod
    def tearDownClass(cls):
        cls.ch.close()
        cls.peer.proc.stop()
        cls.d.stop()

    def md(self, name):
        r = self.d.req("POST", "/tickets", self.tok, json={"peer": "bugs", "file": name})
        self.assertEqual(r.status_code, 201, r.text)
        return [("authorization", "Bearer " + r.json()["ticket"])]

    def test_a_name_with_a_nul_byte_is_refused(self):
        md = self.md("big.bin")
        seed = self.seed_grpc.FileServiceStub(self.ch)
        peer = self.pgrpc.PeerStub(self.ch)
        for call in (lambda: seed.DownloadFile(self.seed_pb2.FileRequest(file_name="big.bin\0x"), metadata=md, timeout=10),
                     lambda: peer.Stat(self.pb2.StatRequest(name="big.bin\0x"), metadata=md, timeout=10),
                     lambda: list(peer.Read(self.pb2.ReadRequest(name="big.bin\0"), metadata=md, timeout=10))):
            with self.assertRaises(grpc.RpcError) as cm:
                call()
            self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, cm.exception.details())
        self.assertEqual(seed.DownloadFile(self.seed_pb2.FileRequest(file_name="big.bin"), metadata=md,
                                           timeout=10).file_content, "big")

    def test_stat_agrees_with_read_right_after_a_delete(self):
        md = self.md("doomed.txt")
        peer = self.pgrpc.PeerStub(self.ch)
        self.assertEqual(peer.Stat(self.pb2.StatRequest(name="doomed.txt"), metadata=md, timeout=10).size, 6)
        os.unlink(os.path.join(self.folder, "doomed.txt"))
        for call in (lambda: peer.Stat(self.pb2.StatRequest(name="doomed.txt"), metadata=md, timeout=10),
                     lambda: list(peer.Read(self.pb2.ReadRequest(name="doomed.txt"), metadata=md, timeout=10))):
            with self.assertRaises(grpc.RpcError) as cm:
                call()
            self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND, cm.exception.details())

    def test_download_file_limit_counts_the_encoded_reply(self):
        seed = self.seed_grpc.FileServiceStub(self.ch)
        got = seed.DownloadFile.with_call(self.seed_pb2.FileRequest(file_name="fits.bin"), metadata=self.md("fits.bin"),
                                          timeout=20)[0]
        self.assertEqual(len(got.file_content), len(self.fits))
        with self.assertRaises(grpc.RpcError) as cm:
            seed.DownloadFile(self.seed_pb2.FileRequest(file_name="exact.bin"), metadata=self.md("exact.bin"), timeout=20)
        # Our answer, pointing to Read; not the client's "received message larger than max".
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("p2p.v1.Peer/Read", cm.exception.details())


if __name__ == "__main__":
    p2ptest.run()
