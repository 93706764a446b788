#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The p2p.v1.Peer/Read stream of two builds side by side.

    /usr/bin/python3 ../bench/peerd/readab.py --rounds 9 old=/path/to/old/build new=.

One p2p-dird, one p2p-peerd per build serving the same 1 GiB file (page
cache), and per round: raw TCP (sendfile -> bench/peerd/rawread), then each
build's Read stream to bench/peerd/readclient (C, gRPC core). Prints the
median wall time, raw/this, and the serving peer's CPU seconds (user +
system, from /proc) per GiB: the CPU figure holds on a busy machine where
wall times do not."""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
top = os.path.dirname(os.path.dirname(here))
sys.path[:0] = [os.path.join(top, "tests", d) for d in ("blackbox", "dird", "peerd")] + [here]


def cputime(pid):
    with open("/proc/%d/stat" % pid) as f:
        st = f.read().split(")")[1].split()
    return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("builds", nargs="+", help="LABEL=BUILDDIR (the first one's bench programs are used)")
    a = ap.parse_args()
    builds = [b.split("=", 1) for b in a.builds]
    first = os.path.abspath(builds[0][1])
    os.environ["P2P_BUILDDIR"] = first
    os.environ["P2P_SRCDIR"] = top
    import p2ptest
    from dirdtest import Dird
    import bench

    work = p2ptest.tempdir("p2p-readab-")
    src = os.path.join(work, "src")
    os.mkdir(src)
    size = a.size_mib << 20
    block = os.urandom(1 << 20)
    path = os.path.join(src, "big.bin")
    with open(path, "wb") as f:
        for _ in range(a.size_mib):
            f.write(block)
    d = Dird()
    peers = {}
    for label, bd in builds:
        p2ptest.BUILDDIR = os.path.abspath(bd)
        proc, _, port = bench.start_peer(d, work, "s" + label, src)
        peers[label] = (proc.proc.pid, port)
    p2ptest.BUILDDIR = first
    d.register("reader", "pw")
    tok = d.login("reader", "pw")

    def ticket(label):
        for _ in range(300):
            r = d.req("POST", "/tickets", tok, json={"peer": "s" + label, "file": "big.bin"})
            if r.status_code == 201:
                return r.json()["ticket"]
            time.sleep(0.2)  # not indexed yet
        raise SystemExit(r.text)

    raw, wall, cpu = [], {l: [] for l, _ in builds}, {l: [] for l, _ in builds}
    ccpu = {l: [] for l, _ in builds}

    def children():
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime
    for _ in range(a.rounds):
        raw.append(bench.raw_tcp(os.path.join(first, "bench/peerd/rawread"), path, size))
        for label, _ in builds:
            pid, port = peers[label]
            c0, k0 = cputime(pid), children()
            out = subprocess.run([os.path.join(first, "bench/peerd/readclient"), "127.0.0.1:%d" % port, "big.bin",
                                  ticket(label)], capture_output=True, text=True, check=True).stdout.split()
            assert int(out[0]) == size, out
            wall[label].append(float(out[1]))
            cpu[label].append((cputime(pid) - c0) * (1 << 30) / size)
            ccpu[label].append((children() - k0) * (1 << 30) / size)
    print("%d rounds, %d MiB; medians" % (a.rounds, a.size_mib))
    print("raw TCP   %.3f s" % statistics.median(raw))
    for label, _ in builds:
        print("%-9s %.3f s  raw/this %.2f  CPU per GiB: peer %.2f s, client %.2f s  (wall: %s)" % (
            label, statistics.median(wall[label]), statistics.median(raw) / statistics.median(wall[label]),
            statistics.median(cpu[label]), statistics.median(ccpu[label]),
            " ".join("%.2f" % x for x in wall[label])))
    d.stop()


if __name__ == "__main__":
    main()
