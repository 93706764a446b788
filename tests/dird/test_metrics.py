#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-dird's /metrics as Prometheus reads it: `promtool check metrics`
(Debian's prometheus package) passes on a real scrape, which includes the
process_* metrics and p2p_build_info of src/common/procmetrics.c."""
import os
import re
import subprocess
import time
import unittest

import p2ptest
from dirdtest import Dird


def promtool(text):
    return subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)


def samples(text):
    """{name{labels}: value} of the sample lines."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


class Metrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Dird()
        cls.d.user("metricsuser", files=("m.txt",))

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def scrape(self):
        r = self.d.req("GET", "/metrics")
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.headers["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")
        return r.text

    def test_promtool_accepts_the_scrape(self):
        # Requests of every kind first, so every family has samples.
        for path in ("/healthz", "/nope", "/openapi.json"):
            self.d.req("GET", path)
        self.d.req("HEAD", "/healthz")
        self.d.req("PUT", "/healthz")
        text = self.scrape()
        r = promtool(text)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout + r.stderr, "")
        # promtool does fail on what it should: a counter without _total.
        bad = promtool(text + "# HELP p2p_dird_bad x\n# TYPE p2p_dird_bad counter\np2p_dird_bad 1\n")
        self.assertNotEqual(bad.returncode, 0)

    def test_process_and_build_info(self):
        s = samples(self.scrape())
        for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
                     "process_open_fds", "process_max_fds", "process_start_time_seconds"):
            self.assertIn(name, s)
        self.assertGreater(s["process_resident_memory_bytes"], 1 << 20)
        self.assertGreater(s["process_virtual_memory_bytes"], s["process_resident_memory_bytes"])
        self.assertGreater(s["process_cpu_seconds_total"], 0)
        # The process's own descriptor count, from /proc.
        fds = len(os.listdir("/proc/%d/fd" % self.d.proc.pid))
        self.assertLessEqual(abs(s["process_open_fds"] - fds), 2)
        # The start time as the kernel has it: boot time + ticks after boot.
        with open("/proc/stat") as f:
            btime = int(re.search(r"^btime (\d+)$", f.read(), re.M).group(1))
        with open("/proc/%d/stat" % self.d.proc.pid) as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        started = btime + ticks / os.sysconf("SC_CLK_TCK")
        self.assertLess(abs(s["process_start_time_seconds"] - started), 2)
        self.assertLessEqual(s["process_start_time_seconds"], time.time())
        version = p2ptest_version()
        self.assertEqual(s.get('p2p_build_info{program="p2p-dird",version="%s"}' % version), 1.0)

    def test_cpu_counter_grows(self):
        before = samples(self.scrape())["process_cpu_seconds_total"]
        for _ in range(200):
            self.d.req("GET", "/openapi.json")
        after = samples(self.scrape())["process_cpu_seconds_total"]
        self.assertGreater(after, before)


def p2ptest_version():
    r = subprocess.run([p2ptest.binary("p2p-dird"), "--version"], capture_output=True, text=True, timeout=10)
    return re.match(r"p2p-dird (\S+)", r.stdout).group(1)


if __name__ == "__main__":
    p2ptest.run()
