#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-peerd's byte totals across restarts (STATE_DIR/totals, metrics.c):
a file that is not two lines "bytes_up N" and "bytes_down N" (garbage,
truncated, empty, negative, out of range) does not stop the peer: it says so
in one warning, counts from 0 and writes a good file at the next save."""
import os
import unittest

import p2ptest
from test_control import connect

WARNING = "is not a byte totals file; counting from 0"


class Totals(unittest.TestCase):
    def status_of_peer(self, state):
        """Run a peer with STATE_DIR state, read Status, stop it: (status, exit status, process)."""
        base = os.path.dirname(state)
        folder, sock, port = os.path.join(base, "files"), os.path.join(base, "ctl.sock"), p2ptest.free_port()
        os.mkdir(folder)
        # The directory is a closed loopback port: totals need none.
        proc = p2ptest.Process([p2ptest.binary("p2p-peerd"), "--name", "peer1",
                                "--directory", "http://127.0.0.1:%d" % p2ptest.free_port(),
                                "--folder", folder, "--listen", "127.0.0.1:%d" % port, "--port", str(port),
                                "--ip", "127.0.0.1", "--control-socket", sock, "--state-dir", state])
        try:
            v = p2ptest.wait_for(lambda: connect(sock), what="control socket")
            try:
                st = v.call("Status")["parameters"]
            finally:
                v.close()
        finally:
            rc = proc.stop()
        return st, rc, proc

    def start(self, content):
        """Start a peer whose STATE_DIR/totals holds content (bytes; None:
        no file), read its totals with Status, stop it cleanly; return
        (bytes_up_total, bytes_down_total, its log, the file after the stop)."""
        state = os.path.join(p2ptest.tempdir("p2p-totals-"), "state")
        os.mkdir(state, 0o700)
        path = os.path.join(state, "totals")
        if content is not None:
            with open(path, "wb") as f:
                f.write(content)
        st, rc, proc = self.status_of_peer(state)
        self.assertEqual(rc, 0, proc.output())
        with open(path, "rb") as f:
            saved = f.read()
        self.assertFalse(os.path.exists(path + ".tmp"))
        return st["bytes_up_total"], st["bytes_down_total"], proc.output(), saved

    def test_good_file_and_none(self):
        # The control: a good file is read (so the cases below can fail).
        up, down, log, saved = self.start(b"bytes_up 5\nbytes_down 7\n")
        self.assertEqual((up, down), (5, 7))
        self.assertNotIn("byte totals", log)
        self.assertEqual(saved, b"bytes_up 5\nbytes_down 7\n")
        # Without the final newline, as an editor may leave it.
        up, down, log, _ = self.start(b"bytes_up 0\nbytes_down 4611686018427387904")
        self.assertEqual((up, down), (0, 2 ** 62))
        self.assertNotIn("byte totals", log)
        # No file yet: 0 without a word.
        up, down, log, saved = self.start(None)
        self.assertEqual((up, down), (0, 0))
        self.assertNotIn("byte totals", log)
        self.assertEqual(saved, b"bytes_up 0\nbytes_down 0\n")

    def test_malformed(self):
        cases = {
            "empty": b"",
            "garbage": b"hello world\n",
            "binary": bytes(range(256)) * 40,
            "only the first line": b"bytes_up 12\n",
            "truncated second line": b"bytes_up 12\nbytes_do",
            "truncated number": b"bytes_up 12\nbytes_down \n",
            "negative": b"bytes_up -5\nbytes_down 7\n",
            "negative down": b"bytes_up 5\nbytes_down -7\n",
            "plus sign": b"bytes_up +5\nbytes_down 7\n",
            "not decimal": b"bytes_up 0x10\nbytes_down 7\n",
            "trailing text": b"bytes_up 5 bytes\nbytes_down 7\n",
            "swapped": b"bytes_down 7\nbytes_up 5\n",
            "CRLF": b"bytes_up 5\r\nbytes_down 7\r\n",
            "above uint64": b"bytes_up 18446744073709551616\nbytes_down 7\n",
            "huge": b"bytes_up " + b"9" * 1000 + b"\nbytes_down 7\n",
            # Status says totals as JSON integers (int64): more would be
            # negative there, so past 2^62 (4 EiB) a file is not believed.
            "uint64 max": b"bytes_up 18446744073709551615\nbytes_down 7\n",
            "int64 max": b"bytes_up 5\nbytes_down 9223372036854775807\n",
            "above 2^62": b"bytes_up 4611686018427387905\nbytes_down 7\n",
            # A first line longer than the line buffer is not read as two.
            "long first line": b"bytes_up " + b"0" * 54 + b"bytes_down 5\nbytes_down 7\n",
        }
        wrong = []
        for what, content in cases.items():
            up, down, log, saved = self.start(content)
            if (up, down) != (0, 0) or log.count(WARNING) != 1 or "totals " + WARNING not in log or \
                    saved != b"bytes_up 0\nbytes_down 0\n":
                wrong.append((what, up, down, saved, log))
        self.assertEqual(wrong, [])

    def test_unreadable(self):
        # A directory where the file should be: read fails, the peer starts
        # and counts from 0; the save at the stop cannot replace it and says so.
        state = os.path.join(p2ptest.tempdir("p2p-totals-"), "state")
        os.makedirs(os.path.join(state, "totals", "x"))
        st, rc, proc = self.status_of_peer(state)
        log = proc.output()
        self.assertEqual(rc, 0, log)
        self.assertEqual((st["bytes_up_total"], st["bytes_down_total"]), (0, 0))
        self.assertIn("counting from 0", log)
        self.assertIn("cannot save the byte totals", log)
        self.assertEqual(os.listdir(state).count("totals.tmp"), 0)


if __name__ == "__main__":
    p2ptest.run()
