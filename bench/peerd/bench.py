#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-peerd benchmark (not a test), all on 127.0.0.1, one run, side by side:

  raw TCP       os.sendfile() sender -> a C reader that discards (baseline)
  Read stream   p2p-peerd serving p2p.v1.Peer/Read -> bench/peerd/readclient
                (C, gRPC core, discards in place) and -> a grpcio client
  grpcio/grpcio a Python grpcio server streaming the same file (the seed's
                stack) -> the same client; and -> a grpcio client that
                writes, fsyncs and hashes (a Python verified download)
  download      p2pctl-style Download between two p2p-peerd: Read, write,
                fsync, SHA-256 verify, rename (the whole verified transfer);
                and again with the partial file's write lease broken, so
                peerd reads the file back from disk and hashes it again

and two floors measured on the receiving side's own resources, no network:
the write alone (the same bytes copied from the page cache into a new file
where the download lands: what allocating and filling its pages costs) and
SHA-256 alone (hashlib, i.e. OpenSSL, over the file in memory). A verified
download can take no less than the larger of the two, and with the sender
on the same two cores, about their sum spread over both.

plus the 4-source swarm: a file on four peers, each limited to
--swarm-rate bytes/s upload, fetched from one of them and then from all
four; and the peak RSS of every peerd.

    bench/peerd/bench.py [--size-mib N] [--swarm-mib N] [--swarm-rate B/s] [--builddir DIR]
                         [--rounds N] [--disk | --dest DIR]
"""
import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
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


def start_peer(d, work, name, folder, extra=()):
    """Start a p2p-peerd serving folder, register and log it in at dird d;
    returns (process, control Varlink, gRPC port)."""
    import p2ptest
    from test_control import Varlink
    port = free_port()
    sock = os.path.join(work, name + ".sock")
    proc = p2ptest.Process([p2ptest.binary("p2p-peerd"), "--folder", folder, "--directory", d.url,
                            "--listen", "127.0.0.1:%d" % port, "--port", str(port), "--ip", "127.0.0.1",
                            "--control-socket", sock] + list(extra))
    p2ptest.wait_for(lambda: os.path.exists(sock), timeout=120, what=name)
    v = Varlink(sock)
    v.call("Register", {"username": name, "password": "pw"})
    r = v.call("Login", {"username": name, "password": "pw"})
    assert "error" not in r, r
    return proc, v, port


def raw_tcp(rawread, path, size):
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
    # The reader is C (bench/peerd/rawread), like the Read client.
    out = subprocess.run([rawread, "127.0.0.1", str(port)], capture_output=True, text=True, check=True).stdout
    got, dt = int(out.split()[0]), float(out.split()[1])
    t.join()
    srv.close()
    assert got == size
    return dt


def blocks(path):
    """path's bytes in 1 MiB blocks, read into one reused buffer."""
    buf = bytearray(1 << 20)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                return
            yield memoryview(buf)[:n]


def write_floor(path, dst_dir):
    """Seconds to copy path (in the page cache) into a new file in dst_dir,
    fsync included, as a download's write does; the copy is removed."""
    out = os.path.join(dst_dir, "write-floor.bin")
    t0 = time.perf_counter()
    with open(out, "wb", buffering=0) as dst:
        for b in blocks(path):
            dst.write(b)
        os.fsync(dst.fileno())
    dt = time.perf_counter() - t0
    os.unlink(out)
    return dt


