"""Writes the fuzz corpora's seeds from real OpenFL 1.6 traffic.

Run with the interop venv (tests/interop/setup_venv.sh):

    target/interop-venv/bin/python tests/fuzz/seeds/make_seeds.py tests/fuzz/corpus

OpenFL's own code builds every message: its `AggregatorGRPCClient` (the
collaborator's transport) makes the request headers and the
SendLocalTaskResults stream (`openfl.protocols.utils.proto_to_datastream`),
its `Collaborator.nparray_to_named_tensor` with the `TensorCodec` of the
default `NoCompressionPipeline` encodes the tensors, and its
`DirectorClient` makes the SetNewExperiment stream. The stubs are replaced
by recorders, so nothing is sent: each seed is the gRPC request body (or the
message) a real OpenFL 1.6 peer would send.

Names match tests/fuzz/src/lib.rs (`federation`). The output is
deterministic (fixed random seed) except the TLS seed, whose keys openssl
makes afresh.
"""

import hashlib
import os
import struct
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
from openfl.component.collaborator.collaborator import Collaborator
from openfl.pipelines import NoCompressionPipeline, TensorCodec
from openfl.protocols import aggregator_pb2, base_pb2, director_pb2, utils
from openfl.transport import AggregatorGRPCClient
from openfl.transport.grpc.director_client import DirectorClient
from openfl.utilities import TensorKey

AGGREGATOR_UUID = "aggregator_plan/plan.yaml"
FEDERATION_UUID = "fuzz_federation_9c0ffee1"
COLLABORATORS = ["one", "two"]
MODEL = {"dense/kernel:0": (4, 2), "dense/bias:0": (2,)}


def grpc_body(messages):
    """The HTTP/2 DATA of a gRPC call: each message length-prefixed."""
    out = b""
    for m in messages:
        data = m.SerializeToString()
        out += b"\x00" + struct.pack(">I", len(data)) + data
    return out


class Recorder:
    """Stands in for a gRPC stub: records requests, answers like our server."""

    def __init__(self):
        self.calls = []

    def _header(self, request_header):
        return aggregator_pb2.MessageHeader(
            sender=AGGREGATOR_UUID,
            receiver=request_header.sender,
            federation_uuid=FEDERATION_UUID,
            single_col_cert_common_name=request_header.single_col_cert_common_name,
        )

    def GetTasks(self, request):
        self.calls.append(("GetTasks", [request]))
        return aggregator_pb2.GetTasksResponse(header=self._header(request.header), sleep_time=1)

    def SendLocalTaskResults(self, stream):
        chunks = list(stream)
        self.calls.append(("SendLocalTaskResults", chunks))
        results = utils.datastream_to_proto(aggregator_pb2.TaskResults(), chunks)
        return aggregator_pb2.SendLocalTaskResultsResponse(header=self._header(results.header))


def collaborator_codec():
    """What `Collaborator.nparray_to_named_tensor` reads from `self`."""
    return types.SimpleNamespace(tensor_codec=TensorCodec(NoCompressionPipeline()), delta_updates=False)


def named_tensor(name, collaborator, round_number, report, tags, array):
    key = TensorKey(name, collaborator, round_number, report, tags)
    return Collaborator.nparray_to_named_tensor(collaborator_codec(), key, np.asarray(array, dtype=np.float32))


def task_tensors(collaborator, round_number, task, rng):
    """The tensors OpenFL's collaborator uploads after `task`."""
    if task == "train":
        tensors = [
            named_tensor(n, collaborator, round_number + 1, False, ("trained",), rng.standard_normal(s))
            for n, s in MODEL.items()
        ]
        return tensors + [named_tensor("loss", collaborator, round_number, True, ("metric",), rng.random())]
    suffix = "validate_local" if task.startswith("locally") else "validate_agg"
    return [named_tensor("acc", collaborator, round_number, True, ("metric", suffix), rng.random())]


def client(single_cn=""):
    c = AggregatorGRPCClient(
        agg_addr="127.0.0.1",
        agg_port=1,
        tls=False,
        disable_client_auth=False,
        root_certificate=None,
        certificate=None,
        private_key=None,
        aggregator_uuid=AGGREGATOR_UUID,
        federation_uuid=FEDERATION_UUID,
        single_col_cert_common_name=single_cn,
    )
    c.stub = Recorder()
    # OpenFL reconnects around every call (a fresh channel and stub): keep
    # the recorder instead.
    c.reconnect = lambda: None
    c.disconnect = lambda: None
    return c


