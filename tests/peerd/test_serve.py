#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-peerd black-box: a real p2p-dird and a real p2p-peerd on 127.0.0.1;
clients generated at test time from the seed's proto (verbatim, with its
`string file_content`) and from proto/p2p/v1/peer.proto, with Debian's
python3-grpcio and python3-grpc-tools."""
import concurrent.futures
import hashlib
import importlib
import os
import signal
import subprocess
import sys
import unittest

import grpc
import requests

import p2ptest
from dirdtest import Dird

SEED_PROTO = """syntax = "proto3";

service FileService {
  rpc DownloadFile (FileRequest) returns (FileResponse);
}

message FileRequest {
  string file_name = 1;
}

message FileResponse {
  string file_content = 1;
}
"""


def generate_stubs():
    out = p2ptest.tempdir("p2p-stubs-")
    with open(os.path.join(out, "FileSharing.proto"), "w") as f:
        f.write(SEED_PROTO)
    os.makedirs(os.path.join(out, "p2p", "v1"))
    with open(os.path.join(p2ptest.SRCDIR, "proto", "p2p", "v1", "peer.proto")) as f:
        peer = f.read()
    with open(os.path.join(out, "peer.proto"), "w") as f:
        f.write(peer)
    for proto in ("FileSharing.proto", "peer.proto"):
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", out, "--python_out", out,
                        "--grpc_python_out", out, os.path.join(out, proto)], check=True)
    sys.path.insert(0, out)
    return (importlib.import_module("FileSharing_pb2"), importlib.import_module("FileSharing_pb2_grpc"),
            importlib.import_module("peer_pb2"), importlib.import_module("peer_pb2_grpc"))


class Peer:
    def __init__(self, dird, user, password, folder, *extra, activate=False, env=None):
        self.dir = p2ptest.tempdir("p2p-peerd-")
        self.pwfile = os.path.join(self.dir, "password")
        with open(self.pwfile, "w") as f:
            f.write(password + "\n")
        self.port = p2ptest.free_port()
        argv = [p2ptest.binary("p2p-peerd"), "--username", user, "--password-file", self.pwfile,
                "--directory", dird.url, "--folder", folder, "--ip", "127.0.0.1",
                "--port", str(self.port), "--heartbeat", "1"] + list(extra)
        if activate:
            argv = ["systemd-socket-activate", "-l", "127.0.0.1:%d" % self.port] + argv
        else:
            argv += ["--listen", "127.0.0.1:%d" % self.port]
        self.proc = p2ptest.Process(argv, env=env)
        self.target = "127.0.0.1:%d" % self.port


class Serve(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.seed_pb2, cls.seed_grpc, cls.peer_pb2, cls.peer_grpc = generate_stubs()
        cls.d = Dird()
        cls.d.register("server1", "spw")
        cls.d.register("client1", "cpw")
        cls.d.register("server2", "s2pw")
        cls.folder = p2ptest.tempdir("p2p-share-")
        cls.text = "hola desde peer1\n" * 100
        with open(os.path.join(cls.folder, "file1.txt"), "w") as f:
            f.write(cls.text)
        cls.big = os.urandom(3 * 1024 * 1024 + 17)  # NUL bytes included
        with open(os.path.join(cls.folder, "big.bin"), "wb") as f:
            f.write(cls.big)
        os.symlink("/etc/passwd", os.path.join(cls.folder, "escape"))
        os.mkdir(os.path.join(cls.folder, "subdir"))
        with open(os.path.join(cls.folder, ".hidden"), "w") as f:
            f.write("x")
        cls.peer = Peer(cls.d, "server1", "spw", cls.folder, "--max-message", "1048576")
        cls.tok = cls.d.login("client1", "cpw")
        p2ptest.wait_for(lambda: cls.d.req("GET", "/search", cls.tok, params={"file": "file1.txt"}).status_code == 200,
                         what="peerd indexed")
        cls.channel = grpc.insecure_channel(cls.peer.target, options=[("grpc.max_receive_message_length", 64 << 20)])

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.peer.proc.stop()
        cls.d.stop()

    def ticket(self, name, peer="server1"):
        r = self.d.req("POST", "/tickets", self.tok, json={"peer": peer, "file": name})
        self.assertEqual(r.status_code, 201, r.text)
        return [("authorization", "Bearer " + r.json()["ticket"])]

    def assertCode(self, fn, code):
        with self.assertRaises(grpc.RpcError) as cm:
            fn()
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        return cm.exception

    def test_index_has_sizes_and_hashes_and_skips_unsafe_entries(self):
        hit = self.d.req("GET", "/search", self.tok, params={"file": "big.bin"}).json()["peers_with_file"][0]
        self.assertEqual(hit["size"], len(self.big))
        self.assertEqual(hit["sha256"], hashlib.sha256(self.big).hexdigest())
        self.assertEqual((hit["ip"], hit["port"]), ("127.0.0.1", self.peer.port))
        for name in ("escape", "subdir", ".hidden"):
            self.assertEqual(self.d.req("GET", "/search", self.tok, params={"file": name}).status_code, 404, name)

    def test_seed_client_downloads_text_file(self):
        stub = self.seed_grpc.FileServiceStub(self.channel)
        resp = stub.DownloadFile(self.seed_pb2.FileRequest(file_name="file1.txt"), metadata=self.ticket("file1.txt"),
                                 timeout=10)
        self.assertEqual(resp.file_content, self.text)

    def test_download_without_or_with_bad_ticket(self):
        stub = self.seed_grpc.FileServiceStub(self.channel)
        req = self.seed_pb2.FileRequest(file_name="file1.txt")
        self.assertCode(lambda: stub.DownloadFile(req, timeout=10), grpc.StatusCode.UNAUTHENTICATED)
        self.assertCode(lambda: stub.DownloadFile(req, metadata=[("authorization", "Bearer " + "0" * 64)], timeout=10),
                        grpc.StatusCode.UNAUTHENTICATED)
        self.assertCode(lambda: stub.DownloadFile(req, metadata=[("authorization", "Basic xyz")], timeout=10),
                        grpc.StatusCode.UNAUTHENTICATED)
        # A ticket for another file.
        self.assertCode(lambda: stub.DownloadFile(req, metadata=self.ticket("big.bin"), timeout=10),
                        grpc.StatusCode.PERMISSION_DENIED)

    def test_traversal_names_are_refused(self):
        stub = self.seed_grpc.FileServiceStub(self.channel)
        md = self.ticket("file1.txt")
        for name in ("../etc/passwd", "/etc/passwd", "..", ".", "", "sub/file1.txt"):
            self.assertCode(lambda: stub.DownloadFile(self.seed_pb2.FileRequest(file_name=name), metadata=md, timeout=10),
                            grpc.StatusCode.INVALID_ARGUMENT)

    def test_download_file_too_big_points_to_read(self):
        stub = self.seed_grpc.FileServiceStub(self.channel)
        e = self.assertCode(lambda: stub.DownloadFile(self.seed_pb2.FileRequest(file_name="big.bin"),
                                                      metadata=self.ticket("big.bin"), timeout=10),
                            grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("Read", e.details())

    def test_stat_and_read(self):
        stub = self.peer_grpc.PeerStub(self.channel)
        md = self.ticket("big.bin")
        st = stub.Stat(self.peer_pb2.StatRequest(name="big.bin"), metadata=md, timeout=10)
        self.assertEqual(st.size, len(self.big))
        self.assertEqual(st.sha256, hashlib.sha256(self.big).hexdigest())
        self.assertEqual(st.name, "big.bin")
        # Added fields 5 and 6: the SHA-256 of each 4 MiB block.
        bs = 4 * 1024 * 1024
        self.assertEqual(st.block_size, bs)
        self.assertEqual(list(st.block_sha256),
                         [hashlib.sha256(self.big[i:i + bs]).digest() for i in range(0, len(self.big), bs)])
        data = b""
        expect_off = 0
        for chunk in stub.Read(self.peer_pb2.ReadRequest(name="big.bin"), metadata=md, timeout=30):
            self.assertEqual(chunk.offset, expect_off)
            data += chunk.data
            expect_off += len(chunk.data)
        self.assertEqual(data, self.big)
        part = b"".join(c.data for c in stub.Read(self.peer_pb2.ReadRequest(name="big.bin", offset=1000, length=300000),
                                                 metadata=md, timeout=30))
        self.assertEqual(part, self.big[1000:301000])
        tail = b"".join(c.data for c in stub.Read(self.peer_pb2.ReadRequest(name="big.bin", offset=len(self.big)),
                                                 metadata=md, timeout=30))
        self.assertEqual(tail, b"")

    def test_bad_ranges_and_missing_files(self):
        stub = self.peer_grpc.PeerStub(self.channel)
        md = self.ticket("big.bin")
        size = len(self.big)
        for off, ln in ((size + 1, 0), (0, size + 1), (size - 10, 11)):
            self.assertCode(lambda: list(stub.Read(self.peer_pb2.ReadRequest(name="big.bin", offset=off, length=ln),
                                                   metadata=md, timeout=10)),
                            grpc.StatusCode.INVALID_ARGUMENT)

    def test_stat_and_read_of_a_file_gone_since_the_ticket(self):
        path = os.path.join(self.folder, "gone.bin")
        with open(path, "wb") as f:
            f.write(b"soon gone")
        p2ptest.wait_for(lambda: self.d.req("GET", "/search", self.tok, params={"file": "gone.bin"}).status_code == 200,
                         what="gone.bin indexed")
        md = self.ticket("gone.bin")
        os.unlink(path)
        p2ptest.wait_for(lambda: self.d.req("GET", "/search", self.tok, params={"file": "gone.bin"}).status_code == 404,
                         what="gone.bin no longer indexed")
        stub = self.peer_grpc.PeerStub(self.channel)
        self.assertCode(lambda: stub.Stat(self.peer_pb2.StatRequest(name="gone.bin"), metadata=md, timeout=10),
                        grpc.StatusCode.NOT_FOUND)
        self.assertCode(lambda: list(stub.Read(self.peer_pb2.ReadRequest(name="gone.bin"), metadata=md, timeout=10)),
                        grpc.StatusCode.NOT_FOUND)

    def test_unknown_method(self):
        fn = self.channel.unary_unary("/p2p.v1.Peer/Nope")
        self.assertCode(lambda: fn(b"", timeout=10), grpc.StatusCode.UNIMPLEMENTED)

    def test_ten_concurrent_reads(self):
        md = self.ticket("big.bin")

        def one(_):
            ch = grpc.insecure_channel(self.peer.target)
            stub = self.peer_grpc.PeerStub(ch)
            h = hashlib.sha256()
            for c in stub.Read(self.peer_pb2.ReadRequest(name="big.bin"), metadata=md, timeout=60):
                h.update(c.data)
            ch.close()
            return h.hexdigest()
        with concurrent.futures.ThreadPoolExecutor(10) as ex:
            digests = list(ex.map(one, range(10)))
        self.assertEqual(set(digests), {hashlib.sha256(self.big).hexdigest()})


class Lifecycle(unittest.TestCase):
    def test_upload_limit_paces_reads_but_not_other_calls(self):
        import threading
        _, _, peer_pb2, peer_grpc = generate_stubs()
        d = Dird()
        d.register("paced", "pw")
        tok = d.user("reader", files=())
        folder = p2ptest.tempdir()
        data = os.urandom(3 * 1024 * 1024)
        with open(os.path.join(folder, "slow.bin"), "wb") as f:
            f.write(data)
        peer = Peer(d, "paced", "pw", folder, "--upload-rate", "1048576")
        p2ptest.wait_for(lambda: d.req("GET", "/search", tok, params={"file": "slow.bin"}).status_code == 200,
                         what="indexed")
        md = [("authorization", "Bearer " + d.req("POST", "/tickets", tok,
                                                   json={"peer": "paced", "file": "slow.bin"}).json()["ticket"])]
        ch = grpc.insecure_channel(peer.target)
        stub = peer_grpc.PeerStub(ch)
        got, errors = [], []

        def read():
            try:
                for c in stub.Read(peer_pb2.ReadRequest(name="slow.bin"), metadata=md, timeout=60):
                    got.append(len(c.data))
            except grpc.RpcError as e:
                errors.append(e.code())
        reader = threading.Thread(target=read)
        reader.start()
        p2ptest.wait_for(lambda: sum(got) >= 256 * 1024, what="the first chunks")
        # A Stat is answered while the Read waits for its tokens.
        st = stub.Stat(peer_pb2.StatRequest(name="slow.bin"), metadata=md, timeout=10)
        self.assertEqual(st.size, len(data))
        self.assertTrue(reader.is_alive())
        self.assertLess(sum(got), len(data))
        # Stopping in the middle of a paced Read: a clean exit, the reader told.
        self.assertEqual(peer.proc.stop(), 0)
        reader.join(10)
        self.assertFalse(reader.is_alive())
        self.assertTrue(errors, "the Read should have been cut short")
        ch.close()
        d.stop()

    def test_sigterm_logs_out(self):
        d = Dird()
        d.register("srv", "pw")
        tok = d.user("watcher", files=())
        folder = p2ptest.tempdir()
        with open(os.path.join(folder, "gone.txt"), "w") as f:
            f.write("x")
        peer = Peer(d, "srv", "pw", folder)
        p2ptest.wait_for(lambda: d.req("GET", "/search", tok, params={"file": "gone.txt"}).status_code == 200,
                         what="indexed")
        self.assertEqual(peer.proc.stop(), 0)
        self.assertEqual(d.req("GET", "/search", tok, params={"file": "gone.txt"}).status_code, 404)
        d.stop()

    def test_socket_activation(self):
        seed_pb2, seed_grpc, _, _ = generate_stubs()
        d = Dird()
        d.register("act", "pw")
        tok = d.user("actclient", files=())
        folder = p2ptest.tempdir()
        with open(os.path.join(folder, "a.txt"), "w") as f:
            f.write("activated")
        peer = Peer(d, "act", "pw", folder, activate=True)
        # systemd-socket-activate starts the program at the first connection.
        p2ptest.wait_for(lambda: p2ptest.port_open(peer.port), what="activation socket")
        p2ptest.wait_for(lambda: d.req("GET", "/search", tok, params={"file": "a.txt"}).status_code == 200,
                         what="indexed")
        hit = d.req("GET", "/search", tok, params={"file": "a.txt"}).json()["peers_with_file"][0]
        self.assertEqual(hit["port"], peer.port)
        t = d.req("POST", "/tickets", tok, json={"peer": "act", "file": "a.txt"}).json()["ticket"]
        ch = grpc.insecure_channel(peer.target)
        resp = seed_grpc.FileServiceStub(ch).DownloadFile(seed_pb2.FileRequest(file_name="a.txt"),
                                                          metadata=[("authorization", "Bearer " + t)], timeout=10)
        self.assertEqual(resp.file_content, "activated")
        ch.close()
        self.assertIn("socket passed by systemd", peer.proc.output())
        peer.proc.stop()
        d.stop()

    def test_hash_cache_survives_restart(self):
        folder = p2ptest.tempdir()
        state = os.path.join(p2ptest.tempdir(), "state")
        for i in range(3):
            with open(os.path.join(folder, "f%d.bin" % i), "wb") as f:
                f.write(os.urandom(100000))
        argv = [p2ptest.binary("p2p-peerd"), "--folder", folder, "--listen", "127.0.0.1:0",
                "--state-dir", state, "--directory", "http://127.0.0.1:9"]
        p = p2ptest.Process(argv)
        p2ptest.wait_for(lambda: "sharing 3 file(s)" in p.output(), what="first scan")
        self.assertIn("3 hashed, 0 from the cache", p.output())
        p.stop()
        with open(os.path.join(folder, "f1.bin"), "ab") as f:  # one file changes
            f.write(b"more")
        p = p2ptest.Process(argv)
        p2ptest.wait_for(lambda: "sharing 3 file(s)" in p.output(), what="second scan")
        self.assertIn("1 hashed, 2 from the cache", p.output())
        p.stop()
        with open(os.path.join(state, "hashes")) as f:
            self.assertEqual(len(f.read().splitlines()), 3)

    def test_config_check(self):
        folder = p2ptest.tempdir()
        cfg = os.path.join(folder, "peer1.json")
        with open(cfg, "w") as f:  # the seed's config.json, verbatim
            f.write('{"username": "peer1", "status": "off", "files": ["file1.txt"], '
                    '"ip": "127.0.0.1", "port": "50001", "folder": "%s"}' % folder)
        r = subprocess.run([p2ptest.binary("p2p-peerd"), "-c", cfg, "-n"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(cfg, "w") as f:
            f.write('{"port": "nope", "folder": "/tmp"}')
        r = subprocess.run([p2ptest.binary("p2p-peerd"), "-c", cfg, "-n"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn('"port"', r.stderr)
        r = subprocess.run([p2ptest.binary("p2p-peerd"), "-n"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("folder", r.stderr)


if __name__ == "__main__":
    p2ptest.run()
