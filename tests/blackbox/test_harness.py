#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The harness itself: free ports, temp dirs, and cleanup of what it started,
including a process that ignores SIGTERM and its children."""
import os
import signal
import socket
import subprocess
import sys
import unittest

import p2ptest


class Harness(unittest.TestCase):
    def test_free_port_is_bindable(self):
        port = p2ptest.free_port()
        self.assertTrue(1024 <= port <= 65535)
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))

    def test_stop_kills_stubborn_process_group(self):
        # A shell that ignores SIGTERM and has a child: stop() must take both.
        p = p2ptest.Process(["/bin/sh", "-c", "trap '' TERM; sleep 300 & wait"])
        p2ptest.wait_for(lambda: subprocess.run(["pgrep", "-g", str(p.pid)],
                                                capture_output=True).stdout.count(b"\n") >= 2,
                         what="child started")
        pgid = p.pid
        p.stop(timeout=0.5)
        self.assertFalse(p.alive())
        r = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True)
        self.assertEqual(r.stdout, b"", "processes left in the group")

    def test_cleanup_at_exit_after_failure(self):
        # A child interpreter starts a process, then fails; its atexit cleanup
        # must kill the process and remove its temp dir.
        code = ("import p2ptest,sys\n"
                "d=p2ptest.tempdir()\n"
                "p=p2ptest.Process(['sleep','300'])\n"
                "print(p.pid, d, flush=True)\n"
                "raise SystemExit(3)\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=dict(os.environ), timeout=20)
        self.assertEqual(r.returncode, 3)
        pid, d = r.stdout.split()
        self.assertFalse(os.path.exists(d))
        with self.assertRaises(ProcessLookupError):
            os.kill(int(pid), 0)

    def test_output_captured(self):
        p = p2ptest.Process(["/bin/sh", "-c", "echo hello; echo err >&2"])
        p.wait()
        out = p.output()
        self.assertIn("hello", out)
        self.assertIn("err", out)
        p.stop()

    def test_sanitizer_report_is_caught(self):
        p = p2ptest.Process(["/bin/sh", "-c", "echo '==1==ERROR: LeakSanitizer: detected memory leaks' >&2"])
        p.wait()
        before = len(p2ptest.sanitizer_reports)
        p.stop()
        self.assertEqual(len(p2ptest.sanitizer_reports), before + 1)
        self.assertIn("LeakSanitizer", p2ptest.sanitizer_reports.pop())

    def test_wait_for_times_out(self):
        with self.assertRaises(TimeoutError):
            p2ptest.wait_for(lambda: False, timeout=0.1, what="never")


if __name__ == "__main__":
    p2ptest.run()