def write(out, target, name, data):
    path = out / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def upload_seeds(out, rng):
    """SendLocalTaskResults bodies, TaskResults' tensors, request headers."""
    tasks = ["aggregated_model_validation", "train", "locally_tuned_model_validation"]
    # OpenFL's chunk size is 2 MiB; smaller ones give multi-chunk seeds from
    # the same function (proto_to_datastream's max_buffer_size).
    chunkings = {"2MiB": 2 * 1024 * 1024, "64B": 64, "7B": 7}
    original = utils.proto_to_datastream
    for label, size in chunkings.items():
        utils.proto_to_datastream = lambda p, log, size=size: original(p, log, max_buffer_size=size)
        for collaborator in COLLABORATORS:
            c = client()
            for task in tasks:
                if label != "2MiB" and task != "train":
                    continue
                c.send_local_task_results(collaborator, 0, task, 60, task_tensors(collaborator, 0, task, rng))
            for name, chunks in c.stub.calls:
                task = utils.datastream_to_proto(aggregator_pb2.TaskResults(), chunks).task_name
                write(out, "stream_task_results", f"openfl-{collaborator}-{task}-{label}", grpc_body(chunks))
    utils.proto_to_datastream = original

    for collaborator in COLLABORATORS:
        for task in tasks:
            for t in task_tensors(collaborator, 0, task, rng):
                write(out, "tensor_codec", f"openfl-{collaborator}-{task}-{t.name.replace('/', '_').replace(':', '_')}", t.SerializeToString())
    scalar = named_tensor("acc", "one", 0, True, ("metric",), np.float32(0.5))
    write(out, "tensor_codec", "openfl-scalar", scalar.SerializeToString())
    empty = named_tensor("empty", "one", 0, False, ("trained",), np.zeros((0, 3)))
    write(out, "tensor_codec", "openfl-empty-0x3", empty.SerializeToString())

    # Request headers as OpenFL's client sets them (GetTasks), with the flag
    # byte the header_checks target reads first (which federation fields
    # agree with the header).
    for single_cn in ["", "shared-cert"]:
        for collaborator in COLLABORATORS + ["mallory"]:
            c = client(single_cn)
            c.get_tasks(collaborator)
            header = c.stub.calls[-1][1][0].header.SerializeToString()
            for flags in [0x00, 0x0F, 0x14]:
                write(out, "header_checks", f"openfl-{collaborator}-cn{len(single_cn)}-{flags:02x}", bytes([flags]) + header)


def director_seeds(out, rng):
    """SetNewExperiment bodies from OpenFL's DirectorClient."""
    for name, size, cols in [
        ("mnist_experiment", 100, ["one", "two"]),
        ("tb_experiment", 3000, ["one"]),
        ("pytorch_kvasir_unet", 10, ["env_one", "env_two", "env_one"]),
    ]:
        client = DirectorClient(
            client_id="frontend",
            director_host="127.0.0.1",
            director_port=1,
            tls=False,
            root_certificate=None,
            private_key=None,
            certificate=None,
        )
        recorded = []
        client.stub = types.SimpleNamespace(
            SetNewExperiment=lambda gen: recorded.extend(gen) or director_pb2.SetNewExperimentResponse(accepted=True)
        )
        with tempfile.TemporaryDirectory() as tmp:
            arch = Path(tmp) / "workspace.zip"
            arch.write_bytes(rng.bytes(size))
            tensors = {n: rng.standard_normal(s).astype(np.float32) for n, s in MODEL.items()}
            client.set_new_experiment(name, cols, str(arch), initial_tensor_dict=tensors)
        write(out, "director_archive_names", f"openfl-{name}", grpc_body(recorded))


def ffi_seeds(out, rng):
    """OpenFL tensors in the ffi_arguments target's operation format."""

    def cstr(text, flags=0):
        if flags & 0x80:  # NULL: no bytes follow
            return bytes([flags])
        data = text.encode()
        return bytes([flags, len(data)]) + data

    def array(items, flags=0):
        return bytes([flags | len(items)]) + b"".join(items)

    ops = b""
    ops += b"\x03" + cstr(AGGREGATOR_UUID) + cstr(FEDERATION_UUID) + cstr("", 0x80)
    for c in COLLABORATORS:
        ops += b"\x00" + cstr(c)
    for name, shape in MODEL.items():
        values = rng.standard_normal(shape).astype(np.float32)
        ops += b"\x02" + cstr(name) + array([bytes([d]) for d in shape]) + array(
            [struct.pack("<f", v) for v in values.ravel()]
        )
    write(out, "ffi_arguments", "openfl-fedavg-options", ops)

    # The tensors OpenFL's collaborator sends, as tensor views.
    models = b""
    for t in task_tensors("one", 0, "train", rng):
        tags = array([cstr(tag) for tag in t.tags])
        md = t.transformer_metadata[0]
        metadata = array(
            [array([struct.pack("<i", d) for d in md.int_list]) + array([]) + array([])]
        )
        data = array([bytes([b]) for b in t.data_bytes[:32]])
        view = cstr(t.name) + tags + metadata + data + struct.pack("<i", t.round_number) + bytes([t.lossless | t.report << 1])
        models += b"\x06" + cstr("mnist_experiment") + array([view]) + b"\x00"
    write(out, "ffi_arguments", "openfl-tensor-views", models)
    shapes = b"\x05" + array([cstr("28"), cstr("28")]) + b"\x00" + b"\x05" + array([cstr("1")]) + b"\x01"
    write(out, "ffi_arguments", "openfl-shard-shapes", shapes)

    # A collaborator's TLS documents (as tests/certs/make_certs.sh makes
    # them, EC keys to keep the seed small) passed as PEM bytes.
    def pem(data):
        return b"\x00" + struct.pack("<H", len(data)) + data

    with tempfile.TemporaryDirectory() as tmp:
        ca_key, ca, key, csr, cert = (os.path.join(tmp, n) for n in ["ca.key", "ca.crt", "one.key", "one.csr", "one.crt"])
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)
        run("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-subj", "/CN=fuzz CA", "-days", "3650")
        run("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=one")
        run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-set_serial", "1", "-out", cert, "-days", "3650")
        docs = [Path(p).read_bytes() for p in (ca, cert, key)]
    client = b"\x07" + cstr("localhost") + struct.pack("<H", 50051) + b"\x01" + cstr("aggregator")
    write(out, "ffi_arguments", "tls-client-pem", client + b"".join(pem(d) for d in docs))


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fuzz/corpus")
    rng = np.random.default_rng(1234)
    upload_seeds(out, rng)
    director_seeds(out, rng)
    ffi_seeds(out, rng)
    for target in sorted(p for p in out.iterdir() if p.is_dir()):
        files = list(target.iterdir())
        print(f"{target.name}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")


if __name__ == "__main__":
    main()
