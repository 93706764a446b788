#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-peerd black-box: downloads from sources that are not p2p-peerd — a
peer of an older version (Stat without block hashes) and one that sends
malformed chunks. The sources are Python grpcio servers that log in and
index like a peer."""
import hashlib
import os
import unittest
from concurrent import futures

import grpc

import p2ptest
from test_download import Net, download, MiB
from test_serve import generate_stubs

STUBS = None


class FakePeer:
    """A grpcio server for p2p.v1.Peer serving data under name, indexed at
    the directory as user. mode: "old" (Stat without block hashes) or
    "bad-offsets" (Stat with block hashes, chunks with wrong offsets)."""

    def __init__(self, net, user, name, data, mode):
        _, _, pb2, pb2_grpc = STUBS
        block = 4 * MiB

        class Servicer(pb2_grpc.PeerServicer):
            def Stat(self, request, context):
                r = pb2.StatResponse(name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest(), mtime=1)
                if mode != "old":
                    r.block_size = block
                    r.block_sha256.extend(hashlib.sha256(data[i:i + block] if mode != "lying-list" else b"x").digest()
                                          for i in range(0, len(data), block))
                return r

            def Read(self, request, context):
                end = request.offset + request.length if request.length else len(data)
                for off in range(request.offset, end, 65536):
                    n = min(65536, end - off)
                    yield pb2.Chunk(offset=off + (7 if mode == "bad-offsets" else 0), data=data[off:off + n])

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb2_grpc.add_PeerServicer_to_server(Servicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        d = net.d
        assert d.register(user, "pw-" + user).status_code == 201
        tok = d.login(user, "pw-" + user)
        r = d.req("POST", "/index", tok, json={"ip": "127.0.0.1", "port": self.port, "folder": "/fake",
                                              "files": [{"name": name, "size": len(data),
                                                         "sha256": hashlib.sha256(data).hexdigest()}]})
        assert r.status_code == 200, r.text

    def stop(self):
        self.server.stop(0)


class Sources(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        global STUBS
        STUBS = generate_stubs()

    def setUp(self):
        self.net = Net()
        self.fakes = []

    def tearDown(self):
        for f in self.fakes:
            f.stop()
        self.net.close()

    def test_older_peer_without_block_hashes(self):
        data = os.urandom(9 * MiB + 3)
        self.fakes.append(FakePeer(self.net, "oldtimer", "old.bin", data, "old"))
        v, folder, proc = self.net.peer("getter")
        _, last = download(v, "old.bin")
        self.assertEqual(self.net.assert_ok(last)["state"], "done", last)
        with open(os.path.join(folder, "old.bin"), "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertIn("no source sent block hashes", proc.output())

    def test_malformed_chunks_drop_the_source(self):
        data = os.urandom(3 * 4 * MiB)
        self.fakes.append(FakePeer(self.net, "garbler", "g.bin", data, "bad-offsets"))
        self.net.peer("honest", {"g.bin": data}, ["--upload-rate", str(8 * MiB)])
        v, folder, proc = self.net.peer("getter")
        _, last = download(v, "g.bin")
        p = self.net.assert_ok(last)
        self.assertEqual(p["state"], "done", last)
        self.assertEqual(p["sources_used"], 1)
        self.assertIn("malformed chunk from garbler", proc.output())
        with open(os.path.join(folder, "g.bin"), "rb") as f:
            self.assertEqual(f.read(), data)

    def test_a_lying_block_list_is_outvoted(self):
        data = os.urandom(2 * 4 * MiB + 10)
        self.fakes.append(FakePeer(self.net, "aliar", "l.bin", data, "lying-list"))
        self.net.peer("honest1", {"l.bin": data})
        self.net.peer("honest2", {"l.bin": data})
        v, folder, proc = self.net.peer("getter")
        _, last = download(v, "l.bin")
        p = self.net.assert_ok(last)
        self.assertEqual(p["state"], "done", last)
        self.assertIn("aliar sends other block hashes than 2 other source(s); it is used only if they fail",
                      proc.output())
        with open(os.path.join(folder, "l.bin"), "rb") as f:
            self.assertEqual(f.read(), data)

    def test_only_a_garbling_source(self):
        data = os.urandom(5 * MiB)
        self.fakes.append(FakePeer(self.net, "garbler", "h.bin", data, "bad-offsets"))
        v, folder, _ = self.net.peer("getter")
        _, last = download(v, "h.bin")
        self.assertEqual(last.get("error"), "io.p2p.Peer.VerificationFailed", last)
        self.assertFalse(os.path.exists(os.path.join(folder, "h.bin")))


if __name__ == "__main__":
    p2ptest.run()
