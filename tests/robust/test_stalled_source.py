#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Fault test: a source that stays connected, answers HTTP/2 pings, sends
one chunk and then nothing. The download must give up on it within a bound
(the progress deadline: p2p-peerd drops a source that delivers fewer than
64 KiB in 10 s of waiting) — fail with a resume point, or move on to another
source — instead of waiting forever. HTTP/2 keepalive does not help here:
the connection is alive."""
import concurrent.futures
import hashlib
import os
import threading
import time
import unittest

import grpc

from robusttest import Background, Dird, Peer, p2ptest
from test_serve import generate_stubs


class StalledSource(unittest.TestCase):
    def test_stalled_source_is_given_up(self):
        _, _, peer_pb2, peer_grpc = generate_stubs()
        data = os.urandom(1024 * 1024)
        release = threading.Event()

        class Staller(peer_grpc.PeerServicer):
            def Read(self, request, context):
                yield peer_pb2.Chunk(offset=request.offset, data=data[request.offset:request.offset + 65536])
                release.wait(120)  # connected, silent

        server = grpc.server(concurrent.futures.ThreadPoolExecutor(4))
        peer_grpc.add_PeerServicer_to_server(Staller(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        d = Dird()
        try:
            tok = d.user("staller", files=[])
            r = d.req("POST", "/index", tok, json={"ip": "127.0.0.1", "port": port, "folder": "/x", "files": [
                {"name": "stuck.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]})
            self.assertEqual(r.status_code, 200, r.text)
            g = Peer(d.url, "waiter", register_with=d)
            p2ptest.wait_for(lambda: len(g.search("stuck.bin")) == 1, what="stuck.bin indexed")
            t0 = time.monotonic()
            job = Background(g, "stuck.bin", timeout=200)
            _, last = job.result(90)
            self.assertEqual(last.get("error"), "io.p2p.Peer.TransferFailed", last)
            self.assertIn("kept to resume", last["parameters"]["message"])
            self.assertIn("staller stalled", last["parameters"]["message"])
            # The default deadline (10 s) plus the ticket and Stat calls.
            self.assertLess(time.monotonic() - t0, 25)
            g.stop()
        finally:
            release.set()
            server.stop(0)
            d.stop()


if __name__ == "__main__":
    p2ptest.run()
