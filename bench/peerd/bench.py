#!/usr/bin/python3
"""p2p-peerd benchmark (not a test), all on 127.0.0.1, one run, side by side:

  raw TCP       os.sendfile() sender -> a reader that discards (baseline)
  Read stream   p2p-peerd serving p2p.v1.Peer/Read -> bench/peerd/readclient
                (C, gRPC core, discards in place) and -> a grpcio client
  grpcio/grpcio a Python grpcio server streaming the same file (the seed's
                stack) -> the same client; and -> a grpcio client that
                writes, fsyncs and hashes (a Python verified download)
  download      p2pctl-style Download between two p2p-peerd: Read, write,
                fsync, SHA-256 verify, rename (the whole verified transfer)

plus the 4-source swarm: a file on four peers, each limited to
--swarm-rate bytes/s upload, fetched from one of them and then from all
four; and the peak RSS of every peerd.

    bench/peerd/bench.py [--size-mib N] [--swarm-mib N] [--swarm-rate B/s] [--builddir DIR]
"""
import argparse
import concurrent.futures
import hashlib
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
top = os.path.dirname(os.path.dirname(here))
sys.path.insert(0, os.path.join(top, "tests", "blackbox"))
sys.path.insert(0, os.path.join(top, "tests", "dird"))
sys.path.insert(0, os.path.join(top, "tests", "peerd"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_peak_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024


def raw_tcp(path, size):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def send():
        c, _ = srv.accept()
        with open(path, "rb") as f:
            off = 0
            while off < size:
                off += os.sendfile(c.fileno(), f.fileno(), off, size - off)
        c.close()
    t = threading.Thread(target=send)
    t.start()
    s = socket.create_connection(("127.0.0.1", port))
    buf = bytearray(1 << 20)
    got = 0
    t0 = time.perf_counter()
    while True:
        n = s.recv_into(buf)
        if not n:
            break
        got += n
    dt = time.perf_counter() - t0
    t.join()
    srv.close()
    assert got == size
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--builddir", default=os.path.join(top, "build"))
    ap.add_argument("--swarm-mib", type=int, default=256)
    ap.add_argument("--swarm-rate", type=int, default=40 * 1000 * 1000, help="upload limit of each swarm source, bytes/s")
    ap.add_argument("--disk", action="store_true",
                    help="receive onto the work directory's disk instead of tmpfs (/dev/shm): adds the disk's write+fsync speed")
    a = ap.parse_args()
    os.environ["P2P_BUILDDIR"] = os.path.abspath(a.builddir)
    os.environ["P2P_SRCDIR"] = top
    import grpc
    import p2ptest
    from dirdtest import Dird
    from test_control import Varlink
    from test_serve import generate_stubs
    _, _, peer_pb2, peer_grpc = generate_stubs()

    size = a.size_mib << 20
    work = p2ptest.tempdir("p2p-bench-peerd-")
    src_dir = os.path.join(work, "src")
    dst_dir = os.path.join(work, "dst") if a.disk else tempfile.mkdtemp(prefix="p2p-bench-dst-", dir="/dev/shm")
    os.mkdir(src_dir)
    if a.disk:
        os.mkdir(dst_dir)
    path = os.path.join(src_dir, "big.bin")
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(a.size_mib):
            f.write(block)
    print("machine: %s, %d cores; file %d MiB" % (os.uname().machine, os.cpu_count(), a.size_mib))

    # The swarm's file: the same bytes in four folders (hard links).
    swarm_dirs = [os.path.join(work, "swarm%d" % i) for i in range(4)]
    for i, sd in enumerate(swarm_dirs):
        os.mkdir(sd)
        if i == 0:
            with open(os.path.join(sd, "swarm.bin"), "wb") as f:
                for _ in range(a.swarm_mib):
                    f.write(os.urandom(1 << 20))
        else:
            os.link(os.path.join(swarm_dirs[0], "swarm.bin"), os.path.join(sd, "swarm.bin"))

    d = Dird()
    procs = {}
    ctl = {}
    peers = [("sender", src_dir, []), ("receiver", dst_dir, [])]
    peers += [("swarm%d" % i, sd, ["--upload-rate", str(a.swarm_rate)]) for i, sd in enumerate(swarm_dirs)]
    for name, folder, extra in peers:
        port = free_port()
        sock = os.path.join(work, name + ".sock")
        procs[name] = p2ptest.Process([p2ptest.binary("p2p-peerd"), "--folder", folder, "--directory", d.url,
                                       "--listen", "127.0.0.1:%d" % port, "--port", str(port), "--ip", "127.0.0.1",
                                       "--control-socket", sock] + extra)
        p2ptest.wait_for(lambda: os.path.exists(sock), timeout=120, what=name)
        v = Varlink(sock)
        v.call("Register", {"username": name, "password": "pw"})
        r = v.call("Login", {"username": name, "password": "pw"})
        assert "error" not in r, r
        ctl[name] = (v, port)

    results = {}
    results["raw TCP (sendfile -> discard)"] = raw_tcp(path, size)

    tok = d.login("receiver", "pw")

    def ticket():
        return d.req("POST", "/tickets", tok, json={"peer": "sender", "file": "big.bin"}).json()["ticket"]

    opts = [("grpc.max_receive_message_length", 64 << 20)]

    def c_read(port):
        out = subprocess.run([os.path.join(os.environ["P2P_BUILDDIR"], "bench", "peerd", "readclient"), "127.0.0.1:%d" % port, "big.bin", ticket()],
                             capture_output=True, text=True, check=True).stdout.split()
        assert int(out[0]) == size, out
        return float(out[1])
    # Best of three for the short streams: the machine is shared.
    results["peerd Read stream -> C client, discard"] = min(c_read(ctl["sender"][1]) for _ in range(3))

    def read_stream(target, md):
        ch = grpc.insecure_channel(target, options=opts)
        stub = peer_grpc.PeerStub(ch)
        got = 0
        t0 = time.perf_counter()
        for c in stub.Read(peer_pb2.ReadRequest(name="big.bin"), metadata=md, timeout=600):
            got += len(c.data)
        dt = time.perf_counter() - t0
        ch.close()
        assert got == size, got
        return dt
    results["peerd Read stream -> discard"] = read_stream("127.0.0.1:%d" % ctl["sender"][1],
                                                          [("authorization", "Bearer " + ticket())])

    # The seed's stack: a Python grpcio server streaming the same file.
    from concurrent import futures

    class Servicer(peer_grpc.PeerServicer):
        def Read(self, request, context):
            with open(path, "rb") as f:
                off = 0
                while True:
                    b = f.read(256 << 10)
                    if not b:
                        return
                    yield peer_pb2.Chunk(offset=off, data=b)
                    off += len(b)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.max_send_message_length", 64 << 20)])
    peer_grpc.add_PeerServicer_to_server(Servicer(), server)
    pport = server.add_insecure_port("127.0.0.1:0")
    server.start()
    results["Python grpcio server -> discard"] = read_stream("127.0.0.1:%d" % pport, [])

    # The seed's stack doing what a download does: grpcio server -> grpcio
    # client that writes the file, fsyncs and checks its SHA-256.
    def python_download(target):
        ch = grpc.insecure_channel(target, options=opts)
        stub = peer_grpc.PeerStub(ch)
        out = os.path.join(dst_dir, "python-copy.bin")
        h = hashlib.sha256()
        t0 = time.perf_counter()
        with open(out, "wb") as f:
            for c in stub.Read(peer_pb2.ReadRequest(name="big.bin"), timeout=600):
                f.write(c.data)
                h.update(c.data)
            f.flush()
            os.fsync(f.fileno())
        dt = time.perf_counter() - t0
        ch.close()
        os.unlink(out)
        return dt, h.hexdigest()
    dt, digest = python_download("127.0.0.1:%d" % pport)
    with open(path, "rb") as f:
        assert digest == hashlib.sha256(f.read()).hexdigest()
    results["Python grpcio download (write+fsync+SHA-256)"] = dt
    server.stop(0)

    v = ctl["receiver"][0]
    t0 = time.perf_counter()
    v.send_raw(json.dumps({"method": "io.p2p.Peer.Download", "parameters": {"name": "big.bin"}}).encode() + b"\0")
    r = v.recv()
    dt = time.perf_counter() - t0
    assert "error" not in r, r
    results["verified download (Read+write+fsync+SHA-256)"] = dt
    print("download: %.2f s in the worker, %.2f s end to end" % (r["parameters"]["seconds"], dt))
    with open(os.path.join(dst_dir, "big.bin"), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == r["parameters"]["sha256"]

    base = results["raw TCP (sendfile -> discard)"]
    print()
    print("%-48s %9s %8s %9s" % ("path", "seconds", "MB/s", "vs raw"))
    for k, dt in results.items():
        print("%-48s %9.2f %8.0f %9.2f" % (k, dt, size / dt / 1e6, base / dt))
    print("verified download vs Python grpcio stream: %.2fx; vs Python grpcio download: %.2fx" %
          (results["Python grpcio server -> discard"] / results["verified download (Read+write+fsync+SHA-256)"],
           results["Python grpcio download (write+fsync+SHA-256)"] /
           results["verified download (Read+write+fsync+SHA-256)"]))
    print("verified download vs raw TCP: %.2fx; Read stream (C client) vs raw TCP: %.2fx" %
          (base / results["verified download (Read+write+fsync+SHA-256)"],
           base / results["peerd Read stream -> C client, discard"]))
    print("receiver folder on %s" % ("disk" if a.disk else "tmpfs (/dev/shm)"))

    # The swarm: one source, then four, each limited to --swarm-rate.
    swarm_to = tempfile.mkdtemp(prefix="p2p-bench-swarm-", dir="/dev/shm")

    def fetch(params):
        t0 = time.perf_counter()
        v.send_raw(json.dumps({"method": "io.p2p.Peer.Download", "parameters": params}).encode() + b"\0")
        r = v.recv()
        assert "error" not in r, r
        os.unlink(os.path.join(swarm_to, "swarm.bin"))
        return time.perf_counter() - t0, r["parameters"]
    one, p1 = fetch({"name": "swarm.bin", "from": "swarm0", "to": swarm_to})
    four, p4 = fetch({"name": "swarm.bin", "to": swarm_to})
    ssize = a.swarm_mib << 20
    print()
    print("swarm, %d MiB, each source limited to %.0f MB/s:" % (a.swarm_mib, a.swarm_rate / 1e6))
    print("  1 source : %6.2f s %8.1f MB/s (sources_used %d)" % (one, ssize / one / 1e6, p1["sources_used"]))
    print("  4 sources: %6.2f s %8.1f MB/s (sources_used %d)" % (four, ssize / four / 1e6, p4["sources_used"]))
    print("  speed-up : %.2fx" % (one / four))
    print()
    for name in sorted(procs):
        print("peak RSS p2p-peerd %-8s: %.1f MB" % (name, rss_peak_mb(procs[name].pid)))
    shutil.rmtree(swarm_to, ignore_errors=True)
    for p in procs.values():
        p.stop()
    d.stop()
    p2ptest.cleanup()
    if not a.disk:
        shutil.rmtree(dst_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
