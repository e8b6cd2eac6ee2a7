"""Helpers shared by the OpenFL 1.6 interop peers (openfl_client.py, openfl_server.py,
openfl_fedavg_collaborator.py, openfl_director_peers.py).

The tensor payload is deterministic so every side of a test (Python, Rust, C, Go)
can build and check it without exchanging anything: byte i of pattern(seed, n)
is (i*7 + seed) % 256.

Every peer takes --port, --mode, --certs and --timeout (most also --host), like the
Rust peers in tests/interop/peers/; --certs is a directory made by tests/certs/make_certs.sh.
"""

import argparse
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


ALL_MODES = ("mtls", "tls", "insecure")


def parse_peer_args(doc, add_options, modes=ALL_MODES, host="localhost", timeout=120.0):
    """Parses a peer's command line: --host (unless host is None), --port, --mode
    (one of `modes`), --certs, the options `add_options(parser)` adds, and --timeout.
    --certs is required unless --mode is insecure."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    if host is not None:
        p.add_argument("--host", default=host)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=modes, required=True)
    p.add_argument("--certs", help="directory made by tests/certs/make_certs.sh")
    add_options(p)
    p.add_argument("--timeout", type=float, default=timeout, help="bound on the whole run")
    args = p.parse_args()
    if args.mode != "insecure" and not args.certs:
        p.error("--certs is required with --mode " + "/".join(m for m in modes if m != "insecure"))
    return args


def cert_paths(certs_dir: str, name: str):
    """(cert, key) file paths for a certificate made by tests/certs/make_certs.sh."""
    return os.path.join(certs_dir, f"{name}.crt"), os.path.join(certs_dir, f"{name}.key")


def tls_kwargs(mode: str, certs_dir, name=None) -> dict:
    """The TLS keyword arguments of OpenFL's gRPC clients and server (tls,
    root_certificate, certificate, private_key): none under "insecure"; else trust
    ca.crt and present the certificate `name` (none when name is None)."""
    if mode == "insecure":
        return {"tls": False, "root_certificate": None, "certificate": None, "private_key": None}
    cert, key = cert_paths(certs_dir, name) if name is not None else (None, None)
    return {"tls": True, "root_certificate": os.path.join(certs_dir, "ca.crt"),
            "certificate": cert, "private_key": key}


def aggregator_client_kwargs(args, cert_name: str) -> dict:
    """Keyword arguments of OpenFL's AggregatorGRPCClient from a collaborator's
    command line: under mTLS it presents the certificate `cert_name`, under one-way
    TLS ("tls", disable_client_auth) none."""
    return {
        "agg_addr": args.host,
        "agg_port": args.port,
        "disable_client_auth": args.mode == "tls",
        **tls_kwargs(args.mode, args.certs, cert_name if args.mode == "mtls" else None),
        "aggregator_uuid": args.aggregator_uuid,
        "federation_uuid": args.federation_uuid,
    }


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
