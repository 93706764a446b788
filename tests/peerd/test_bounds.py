#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-peerd black-box (issue 13): the peer never stalls and never dies.

- a directory that accepts and never answers: Status answers at once and
  says so; other control calls go on while a login, a search or a download
  start waits;
- 2,000 connections to the control socket, and to a socket-activated gRPC
  port, at RLIMIT_NOFILE 1024: no accept() spin, the peer lives and serves;
- a big (sparse) file is hashed off the loop: WATCHDOG=1 goes on, READY=1
  comes first, the file is not shared while it is hashed;
- a finished resumed download leaves STATE_DIR/transfers without a
  control socket; Pause keeps a transfer (listed, in STATE_DIR/transfers),
  Resume continues it from its partial file under the same id;
- Status shows the bound gRPC address, and the advertised one apart;
- a 200-byte non-ASCII name (a 600-byte percent-encoded URL) downloads."""
import http.server
import json
import os
import resource
import socket
import socketserver
import subprocess
import threading
import time
import unittest

import p2ptest
from test_control import Varlink
from test_download import Net, connect, download

TOKEN = "ab" * 32


class FakeDirectory:
    """HTTP on 127.0.0.1 that logs in anyone but never answers the paths in
    stall (or anything at all with stall_all): those connections are held
    open until close()."""

    def __init__(self, stall=(), stall_all=False):
        self.stall, self.stall_all = set(stall), stall_all
        self.held, self.seen = [], []
        self.release = threading.Event()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                path = self.path.split("?")[0]
                fake.seen.append(path)
                if fake.stall_all or path in fake.stall:
                    fake.held.append(self.connection)
                    fake.release.wait(60)
                    return
                body = {"/login": {"token": TOKEN, "expires_at": 2000000000},
                        "/search": {"peers_with_file": [], "results": [], "total": 0}}.get(path, {})
                data = json.dumps(body).encode()
                self.send_response(201 if path in ("/register", "/tickets") else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        if stall_all:
            # Accept (the kernel does, into the backlog) and never read.
            self.sock = socket.socket()
            self.sock.bind(("127.0.0.1", 0))
            self.sock.listen(128)
            self.port = self.sock.getsockname()[1]
            self.server = None
        else:
            self.server = Server(("127.0.0.1", 0), Handler)
            self.port = self.server.server_address[1]
            threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d" % self.port

    def close(self):
        self.release.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        else:
            self.sock.close()


def start_peer(directory, extra=(), prefix=(), env=None, folder=None):
    base = p2ptest.tempdir("p2p-bounds-")
    folder = folder or os.path.join(base, "files")
    os.makedirs(folder, exist_ok=True)
    sock = os.path.join(base, "ctl.sock")
    port = p2ptest.free_port()
    proc = p2ptest.Process(list(prefix) + [p2ptest.binary("p2p-peerd"), "--directory", directory, "--folder", folder,
                                           "--listen", "127.0.0.1:%d" % port, "--control-socket", sock,
                                           "--state-dir", os.path.join(base, "state")] + list(extra), env=env)
    return proc, sock, folder, base, port


def timed_call(sock, method, params=None):
    v = p2ptest.wait_for(lambda: connect(sock), what="control socket")
    try:
        t0 = time.monotonic()
        r = v.call(method, params)
        return r, time.monotonic() - t0
    finally:
        v.close()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_own_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= n


class StalledDirectory(unittest.TestCase):
    def tearDown(self):
        self.fake.close()

    def test_status_answers_at_once(self):
        self.fake = FakeDirectory(stall_all=True)
        pw = os.path.join(p2ptest.tempdir(), "pw")
        with open(pw, "w") as f:
            f.write("secret\n")
        proc, sock, _, _, _ = start_peer(self.fake.url, ["--username", "alice", "--password-file", pw])
        p2ptest.wait_for(lambda: connect(sock), what="control socket")
        time.sleep(1)  # the configured login has been waiting for a while
        r, took = timed_call(sock, "Status")
        self.assertLess(took, 0.1, "Status took %.3f s" % took)
        d = r["parameters"]["directory"]
        self.assertFalse(d["reachable"])
        self.assertEqual(d["state"], "not answering")
        # A Login from the control socket waits too; others do not.
        waiting = Varlink(sock)
        waiting.send_raw(b'{"method":"io.p2p.Peer.Login","parameters":{"username":"bob","password":"x"}}\0')
        for method in ("Transfers", "ListShared", "Status"):
            r, took = timed_call(sock, method)
            self.assertNotIn("error", r)
            self.assertLess(took, 0.1, "%s took %.3f s while a login waits" % (method, took))
        # The login's deadline ends it with a clear error, not a hang.
        waiting.s.settimeout(30)
        r = waiting.recv()
        self.assertEqual(r["error"], "io.p2p.Peer.DirectoryUnreachable")
        self.assertIn("no answer within", r["parameters"]["message"])
        waiting.close()
        self.assertTrue(proc.alive())

    def test_search_and_download_wait_alone(self):
        self.fake = FakeDirectory(stall={"/search"})
        proc, sock, _, _, _ = start_peer(self.fake.url)
        r, _ = timed_call(sock, "Login", {"username": "alice", "password": "pw"})
        self.assertNotIn("error", r, r)
        searching = Varlink(sock)
        searching.send_raw(b'{"method":"io.p2p.Peer.Search","parameters":{"query":"x"}}\0')
        fetching = Varlink(sock)
        fetching.send_raw(b'{"method":"io.p2p.Peer.Download","parameters":{"name":"x.bin"},"more":true}\0')
        p2ptest.wait_for(lambda: self.fake.seen.count("/search") >= 2, what="both searches at the directory")
        for method in ("Transfers", "Status", "ListShared"):
            r, took = timed_call(sock, method)
            self.assertNotIn("error", r)
            self.assertLess(took, 0.1, "%s took %.3f s while a search waits" % (method, took))
        searching.close()
        fetching.close()
        self.assertTrue(proc.alive())


class Flood(unittest.TestCase):
    """Descriptors run out; the peer pauses accept() and lives."""

    def setUp(self):
        if not raise_own_nofile(4500):
            self.skipTest("cannot raise this test's own RLIMIT_NOFILE to 4500")
        self.fake = FakeDirectory()
        self.conns = []

    def tearDown(self):
        for c in self.conns:
            c.close()
        self.fake.close()

    def flood(self, proc, make, n=2000, seconds=3.0, expect=None):
        c0 = cpu_seconds(proc.pid)
        t0 = time.monotonic()
        for _ in range(n):
            try:
                self.conns.append(make())
            except OSError:
                pass
        time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
        # Out of descriptors, accept() must have paused (a slow build may
        # not get there: then only the bounds below are checked).
        if expect and len(os.listdir("/proc/%d/fd" % proc.pid)) >= 1000:
            p2ptest.wait_for(lambda: expect in proc.output(), what=repr(expect))
        used = cpu_seconds(proc.pid) - c0
        wall = time.monotonic() - t0
        # A spinning accept() burns a whole core; a paused one almost nothing.
        self.assertLess(used, 0.5 * wall, "%.2f s of CPU in %.2f s" % (used, wall))
        self.assertTrue(proc.alive(), proc.output()[-2000:])
        for c in self.conns:
            c.close()
        self.conns = []

    def test_control_socket(self):
        proc, sock, _, _, _ = start_peer(self.fake.url, prefix=["prlimit", "--nofile=1024:1024"])
        p2ptest.wait_for(lambda: connect(sock), what="control socket")

        def make():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(sock)
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                raise
            return s

        self.flood(proc, make)
        r = p2ptest.wait_for(lambda: timed_call(sock, "Status")[0], what="Status after the flood")
        self.assertNotIn("error", r)
        self.assertLess(proc.output().count("\n"), 500, "the log was flooded")

    def test_activated_grpc_socket(self):
        port = p2ptest.free_port()
        base = p2ptest.tempdir("p2p-act-")
        folder = os.path.join(base, "files")
        os.mkdir(folder)
        with open(os.path.join(folder, "a.txt"), "w") as f:
            f.write("a")
        sock = os.path.join(base, "ctl.sock")
        proc = p2ptest.Process(["prlimit", "--nofile=1024:1024", "systemd-socket-activate", "-l",
                                "127.0.0.1:%d" % port, "--fdname=grpc", p2ptest.binary("p2p-peerd"),
                                "--directory", self.fake.url, "--folder", folder, "--control-socket", sock,
                                "--state-dir", os.path.join(base, "state")])
        # systemd-socket-activate starts the program at the first connection.
        p2ptest.wait_for(lambda: p2ptest.port_open(port), what="the activated socket")
        p2ptest.wait_for(lambda: connect(sock), what="control socket")

        def make():
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            return s

        self.flood(proc, make, expect="cannot accept a gRPC connection: Too many open files; pausing for")
        r = p2ptest.wait_for(lambda: timed_call(sock, "Status")[0], what="Status after the flood")
        self.assertNotIn("error", r)
        self.assertEqual(r["parameters"]["listen"], "127.0.0.1:%d" % port)

        # gRPC serves again: the HTTP/2 preface gets the server's SETTINGS.
        def http2_answers():
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
                head = s.recv(9)
                return len(head) == 9 and head[3] == 4
        self.assertTrue(p2ptest.wait_for(http2_answers, timeout=15, what="gRPC after the flood"))


class Hashing(unittest.TestCase):
    def test_big_file_keeps_the_watchdog(self):
        fake = FakeDirectory()
        self.addCleanup(fake.close)
        base = p2ptest.tempdir("p2p-hash-")
        folder = os.path.join(base, "files")
        os.mkdir(folder)
        with open(os.path.join(folder, "small.txt"), "w") as f:
            f.write("small")
        big = os.path.join(folder, "big.bin")
        with open(big, "wb") as f:
            f.truncate(4 << 30)  # sparse: hashing it reads 4 GiB of zeros
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        npath = os.path.join(base, "notify")
        ns.bind(npath)
        ns.settimeout(0.2)
        self.addCleanup(ns.close)
        proc, sock, _, _, _ = start_peer(fake.url, folder=folder,
                                         env={"NOTIFY_SOCKET": npath, "WATCHDOG_USEC": "1000000"})
        msgs, hashed_at, ready_at, listed_while_hashing = [], None, None, []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and hashed_at is None:
            try:
                m = ns.recv(4096).decode()
                msgs.append((time.monotonic(), m))
                if "READY=1" in m and ready_at is None:
                    ready_at = time.monotonic()
            except socket.timeout:
                pass
            if "sharing 2 file(s)" in proc.output():
                hashed_at = time.monotonic()
            elif ready_at is not None:
                r, _ = timed_call(sock, "ListShared")
                names = [f["name"] for f in r["parameters"]["files"]]
                listed_while_hashing.append(names)
                if "big.bin" in names:
                    # Listed as the hash ends: the log line follows at once
                    # (a big file listed early would be seconds before it).
                    p2ptest.wait_for(lambda: "sharing 2 file(s)" in proc.output(), timeout=5,
                                     what="the log line of the finished scan")
                    hashed_at = time.monotonic()
        self.assertIsNotNone(hashed_at, "never hashed")
        self.assertIsNotNone(ready_at, "no READY=1")
        self.assertLess(ready_at, hashed_at)
        # The small file is served while the big one is hashed; the big
        # one only once hashed.
        self.assertIn(["small.txt"], listed_while_hashing)
        self.assertTrue(all("big.bin" not in names for names in listed_while_hashing[:-1]), listed_while_hashing)
        dogs = [t for t, m in msgs if "WATCHDOG=1" in m and ready_at <= t <= hashed_at]
        span = hashed_at - ready_at
        # A ping every 0.5 s; a blocked loop would send none while hashing.
        if span > 2:
            self.assertGreaterEqual(len(dogs), int(span / 0.5) - 2, (span, len(dogs)))
        self.assertTrue(any("hashing" in m for _, m in msgs), [m for _, m in msgs])
        r, _ = timed_call(sock, "ListShared")
        self.assertEqual(sorted(f["name"] for f in r["parameters"]["files"]), ["big.bin", "small.txt"])
        proc.stop()


class Transfers(unittest.TestCase):
    def setUp(self):
        self.net = Net()

    def tearDown(self):
        self.net.close()

    def test_resumed_download_cleared_without_control_socket(self):
        data = os.urandom(300000)
        self.net.peer("seed", {"film.mkv": data})
        self.net.d.register("getter", "pw-getter")
        base = p2ptest.tempdir("p2p-noctl-")
        folder = os.path.join(base, "files")
        state = os.path.join(base, "state")
        os.mkdir(folder)
        os.mkdir(state)
        with open(os.path.join(state, "transfers"), "w") as f:
            json.dump([{"name": "film.mkv", "to": os.path.realpath(folder)}], f)
        pw = os.path.join(base, "pw")
        with open(pw, "w") as f:
            f.write("pw-getter\n")
        port = p2ptest.free_port()
        proc = p2ptest.Process([p2ptest.binary("p2p-peerd"), "--directory", self.net.d.url, "--folder", folder,
                                "--listen", "127.0.0.1:%d" % port, "--ip", "127.0.0.1", "--state-dir", state,
                                "--username", "getter", "--password-file", pw])
        p2ptest.wait_for(lambda: os.path.exists(os.path.join(folder, "film.mkv")), timeout=30, what="download")

        def cleared():
            with open(os.path.join(state, "transfers")) as f:
                return json.load(f) == []
        p2ptest.wait_for(cleared, what="STATE_DIR/transfers cleared")
        self.assertIn("no control socket", proc.output())
        with open(os.path.join(folder, "film.mkv"), "rb") as f:
            self.assertEqual(f.read(), data)
        proc.stop()

    def test_pause_and_resume(self):
        MiB = 1 << 20
        data = os.urandom(12 * MiB + 7)
        self.net.peer("seed", {"big.iso": data}, ["--upload-rate", str(2 * MiB)])
        v, folder, proc = self.net.peer("getter")
        starter = Varlink(os.path.join(self.net.bases["getter"], "ctl.sock"))
        starter.send_raw(b'{"method":"io.p2p.Peer.Download","parameters":{"name":"big.iso"},"more":true}\0')

        def transfer():
            t = v.call("Transfers")["parameters"]["transfers"]
            return t[0] if t else None
        p2ptest.wait_for(lambda: transfer() and transfer()["received"] >= 5 * MiB, timeout=30, what="5 MiB in")
        tid = transfer()["id"]
        self.assertNotIn("error", v.call("Pause", {"id": tid}))
        p2ptest.wait_for(lambda: transfer()["state"] == "paused", what="paused")
        starter.close()
        state = os.path.join(self.net.bases["getter"], "state", "transfers")

        def saved():
            with open(state) as f:
                return json.load(f)
        p2ptest.wait_for(lambda: saved() == [{"name": "big.iso", "to": os.path.realpath(folder), "paused": True}],
                         what="the paused transfer in STATE_DIR/transfers")
        self.assertEqual(v.call("Pause", {"id": tid})["error"], "io.p2p.Peer.NotFound")
        time.sleep(1)
        got = transfer()["received"]
        self.assertEqual(transfer()["received"], got)  # nothing moves while paused
        out = subprocess.run([p2ptest.binary("p2pctl"), "--socket", os.path.join(self.net.bases["getter"], "ctl.sock"),
                              "resume", tid], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout, "Resumed transfer %s.\n" % tid)
        _, last = download(v, "big.iso")
        self.assertEqual(self.net.assert_ok(last)["state"], "done", last)
        self.assertEqual(last["parameters"]["id"], tid)
        self.assertRegex(proc.output(), r"resuming, [1-9] of 4 ranges verified")
        with open(os.path.join(folder, "big.iso"), "rb") as f:
            self.assertEqual(f.read(), data)
        p2ptest.wait_for(lambda: saved() == [], what="the list cleared")

    def test_long_non_ascii_name(self):
        name = "\u00e9" * 100  # 200 bytes of UTF-8, 600 percent-encoded
        data = os.urandom(5000)
        self.net.peer("seed", {name: data})
        v, folder, _ = self.net.peer("getter")
        _, last = download(v, name)
        self.assertEqual(self.net.assert_ok(last)["state"], "done", last)
        with open(os.path.join(folder, name), "rb") as f:
            self.assertEqual(f.read(), data)


class Addresses(unittest.TestCase):
    def test_status_shows_bound_and_advertised(self):
        fake = FakeDirectory()
        self.addCleanup(fake.close)
        proc, sock, _, _, port = start_peer(fake.url, ["--ip", "192.0.2.7", "--port", "6000"])
        r, _ = timed_call(sock, "Status")
        st = r["parameters"]
        self.assertEqual(st["listen"], "127.0.0.1:%d" % port)
        self.assertEqual(st["advertised"], {"ip": "192.0.2.7", "port": 6000})
        out = subprocess.run([p2ptest.binary("p2pctl"), "--socket", sock, "status"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("Listening:  127.0.0.1:%d" % port, out.stdout)
        self.assertIn("Advertised: 192.0.2.7:6000", out.stdout)
        proc.stop()


if __name__ == "__main__":
    p2ptest.run()
