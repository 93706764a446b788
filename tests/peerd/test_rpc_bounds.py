#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-peerd's gRPC bounds (issue 13 item 4): calls at once in total and per
client address, reply bytes in flight, the send timeout, and descriptors.
Peak memory (VmHWM of the peer) stays under 128 MB with 2,000 Read streams
that are never read and with 300 concurrent DownloadFile calls of a 4 MiB
file; 2,000 TCP connections at RLIMIT_NOFILE 1024 do not stop gRPC."""
import os
import resource
import socket
import time
import unittest

import grpc

import p2ptest
from dirdtest import Dird
from test_serve import Peer, generate_stubs

PEAK_LIMIT = 128 * 1000 * 1000


def sanitized():
    """An --enable-sanitizers build: ASan's shadow memory and redzones
    count in the RSS, so the bound doubles there (as in tests/robust)."""
    with open(p2ptest.binary("p2p-peerd"), "rb") as f:
        return b"__asan_init" in f.read()


def vm(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


class Bounds(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 16384), hard))
        cls.seed_pb2, cls.seed_grpc, cls.pb2, cls.pgrpc = generate_stubs()
        cls.limit = PEAK_LIMIT
        if sanitized():  # a small quarantine (freed memory ASan holds back), twice the bound
            opts = os.environ.get("ASAN_OPTIONS", "")
            os.environ["ASAN_OPTIONS"] = (opts + ":" if opts else "") + \
                "quarantine_size_mb=16:thread_local_quarantine_size_kb=256"
            cls.limit = 2 * PEAK_LIMIT
        cls.d = Dird()
        cls.tok = cls.d.user("bcl", files=())
        cls.folder = p2ptest.tempdir()
        with open(os.path.join(cls.folder, "big.bin"), "wb") as f:
            f.write(os.urandom(8 << 20))
        cls.text = "0123456789abcdef" * (4 << 16)  # 4 MiB of text: the seed's string field
        with open(os.path.join(cls.folder, "four.txt"), "w") as f:
            f.write(cls.text)

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def start(self, user, *extra):
        self.d.register(user, "pw")
        peer = Peer(self.d, user, "pw", self.folder, "--max-message", str(5 << 20), *extra)
        p2ptest.wait_for(lambda: self.d.req("GET", "/search", self.tok, params={"file": "four.txt"}).status_code == 200
                         and any(h["peer"] == user for h in
                                 self.d.req("GET", "/search", self.tok, params={"file": "four.txt"}).json()["peers_with_file"]),
                         timeout=20, what="indexed")
        return peer

    def md(self, user, name):
        r = self.d.req("POST", "/tickets", self.tok, json={"peer": user, "file": name})
        self.assertEqual(r.status_code, 201, r.text)
        return [("authorization", "Bearer " + r.json()["ticket"])]

    def unread_reads(self, peer, user, n, channels, bdp=True):
        opts = [("grpc.use_local_subchannel_pool", 1)]
        if not bdp:  # windows stay at 64 KiB: no unread stream can end
            opts.append(("grpc.http2.bdp_probe", 0))
        chans = [grpc.insecure_channel(peer.target, options=opts) for _ in range(channels)]
        stubs = [self.pgrpc.PeerStub(c) for c in chans]
        t0 = time.monotonic()
        calls = []
        for i in range(n):
            if i % 250 == 0:  # Python is slow to start many calls; tickets live 60 s
                md = self.md(user, "big.bin")
            calls.append(stubs[i % channels].Read(self.pb2.ReadRequest(name="big.bin"), metadata=md, timeout=180))
        print("# %d Read calls started in %.1fs" % (n, time.monotonic() - t0))
        time.sleep(3)
        return chans, calls

    def test_unread_read_streams_default_caps(self):
        peer = self.start("b1")
        # With BDP probing the client's windows grow, so on a slow machine
        # a few admitted streams end (all 8 MiB buffered by the client) and
        # free their slot before the last calls arrive; without it exactly
        # 64 stay admitted.
        chans, calls = self.unread_reads(peer, "b1", 2000, 40, bdp=False)
        # Past max_calls_per_client (64), calls are refused.
        p2ptest.wait_for(lambda: sum(c.done() for c in calls) >= 2000 - 64, timeout=30, what="refusals")
        time.sleep(1)
        peak = vm(peer.proc.pid, "VmHWM")
        refused = [c for c in calls if c.done()]
        for c in refused:
            self.assertEqual(c.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, c.details())
        self.assertEqual(len(refused), 2000 - 64)
        for c in calls:
            c.cancel()
        for ch in chans:
            ch.close()
        print("# 2000 unread Read streams, default caps: peak RSS %.1f MB, %d refused" % (peak / 1e6, len(refused)))
        self.assertLess(peak, self.limit)
        self.assertTrue(peer.proc.alive())
        peer.proc.stop()

    def test_unread_read_streams_within_the_byte_budget(self):
        peer = self.start("b2", "--max-calls", "4096", "--max-calls-per-client", "4096",
                          "--max-inflight-per-client", str(32 << 20))
        chans, calls = self.unread_reads(peer, "b2", 2000, 40)
        peak = vm(peer.proc.pid, "VmHWM")
        ended = [(c.code(), c.details()) for c in calls if c.done()]
        self.assertEqual(ended, [], "every stream admitted, none ended")
        with open("/proc/%d/stat" % peer.proc.pid) as f:
            st = f.read().split(")")[1].split()
        print("# peer cpu %.1fs user %.1fs sys" % (int(st[11]) / 100, int(st[12]) / 100))
        # The streams still move when read.
        got = sum(len(ch.data) for ch in calls[0])
        self.assertEqual(got, 8 << 20)
        for c in calls:
            c.cancel()
        for ch in chans:
            ch.close()
        print("# 2000 unread Read streams, all admitted: peak RSS %.1f MB" % (peak / 1e6))
        self.assertLess(peak, self.limit)
        peer.proc.stop()

    def test_300_concurrent_download_file_calls(self):
        peer = self.start("b3", "--max-calls-per-client", "1024")
        md = self.md("b3", "four.txt")
        chans = [grpc.insecure_channel(peer.target, options=[("grpc.use_local_subchannel_pool", 1),
                                                             ("grpc.max_receive_message_length", 8 << 20)])
                 for _ in range(10)]
        stubs = [self.seed_grpc.FileServiceStub(c) for c in chans]
        futs = [stubs[i % 10].DownloadFile.future(self.seed_pb2.FileRequest(file_name="four.txt"), metadata=md,
                                                  timeout=120) for i in range(300)]
        ok = sum(f.result().file_content == self.text for f in futs)
        peak = vm(peer.proc.pid, "VmHWM")
        print("# 300 concurrent DownloadFile of 4 MiB: peak RSS %.1f MB" % (peak / 1e6))
        self.assertEqual(ok, 300)
        self.assertLess(peak, self.limit)
        for ch in chans:
            ch.close()
        peer.proc.stop()

    def test_a_client_that_reads_nothing_gives_its_bytes_back(self):
        peer = self.start("b4", "--max-inflight-per-client", str(1 << 20), "--send-timeout", "2")
        md = self.md("b4", "big.bin")
        # Without BDP probing the client's windows stay at 64 KiB, so an
        # unread stream stops taking data after its first chunk.
        ch = grpc.insecure_channel(peer.target, options=[("grpc.http2.bdp_probe", 0)])
        stub = self.pgrpc.PeerStub(ch)
        # Unread streams hold the client's 1 MiB (256 KiB chunks)...
        unread = [stub.Read(self.pb2.ReadRequest(name="big.bin"), metadata=md, timeout=60) for _ in range(4)]
        time.sleep(0.5)
        # ...so a fifth waits, holding no data, until send_timeout cancels them.
        t0 = time.monotonic()
        got = sum(len(c.data) for c in stub.Read(self.pb2.ReadRequest(name="big.bin"), metadata=md, timeout=60))
        self.assertEqual(got, 8 << 20)
        self.assertGreater(time.monotonic() - t0, 1.0)
        self.assertLess(time.monotonic() - t0, 15)
        cut = 0
        for c in unread:  # those that held a chunk were cancelled; one may have waited its turn
            try:
                self.assertEqual(sum(len(x.data) for x in c), 8 << 20)
            except grpc.RpcError as e:
                self.assertEqual(e.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
                self.assertIn("send_timeout", e.details())
                cut += 1
        self.assertGreaterEqual(cut, 3)
        ch.close()
        peer.proc.stop()

    def test_2000_connections_at_nofile_1024(self):
        self.d.register("b5", "pw")
        port = p2ptest.free_port()
        pw = os.path.join(p2ptest.tempdir(), "pw")
        with open(pw, "w") as f:
            f.write("pw\n")
        # --heartbeat 3600: no directory call during the flood (the blocking
        # directory client's event base per call is another matter).
        peer = p2ptest.Process(["prlimit", "--nofile=1024:1024", p2ptest.binary("p2p-peerd"), "--username", "b5",
                                "--password-file", pw, "--directory", self.d.url, "--folder", self.folder,
                                "--ip", "127.0.0.1", "--port", str(port), "--listen", "127.0.0.1:%d" % port,
                                "--heartbeat", "3600"])
        p2ptest.wait_for(lambda: any(h["peer"] == "b5" for h in self.d.req(
            "GET", "/search", self.tok, params={"file": "four.txt"}).json().get("peers_with_file", [])),
            timeout=20, what="indexed")
        md = self.md("b5", "four.txt")

        def stat():
            with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
                return self.pgrpc.PeerStub(ch).Stat(self.pb2.StatRequest(name="four.txt"), metadata=md, timeout=10).size
        self.assertEqual(stat(), len(self.text))
        socks = []
        for _ in range(2000):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            socks.append(s)
        time.sleep(2)
        self.assertTrue(peer.alive())
        for s in socks:
            s.close()
        time.sleep(1)
        self.assertTrue(peer.alive())
        self.assertEqual(stat(), len(self.text))
        self.assertIn("connection(s) refused", peer.output())
        self.assertEqual(peer.stop(), 0)

    def test_out_of_descriptors_fails_the_call_not_the_peer(self):
        self.d.register("b6", "pw")
        port = p2ptest.free_port()
        pw = os.path.join(p2ptest.tempdir(), "pw")
        with open(pw, "w") as f:
            f.write("pw\n")
        # Each Read holds its file open: 150 of them at RLIMIT_NOFILE 100.
        peer = p2ptest.Process(["prlimit", "--nofile=100:100", p2ptest.binary("p2p-peerd"), "--username", "b6",
                                "--password-file", pw, "--directory", self.d.url, "--folder", self.folder,
                                "--ip", "127.0.0.1", "--port", str(port), "--listen", "127.0.0.1:%d" % port,
                                "--heartbeat", "3600", "--max-calls-per-client", "200"])
        p2ptest.wait_for(lambda: any(h["peer"] == "b6" for h in self.d.req(
            "GET", "/search", self.tok, params={"file": "big.bin"}).json().get("peers_with_file", [])),
            timeout=20, what="indexed")
        md = self.md("b6", "big.bin")
        ch = grpc.insecure_channel("127.0.0.1:%d" % port, options=[("grpc.http2.bdp_probe", 0)])
        stub = self.pgrpc.PeerStub(ch)
        self.assertEqual(stub.Stat(self.pb2.StatRequest(name="big.bin"), metadata=md, timeout=10).size, 8 << 20)
        calls = [stub.Read(self.pb2.ReadRequest(name="big.bin"), metadata=md, timeout=60) for _ in range(150)]
        p2ptest.wait_for(lambda: sum(c.done() for c in calls) >= 1, timeout=20, what="a refused Read")
        time.sleep(1)
        refused = [c for c in calls if c.done()]
        self.assertGreater(len(refused), 0)
        for c in refused:
            self.assertEqual(c.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, c.details())
            self.assertIn("file descriptors", c.details())
        self.assertTrue(peer.alive())
        for c in calls:
            c.cancel()
        # Descriptors back (the cancels reach the peer shortly): served again.
        def stat_ok():
            try:
                return stub.Stat(self.pb2.StatRequest(name="big.bin"), metadata=md, timeout=10).size == 8 << 20
            except grpc.RpcError as e:
                self.assertEqual(e.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
                return False
        p2ptest.wait_for(stat_ok, timeout=20, what="Stat after the calls ended")
        ch.close()
        self.assertEqual(peer.stop(), 0)


if __name__ == "__main__":
    p2ptest.run()
