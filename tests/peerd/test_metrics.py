#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-peerd's Prometheus metrics (issue 15 item 3): off by default; with
metrics_listen, GET /metrics passes `promtool check metrics` (Debian's
prometheus package) and its counters move: bytes served after a download, a
gRPC status code count after a NOT_FOUND, ticket checks, the directory's
reachability, process_* and p2p_build_info."""
import os
import re
import shutil
import subprocess
import unittest

import grpc
import requests

import p2ptest
from dirdtest import Dird
from test_serve import Peer, generate_stubs
from test_grpc_faces import generate as generate_faces


def value(text, name, **labels):
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$', line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return None


class Metrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.seed_pb2, cls.seed_grpc, cls.pb2, cls.pgrpc = generate_stubs()
        cls.faces, _ = generate_faces()
        cls.d = Dird()
        cls.d.register("met", "pw")
        cls.tok = cls.d.user("metcl", files=())
        cls.folder = p2ptest.tempdir()
        cls.text = "metrics\n" * 1000
        with open(os.path.join(cls.folder, "m.txt"), "w") as f:
            f.write(cls.text)
        cls.mport = p2ptest.free_port()
        cls.peer = Peer(cls.d, "met", "pw", cls.folder, "--metrics-listen", "127.0.0.1:%d" % cls.mport)
        p2ptest.wait_for(lambda: cls.d.req("GET", "/search", cls.tok, params={"file": "m.txt"}).status_code == 200,
                         what="indexed")
        cls.url = "http://127.0.0.1:%d/metrics" % cls.mport

    @classmethod
    def tearDownClass(cls):
        cls.peer.proc.stop()
        cls.d.stop()

    def scrape(self):
        r = requests.get(self.url, timeout=10)
        self.assertEqual(r.status_code, 200)
        self.assertTrue(r.headers["Content-Type"].startswith("text/plain"))
        return r.text

    @unittest.skipUnless(shutil.which("promtool"), "promtool (Debian package prometheus) is not installed")
    def test_promtool_accepts_it(self):
        r = subprocess.run(["promtool", "check", "metrics"], input=self.scrape(), capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_counters_move(self):
        before = self.scrape()
        served0 = value(before, "p2p_peer_bytes_served_total")
        self.assertIsNotNone(served0)
        self.assertEqual(value(before, "p2p_peer_directory_up"), 1)
        self.assertIsNotNone(value(before, "process_resident_memory_bytes"))
        self.assertIsNotNone(value(before, "p2p_build_info"))
        t = self.d.req("POST", "/tickets", self.tok, json={"peer": "met", "file": "m.txt"}).json()["ticket"]
        with grpc.insecure_channel(self.peer.target) as ch:
            got = self.seed_grpc.FileServiceStub(ch).DownloadFile(
                self.seed_pb2.FileRequest(file_name="m.txt"), metadata=[("authorization", "Bearer " + t)], timeout=10)
            self.assertEqual(got.file_content, self.text)
            with self.assertRaises(grpc.RpcError) as cm:
                self.faces["health_pb2_grpc"].HealthStub(ch).Check(self.faces["health_pb2"].HealthCheckRequest(
                    service="nope"), timeout=10)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
        after = self.scrape()
        self.assertEqual(value(after, "p2p_peer_bytes_served_total") - served0, len(self.text))
        self.assertGreaterEqual(value(after, "p2p_peer_ticket_checks_total", result="valid"), 1)
        self.assertEqual(value(after, "grpc_server_handled_total", grpc_service="FileService",
                               grpc_method="DownloadFile", grpc_code="OK")
                         - (value(before, "grpc_server_handled_total", grpc_service="FileService",
                                  grpc_method="DownloadFile", grpc_code="OK") or 0), 1)
        self.assertEqual(value(after, "grpc_server_handled_total", grpc_service="grpc.health.v1.Health",
                               grpc_method="Check", grpc_code="NotFound"), 1)
        self.assertGreaterEqual(value(after, "grpc_server_started_total", grpc_service="FileService",
                                      grpc_method="DownloadFile"), 1)

    def test_only_get_metrics(self):
        self.assertEqual(requests.get(self.url.replace("/metrics", "/other"), timeout=10).status_code, 404)
        self.assertEqual(requests.post(self.url, timeout=10).status_code, 405)


if __name__ == "__main__":
    p2ptest.run()