def hash_floor(path):
    """Seconds to SHA-256 path with OpenSSL (hashlib), reading it from the
    page cache in 1 MiB blocks."""
    h = hashlib.sha256()
    t0 = time.perf_counter()
    for b in blocks(path):
        h.update(b)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--builddir", default=os.path.join(top, "build"))
    ap.add_argument("--swarm-mib", type=int, default=256)
    ap.add_argument("--swarm-rate", type=int, default=40 * 1000 * 1000, help="upload limit of each swarm source, bytes/s")
    ap.add_argument("--disk", action="store_true",
                    help="receive onto the work directory's disk instead of tmpfs (/dev/shm): adds the disk's write+fsync speed")
    ap.add_argument("--rounds", type=int, default=3, help="times each path is measured (default 3)")
    ap.add_argument("--dest", help="receive into a new directory under DEST (default /dev/shm)")
    a = ap.parse_args()
    os.environ["P2P_BUILDDIR"] = os.path.abspath(a.builddir)
    os.environ["P2P_SRCDIR"] = top
    import grpc
    import p2ptest
    from dirdtest import Dird
    from test_serve import generate_stubs
    _, _, peer_pb2, peer_grpc = generate_stubs()

    size = a.size_mib << 20
    work = p2ptest.tempdir("p2p-bench-peerd-")
    src_dir = os.path.join(work, "src")
    dst_dir = os.path.join(work, "dst") if a.disk else tempfile.mkdtemp(prefix="p2p-bench-dst-",
                                                                           dir=a.dest or "/dev/shm")
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
        procs[name], v, port = start_peer(d, work, name, folder, extra)
        ctl[name] = (v, port)

    # Every path is timed --rounds times; the table shows the median and
    # the best of each (the machine is shared, and a VM's first touch of
    # memory it has not used lately is slow and erratic).
    results = {}

    def measure(key, fn):
        results[key] = [fn() for _ in range(a.rounds)]
    measure("raw TCP (sendfile -> discard)", lambda: raw_tcp(os.path.join(a.builddir, "bench/peerd/rawread"), path, size))
    measure("floor: write alone (copy into a new file there)", lambda: write_floor(path, dst_dir))
    measure("floor: SHA-256 alone (OpenSSL, in memory)", lambda: hash_floor(path))

    tok = d.login("receiver", "pw")

    def ticket():
        return d.req("POST", "/tickets", tok, json={"peer": "sender", "file": "big.bin"}).json()["ticket"]

    opts = [("grpc.max_receive_message_length", 64 << 20)]

    def c_read(port):
        out = subprocess.run([os.path.join(os.environ["P2P_BUILDDIR"], "bench", "peerd", "readclient"), "127.0.0.1:%d" % port, "big.bin", ticket()],
                             capture_output=True, text=True, check=True).stdout.split()
        assert int(out[0]) == size, out
        return float(out[1])
    measure("peerd Read stream -> C client, discard", lambda: c_read(ctl["sender"][1]))

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
    measure("peerd Read stream -> grpcio client, discard",
            lambda: read_stream("127.0.0.1:%d" % ctl["sender"][1], [("authorization", "Bearer " + ticket())]))

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
    measure("Python grpcio server -> discard", lambda: read_stream("127.0.0.1:%d" % pport, []))

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
    with open(path, "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()

    def checked(r):
        assert r[1] == want
        return r[0]
    measure("Python grpcio download (write+fsync+SHA-256)", lambda: checked(python_download("127.0.0.1:%d" % pport)))
    server.stop(0)

    v = ctl["receiver"][0]
    landed = os.path.join(dst_dir, "big.bin")

    def download():
        t0 = time.perf_counter()
        v.send_raw(json.dumps({"method": "io.p2p.Peer.Download", "parameters": {"name": "big.bin"}}).encode() + b"\0")
        r = v.recv()
        dt = time.perf_counter() - t0
        assert "error" not in r, r
        assert r["parameters"]["sha256"] == want
        with open(landed, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == want
        os.unlink(landed)
        return dt
    measure("verified download (Read+write+fsync+SHA-256)", download)

    # The same with the partial file's write lease broken while it runs
    # (an open with O_NONBLOCK from here), so that peerd reads the whole
    # file back from disk and hashes it again before the rename: what
    # proving the disk costs when it cannot be proven by the lease.
    partial = os.path.join(dst_dir, ".p2p-partial", "big.bin")

    def break_lease():
        for _ in range(20000):
            try:
                os.close(os.open(partial, os.O_RDONLY | os.O_NONBLOCK))
            except BlockingIOError:
                return  # the lease is breaking: peerd will read back
            except FileNotFoundError:
                time.sleep(0.0005)
                continue
            return

    def download_reread():
        t = threading.Thread(target=break_lease)
        t.start()
        dt = download()
        t.join()
        return dt
    measure("verified download, read back from disk", download_reread)

    def med(k):
        return statistics.median(results[k])

    def best(k):
        return min(results[k])
    raw = "raw TCP (sendfile -> discard)"
    print()
    print("%d rounds each; median and best" % a.rounds)
    print("%-48s %8s %8s %7s %8s %8s %7s" % ("path", "median s", "MB/s", "vs raw", "best s", "MB/s", "vs raw"))
    for k in results:
        print("%-48s %8.2f %8.0f %7.2f %8.2f %8.0f %7.2f" % (k, med(k), size / med(k) / 1e6, med(raw) / med(k),
                                                          best(k), size / best(k) / 1e6, best(raw) / best(k)))
    dl, pydl = "verified download (Read+write+fsync+SHA-256)", "Python grpcio download (write+fsync+SHA-256)"
    c = "peerd Read stream -> C client, discard"
    for label, f in (("median", med), ("best", best)):
        print("%-6s: verified download vs raw TCP %.2fx, vs Python grpcio download %.2fx; "
              "Read stream (C client) vs raw TCP %.2fx" % (label, f(raw) / f(dl), f(pydl) / f(dl), f(raw) / f(c)))
    rr = "verified download, read back from disk"
    print("reading back from disk: %+.2f s median (%.2fx the download), SHA-256 floor %.2f s"
          % (med(rr) - med(dl), med(rr) / med(dl), med("floor: SHA-256 alone (OpenSSL, in memory)")))
    print("receiver folder on %s" % ("disk" if a.disk else a.dest or "tmpfs (/dev/shm)"))

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
