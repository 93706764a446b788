#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Verified download vs raw TCP, interleaved, with each side's CPU time.

A narrower companion to bench.py for working on the receiver: one dird,
a sending and a receiving p2p-peerd on 127.0.0.1, and ROUNDS rounds of
(raw TCP sendfile -> bench/peerd/rawread, then one verified Download of the
same file onto tmpfs). Interleaving puts both sides of each ratio under
the same load. For each download it also prints the CPU seconds each
peerd used (utime + stime from /proc) and the receiver's minor page faults, which says where a transfer's time
goes when the machine has fewer cores than busy threads.

    bench/peerd/dlloop.py --builddir DIR [--size-mib N] [--rounds N] [--dest DIR] [--chunk-size B] [--pause]

--pause stops after starting the daemons and prints their PIDs (to attach
perf record -p PID), then runs the rounds when Enter is pressed.
"""
import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
top = os.path.dirname(os.path.dirname(here))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(top, "tests", "blackbox"))
sys.path.insert(0, os.path.join(top, "tests", "dird"))
sys.path.insert(0, os.path.join(top, "tests", "peerd"))


def usage(pid):
    """(CPU seconds, minor page faults) of a process so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[7])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--builddir", default=os.path.join(top, "build"))
    ap.add_argument("--pause", action="store_true")
    ap.add_argument("--chunk-size", type=int, help="the sender's chunk_size (default: its own)")
    ap.add_argument("--dest", default="/dev/shm",
                    help="file system to receive onto (default /dev/shm: tmpfs, so the disk is not measured)")
    a = ap.parse_args()
    os.environ["P2P_BUILDDIR"] = os.path.abspath(a.builddir)
    os.environ["P2P_SRCDIR"] = top
    import p2ptest
    from bench import raw_tcp, start_peer
    from dirdtest import Dird

    size = a.size_mib << 20
    work = p2ptest.tempdir("p2p-dlloop-")
    src_dir = os.path.join(work, "src")
    dst_dir = tempfile.mkdtemp(prefix="p2p-dlloop-dst-", dir=a.dest)
    to_dir = os.path.join(dst_dir, "in")
    os.mkdir(src_dir)
    os.mkdir(to_dir)
    path = os.path.join(src_dir, "big.bin")
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(a.size_mib):
            b = os.urandom(1 << 20)
            h.update(b)
            f.write(b)
    want = h.hexdigest()
    try:
        d = Dird()
        procs, ctl = {}, {}
        extra = {"sender": ["--chunk-size", str(a.chunk_size)] if a.chunk_size else [], "receiver": []}
        for name, folder in (("sender", src_dir), ("receiver", dst_dir)):
            procs[name], ctl[name], _ = start_peer(d, work, name, folder, extra[name])
        # The sender hashes its folder after login; wait until it is indexed.
        p2ptest.wait_for(lambda: ctl["receiver"].call("Search", {"exact": "big.bin"})
                                 .get("parameters", {}).get("results"), timeout=120, what="index")
        if a.pause:
            print("sender pid %d, receiver pid %d; Enter to start" % (procs["sender"].pid, procs["receiver"].pid))
            sys.stdin.readline()
        rawread = os.path.join(a.builddir, "bench/peerd/rawread")
        v = ctl["receiver"]
        ratios = []
        print("%-5s %8s %10s %7s %11s %11s %9s" % ("round", "raw s", "download s", "ratio", "sender CPU",
                                                  "recv CPU", "recv flt"))
        for i in range(a.rounds):
            raw = raw_tcp(rawread, path, size)
            c0 = {n: usage(p.pid) for n, p in procs.items()}
            t0 = time.perf_counter()
            v.send_raw(json.dumps({"method": "io.p2p.Peer.Download", "parameters": {"name": "big.bin", "to": to_dir}})
                       .encode() + b"\0")
            r = v.recv()
            dt = time.perf_counter() - t0
            c1 = {n: usage(p.pid) for n, p in procs.items()}
            assert "error" not in r, r
            assert r["parameters"]["sha256"] == want
            os.unlink(os.path.join(to_dir, "big.bin"))
            ratios.append(raw / dt)
            print("%-5d %8.3f %10.3f %7.2f %11.2f %11.2f %9d" % (i + 1, raw, dt, raw / dt,
                                                                c1["sender"][0] - c0["sender"][0],
                                                                c1["receiver"][0] - c0["receiver"][0],
                                                                c1["receiver"][1] - c0["receiver"][1]))
        print("verified download vs raw TCP: median %.2fx, best %.2fx (%d rounds, %d MiB, load %s)" %
              (statistics.median(ratios), max(ratios), a.rounds, a.size_mib,
               open("/proc/loadavg").read().split()[0]))
    finally:
        shutil.rmtree(dst_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
