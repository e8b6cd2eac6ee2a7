"""Helpers shared by the OpenFL 1.6 interop peers (openfl_client.py, openfl_server.py).

The tensor payload is deterministic so every side of a test (Python, Rust, C, Go)
can build and check it without exchanging anything: byte i of pattern(seed, n)
is (i*7 + seed) % 256.
"""

import json
import os
import sys
import threading

MIB = 1 << 20

# Well-known payload seeds: what the aggregator serves, what a collaborator uploads.
SEED_AGGREGATED = 1
SEED_UPLOADED = 2


def pattern(seed: int, n: int) -> bytes:
    """n bytes where byte i is (i*7 + seed) % 256 (period 256, so build by repetition)."""
    period = bytes((i * 7 + seed) % 256 for i in range(256))
    whole, rest = divmod(n, 256)
    return period * whole + period[:rest]


def named_tensor(name: str, data: bytes, round_number: int = 0, tags=()):
    """A base_pb2.NamedTensor as OpenFL's lossless NoCompressionPipeline would describe
    a flat uint8 array: one MetadataProto whose int_list is the shape [len(data)]."""
    from openfl.protocols import base_pb2

    return base_pb2.NamedTensor(
        name=name,
        round_number=round_number,
        lossless=True,
        report=False,
        tags=list(tags),
        transformer_metadata=[base_pb2.MetadataProto(int_list=[len(data)])],
        data_bytes=data,
    )


def describe_tensor(tensor, expected: bytes) -> dict:
    """JSON-able summary of a NamedTensor and whether its bytes equal `expected`."""
    return {
        "name": tensor.name,
        "round_number": tensor.round_number,
        "lossless": tensor.lossless,
        "report": tensor.report,
        "tags": list(tensor.tags),
        "int_list": [list(m.int_list) for m in tensor.transformer_metadata],
        "bytes": len(tensor.data_bytes),
        "match": tensor.data_bytes == expected,
    }


def cert_paths(certs_dir: str, name: str):
    """(cert, key) file paths for a certificate made by tests/certs/make_certs.sh."""
    return os.path.join(certs_dir, f"{name}.crt"), os.path.join(certs_dir, f"{name}.key")


def emit(obj: dict) -> None:
    """Print the one JSON result line on stdout."""
    print(json.dumps(obj, sort_keys=True), flush=True)


def fail(message: str, code: int = 1) -> None:
    """Exit non-zero with a message on stderr, from any thread."""
    print(f"{os.path.basename(sys.argv[0])}: {message}", file=sys.stderr, flush=True)
    os._exit(code)


def start_watchdog(seconds: float) -> None:
    """Kill the process after `seconds`, whatever it is blocked on (OpenFL's client
    retries some errors forever)."""
    timer = threading.Timer(seconds, fail, args=(f"timed out after {seconds:g} s", 124))
    timer.daemon = True
    timer.start()
