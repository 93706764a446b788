#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Load tests on loopback, bounded in time:

- p2p-dird out of file descriptors: no busy loop on accept(), no log
  flood, and the clients in the backlog are served afterwards;
- p2p-dird with 1,000 honest connections open at once, each sending an
  authenticated search, while slowloris clients trickle headers, send
  endless headers, or connect and say nothing: every honest request gets
  200, the endless headers are cut off, silent connections are closed
  after the idle timeout, and dird's memory stays bounded;
- 50 concurrent downloads (p2p.v1.Peer/Read) from one p2p-peerd: every
  one complete and verified, and peerd's memory stays bounded.

Memory bounds are generous ceilings meant to catch unbounded growth (a
buffer per byte received, a copy per stream), not to measure."""
import concurrent.futures
import hashlib
import os
import selectors
import socket
import threading
import time
import unittest

import grpc

from robusttest import Dird, Peer, memory_env, p2ptest, peak_rss_kib, raise_nofile, rss_kib
from test_serve import generate_stubs

HONEST = 1000
TRICKLERS = 100
FLOODERS = 20
SILENT = 50
DOWNLOADS = 50


def http_status(raw):
    try:
        return int(raw.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


class DirdLoad(unittest.TestCase):
    def test_1000_connections_and_slowloris(self):
        have = raise_nofile(4 * (HONEST + TRICKLERS + FLOODERS + SILENT))
        if have < 2 * (HONEST + TRICKLERS + FLOODERS + SILENT) + 64:
            self.skipTest("open-file limit %d is too low" % have)
        env, factor = memory_env()
        d = Dird(config={"timeout": 3, "login_burst": 10000}, env=env)
        token = d.user("loaded", files=["file%d.txt" % i for i in range(50)])
        base_rss = rss_kib(d.proc.pid)
        addr = ("127.0.0.1", d.port)

        # Slowloris: a header byte every 0.3 s per connection.
        stop = threading.Event()
        tricklers = [socket.create_connection(addr) for _ in range(TRICKLERS)]
        for s in tricklers:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")

        def trickle():
            while not stop.wait(0.3):
                for s in tricklers:
                    try:
                        s.send(b"X")
                    except OSError:
                        pass
        tt = threading.Thread(target=trickle, daemon=True)
        tt.start()
        silent = [socket.create_connection(addr) for _ in range(SILENT)]

        # Endless headers: cut off at max_headers, never buffered whole.
        def flood():
            s = socket.create_connection(addr, timeout=10)
            try:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
                for _ in range(1024):  # up to 1 MiB of headers
                    s.sendall(line)
            except OSError:
                pass  # dird closed the connection: what should happen
            try:
                return http_status(s.recv(4096))
            except OSError:
                return None
            finally:
                s.close()
        with concurrent.futures.ThreadPoolExecutor(FLOODERS) as ex:
            flood_results = list(ex.map(lambda _: flood(), range(FLOODERS)))
        for st in flood_results:
            self.assertIn(st, (None, 400, 413, 431), "an endless header was answered %r" % st)

        # 1,000 honest clients: all connected first, then all send, then all read.
        t0 = time.monotonic()
        conns = [socket.create_connection(addr, timeout=30) for _ in range(HONEST)]
        req = ("GET /search?q=file HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
               "Connection: close\r\n\r\n" % token).encode()
        for s in conns:
            s.sendall(req)
            s.setblocking(False)
        sel = selectors.DefaultSelector()
        answers = {}
        for s in conns:
            sel.register(s, selectors.EVENT_READ)
            answers[s] = b""
        open_ = len(conns)
        deadline = time.monotonic() + 45
        while open_ and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                s = key.fileobj
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    answers[s] += data
                else:
                    sel.unregister(s)
                    open_ -= 1
        took = time.monotonic() - t0
        statuses = [http_status(a) for a in answers.values()]
        for s in conns:
            s.close()
        peak = peak_rss_kib(d.proc.pid)
        self.assertEqual(open_, 0, "%d honest connections got no full answer" % open_)
        bad = [st for st in statuses if st != 200]
        self.assertEqual(bad, [], "honest clients got errors")
        self.assertTrue(all(b'"file1.txt"' in a for a in answers.values()))

        # Silent connections are closed after the idle timeout (3 s).
        time.sleep(1)
        for s in silent:
            s.settimeout(10)
            self.assertEqual(s.recv(1), b"", "a silent connection was kept open")
            s.close()
        stop.set()
        tt.join()
        for s in tricklers:
            s.close()
        self.assertTrue(d.healthy())
        self.assertLess(peak, factor * 128 * 1024, "p2p-dird peaked at %d KiB" % peak)
        print("# %d honest requests answered 200 in %.1f s beside %d trickling, %d flooding and %d silent "
              "connections; dird RSS %d KiB at start, peak %d KiB"
              % (HONEST, took, TRICKLERS, FLOODERS, SILENT, base_rss, peak), flush=True)
        d.stop()

    def test_out_of_file_descriptors(self):
        # dird with 64 descriptors and 100 clients: it must not spin on
        # accept() (EMFILE leaves the socket readable) nor flood its log,
        # and the clients waiting in the backlog are served once
        # descriptors are free again.
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        try:
            d = Dird(config={"timeout": 3})
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        addr = ("127.0.0.1", d.port)
        hold = [socket.create_connection(addr) for _ in range(100)]
        waiting = socket.create_connection(addr, timeout=20)
        waiting.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(0.5)
        c0 = cpu_seconds(d.proc.pid)
        time.sleep(2)
        spent = cpu_seconds(d.proc.pid) - c0
        for s in hold:
            s.close()
        answer = b""
        while True:
            b = waiting.recv(4096)
            if not b:
                break
            answer += b
        waiting.close()
        self.assertEqual(http_status(answer), 200, answer)
        self.assertTrue(d.healthy())
        out = d.proc.output()
        self.assertLess(spent, 1.0, "p2p-dird spun on accept() for %.2f s of 2 s" % spent)
        self.assertLessEqual(out.count("pausing accept"), 2, out[-2000:])
        self.assertNotIn("Error from accept() call", out)
        d.stop()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PeerdLoad(unittest.TestCase):
    def test_50_concurrent_downloads(self):
        _, _, peer_pb2, peer_grpc = generate_stubs()
        d = Dird()
        data = os.urandom(4 * 1024 * 1024 + 17)
        want = hashlib.sha256(data).hexdigest()
        env, factor = memory_env()
        server = Peer(d.url, "server", {"load.bin": data}, register_with=d, chunk_size=262144, env=env)
        p2ptest.wait_for(server.logged_in, what="server logged in")
        token = d.user("loader", files=[])
        tickets = []
        for _ in range(DOWNLOADS):
            r = d.req("POST", "/tickets", token, json={"peer": "server", "file": "load.bin"})
            self.assertEqual(r.status_code, 201, r.text)
            tickets.append(r.json()["ticket"])
        base_rss = rss_kib(server.proc.pid)
        target = "127.0.0.1:%d" % server.port

        def fetch(ticket):
            opts = [("grpc.max_receive_message_length", 16 << 20), ("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(target, options=opts) as ch:
                stub = peer_grpc.PeerStub(ch)
                h = hashlib.sha256()
                n = 0
                for chunk in stub.Read(peer_pb2.ReadRequest(name="load.bin"),
                                       metadata=[("authorization", "Bearer " + ticket)], timeout=120):
                    if chunk.offset != n:
                        return "chunk at %d, expected %d" % (chunk.offset, n)
                    h.update(chunk.data)
                    n += len(chunk.data)
                return h.hexdigest() if n == len(data) else "short: %d bytes" % n

        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(DOWNLOADS) as ex:
            results = list(ex.map(fetch, tickets))
        took = time.monotonic() - t0
        peak = peak_rss_kib(server.proc.pid)
        self.assertEqual(results, [want] * DOWNLOADS)
        self.assertTrue(server.proc.alive())
        self.assertLess(peak, factor * 160 * 1024, "p2p-peerd peaked at %d KiB" % peak)
        print("# %d concurrent downloads of %d bytes verified in %.1f s; peerd RSS %d KiB before, peak %d KiB"
              % (DOWNLOADS, len(data), took, base_rss, peak), flush=True)
        server.stop()
        d.stop()


if __name__ == "__main__":
    p2ptest.run()
