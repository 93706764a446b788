#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-peerd's gRPC health and server reflection (issue 15 item 2), with
clients generated at test time (python3-grpc-tools) from Debian's grpc-proto
protos: Check and Watch without a ticket, NOT_SERVING while the shared folder
is gone; reflection v1 and v1alpha list every service, and the services
rebuilt from its answers with python3-protobuf's descriptor pool equal the
protos in proto/."""
import importlib
import os
import queue
import subprocess
import sys
import threading
import unittest

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool

import p2ptest
from dirdtest import Dird
from test_serve import Peer

GRPC_PROTO = os.environ.get("GRPC_PROTO_DIR", "/usr/share/grpc-proto")
SERVICES = {"FileService", "p2p.v1.Peer", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"}


def generate():
    out = p2ptest.tempdir("p2p-faces-")
    protos = ["grpc/health/v1/health.proto", "grpc/reflection/v1/reflection.proto",
              "grpc/reflection/v1alpha/reflection.proto"]
    # Generated under grpc/... the modules would hide grpcio's own "grpc"
    # package: copy the protos verbatim to flat names (same packages).
    flat = {"health": protos[0], "reflection_v1": protos[1], "reflection_v1alpha": protos[2]}
    for name, path in flat.items():
        with open(os.path.join(GRPC_PROTO, path)) as src, open(os.path.join(out, name + ".proto"), "w") as dst:
            dst.write(src.read())
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", out, "--python_out", out,
                        "--grpc_python_out", out, os.path.join(out, name + ".proto")], check=True)
    # The reference: our own protos (and gRPC's), compiled here.
    ref = os.path.join(out, "ref.pb")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", os.path.join(p2ptest.SRCDIR, "proto"),
                    "-I", GRPC_PROTO, "--include_imports", "--descriptor_set_out", ref, "FileSharing.proto",
                    "p2p/v1/peer.proto"] + protos, check=True)
    sys.path.insert(0, out)
    mods = {name: importlib.import_module(name) for name in (
        "health_pb2", "health_pb2_grpc", "reflection_v1_pb2", "reflection_v1_pb2_grpc",
        "reflection_v1alpha_pb2", "reflection_v1alpha_pb2_grpc")}
    with open(ref, "rb") as f:
        fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    return mods, pool


class Faces(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mods, cls.ref = generate()
        cls.hpb = cls.mods["health_pb2"]
        cls.hgrpc = cls.mods["health_pb2_grpc"]
        cls.d = Dird()
        cls.d.register("faces", "pw")
        cls.tok = cls.d.user("facecl", files=())
        cls.folder = p2ptest.tempdir()
        with open(os.path.join(cls.folder, "x.txt"), "w") as f:
            f.write("x")
        cls.peer = Peer(cls.d, "faces", "pw", cls.folder)
        p2ptest.wait_for(lambda: cls.d.req("GET", "/search", cls.tok, params={"file": "x.txt"}).status_code == 200,
                         what="indexed")
        cls.ch = grpc.insecure_channel(cls.peer.target)

    @classmethod
    def tearDownClass(cls):
        cls.ch.close()
        cls.peer.proc.stop()
        cls.d.stop()

    def test_health_check_without_a_ticket(self):
        stub = self.hgrpc.HealthStub(self.ch)
        for service in ("", "p2p.v1.Peer", "FileService"):
            r = stub.Check(self.hpb.HealthCheckRequest(service=service), timeout=10)
            self.assertEqual(r.status, self.hpb.HealthCheckResponse.SERVING, service)
        for service in ("nope", "p2p.v1.Peer\0"):
            with self.assertRaises(grpc.RpcError) as cm:
                stub.Check(self.hpb.HealthCheckRequest(service=service), timeout=10)
            self.assertIn(cm.exception.code(), (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT))

    def test_health_watch_follows_the_folder(self):
        stub = self.hgrpc.HealthStub(self.ch)
        unknown = stub.Watch(self.hpb.HealthCheckRequest(service="nope"), timeout=30)
        self.assertEqual(next(unknown).status, self.hpb.HealthCheckResponse.SERVICE_UNKNOWN)
        unknown.cancel()
        watch = stub.Watch(self.hpb.HealthCheckRequest(service="p2p.v1.Peer"), timeout=30)
        seen = queue.Queue()

        def pump():
            try:
                for m in watch:
                    seen.put(m.status)
            except grpc.RpcError as e:
                seen.put(e.code())
        t = threading.Thread(target=pump)
        t.start()
        S = self.hpb.HealthCheckResponse
        try:
            self.assertEqual(seen.get(timeout=10), S.SERVING)
            away = self.folder + ".away"
            os.rename(self.folder, away)
            try:
                self.assertEqual(seen.get(timeout=10), S.NOT_SERVING)
                self.assertEqual(stub.Check(self.hpb.HealthCheckRequest(service=""), timeout=10).status,
                                 S.NOT_SERVING)
            finally:
                os.rename(away, self.folder)
            self.assertEqual(seen.get(timeout=10), S.SERVING)
        finally:
            watch.cancel()
            t.join(10)
        self.assertEqual(seen.get(timeout=10), grpc.StatusCode.CANCELLED)

    def reflect(self, version, requests):
        pb2 = self.mods["reflection_%s_pb2" % version]
        stub = self.mods["reflection_%s_pb2_grpc" % version].ServerReflectionStub(self.ch)
        return list(stub.ServerReflectionInfo(iter([pb2.ServerReflectionRequest(**r) for r in requests]),
                                              timeout=10))

    def test_reflection_rebuilds_every_service(self):
        for version in ("v1", "v1alpha"):
            listed = self.reflect(version, [{"list_services": ""}])[0]
            names = {s.name for s in listed.list_services_response.service}
            self.assertEqual(names, SERVICES, version)
            answers = self.reflect(version, [{"file_containing_symbol": n} for n in sorted(names)])
            pool = descriptor_pool.DescriptorPool()
            added = set()
            for a in answers:
                self.assertEqual(a.WhichOneof("message_response"), "file_descriptor_response", a)
                fds = [descriptor_pb2.FileDescriptorProto.FromString(b)
                       for b in a.file_descriptor_response.file_descriptor_proto]
                for fd in fds:
                    if fd.name not in added:
                        pool.Add(fd)
                        added.add(fd.name)
            for name in names:
                self.assert_same_service(pool.FindServiceByName(name), self.ref.FindServiceByName(name))

    def assert_same_service(self, got, want):
        self.assertEqual([m.name for m in got.methods], [m.name for m in want.methods], want.full_name)
        for gm, wm in zip(got.methods, want.methods):
            self.assertEqual((gm.input_type.full_name, gm.output_type.full_name),
                             (wm.input_type.full_name, wm.output_type.full_name))
            for gt, wt in ((gm.input_type, wm.input_type), (gm.output_type, wm.output_type)):
                self.assert_same_message(gt, wt)

    def assert_same_message(self, got, want):
        self.assertEqual([(f.name, f.number, f.type, f.label) for f in got.fields],
                         [(f.name, f.number, f.type, f.label) for f in want.fields], want.full_name)
        for gf, wf in zip(got.fields, want.fields):
            if wf.message_type and wf.message_type.full_name != want.full_name:
                self.assert_same_message(gf.message_type, wf.message_type)

    def test_reflection_errors_and_files(self):
        a, b, c, d = self.reflect("v1", [{"file_by_filename": "p2p/v1/peer.proto"},
                                         {"file_by_filename": "nope.proto"},
                                         {"file_containing_symbol": "p2p.v1.Nope"},
                                         {"file_containing_symbol": "p2p.v1.Peer.Read"}])
        fd = descriptor_pb2.FileDescriptorProto.FromString(a.file_descriptor_response.file_descriptor_proto[0])
        self.assertEqual((fd.name, fd.package), ("p2p/v1/peer.proto", "p2p.v1"))
        for err in (b, c):
            self.assertEqual(err.WhichOneof("message_response"), "error_response")
            self.assertEqual(err.error_response.error_code, grpc.StatusCode.NOT_FOUND.value[0])
        self.assertEqual(d.WhichOneof("message_response"), "file_descriptor_response")
        self.assertEqual(a.original_request.file_by_filename, "p2p/v1/peer.proto")


if __name__ == "__main__":
    p2ptest.run()
