# SPDX-License-Identifier: MIT
"""A lying source for the download tests: a Python grpcio server speaking
p2p.v1.Peer that registers, logs in and indexes at a real p2p-dird like a
peer (REST, with python requests through dirdtest.Dird), and then lies in
the ways a download must survive (issue 14):

  wrong-bytes   Stat tells the indexed size and SHA-256 and the true block
                hashes; Read sends other bytes
  own-list      Stat tells the indexed size and SHA-256 with the block hashes
                of its own (wrong) bytes, and Read sends those bytes
  bogus         indexed with a made-up size and SHA-256 (no bytes match it),
                and serves junk of that size
  trickle       Read sends one byte every `period` seconds
  hang          Read sends one chunk, then nothing (the connection stays up)
  past-range    Read sends the range, then goes on streaming after it
  wrong-offset  Read sends chunks whose offsets are off by 7
  huge          Read sends one message larger than any chunk may be
                (5 MiB of data in one Chunk)

Every Read it serves is counted in `reads`."""
import hashlib
import os
import threading
from concurrent import futures

import grpc

BLOCK = 4 * 1024 * 1024
CHUNK = 65536


def blocks_of(data):
    return [hashlib.sha256(data[i:i + BLOCK]).digest() for i in range(0, len(data), BLOCK)]


class Liar:
    def __init__(self, stubs, dird, user, name, data, lie, period=5.0, password="pw-liar-0123456789"):
        _, _, pb2, pb2_grpc = stubs
        self.reads = 0
        self.stop_event = threading.Event()
        true_sha = hashlib.sha256(data).hexdigest()
        if lie == "bogus":
            served = bytes(b ^ 0x5A for b in data[:len(data) // 2 + 1])  # another size, other bytes
        elif lie in ("wrong-bytes", "own-list"):
            served = bytearray(data)
            for i in range(0, len(served), BLOCK):
                served[i] ^= 0xFF  # every block wrong
            served = bytes(served)
        else:
            served = data
        index_size = len(served) if lie == "bogus" else len(data)
        index_sha = hashlib.sha256(os.urandom(32)).hexdigest() if lie == "bogus" else true_sha
        listed = data if lie == "wrong-bytes" else served
        liar = self

        class Servicer(pb2_grpc.PeerServicer):
            def Stat(self, request, context):
                r = pb2.StatResponse(name=name, size=index_size, sha256=index_sha, mtime=1, block_size=BLOCK)
                r.block_sha256.extend(blocks_of(listed))
                return r

            def Read(self, request, context):
                liar.reads += 1
                end = request.offset + request.length if request.length else len(served)
                if lie == "huge":
                    yield pb2.Chunk(offset=request.offset, data=b"\0" * (5 * 1024 * 1024))
                    return
                if lie == "trickle":
                    for off in range(request.offset, end):
                        yield pb2.Chunk(offset=off, data=served[off:off + 1])
                        if liar.stop_event.wait(period):
                            return
                    return
                for off in range(request.offset, end, CHUNK):
                    n = min(CHUNK, end - off)
                    yield pb2.Chunk(offset=off + (7 if lie == "wrong-offset" else 0), data=served[off:off + n])
                    if lie == "hang":
                        liar.stop_event.wait(600)
                        return
                if lie == "past-range":
                    off = end
                    while not liar.stop_event.is_set() and context.is_active():
                        yield pb2.Chunk(offset=off, data=b"\1" * CHUNK)
                        off += CHUNK

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                                  options=[("grpc.max_send_message_length", 64 << 20)])
        pb2_grpc.add_PeerServicer_to_server(Servicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        r = dird.register(user, password)
        assert r.status_code in (201, 409), r.text
        tok = dird.login(user, password)
        r = dird.req("POST", "/index", tok, json={"ip": "127.0.0.1", "port": self.port, "folder": "/liar",
                                                   "files": [{"name": name, "size": index_size, "sha256": index_sha}]})
        assert r.status_code == 200, r.text
        self.token = tok

    def stop(self):
        self.stop_event.set()
        self.server.stop(0)

