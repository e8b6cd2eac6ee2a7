"""Interop of our Rust aggregator transport with real OpenFL 1.6 peers.

Peers (all deterministic: the aggregator serves pattern(1, size), the
collaborator uploads pattern(2, size), see common.py):
- openfl_client.py: OpenFL 1.6's own AggregatorGRPCClient;
- openfl_server.py: OpenFL 1.6's own AggregatorGRPCServer;
- interop_aggregator / interop_collaborator: our AggregatorServer /
  AggregatorClient (peers/aggregator.rs, peers/collaborator.rs, built by
  `cargo build --release --examples`).

Run: target/interop-venv/bin/python -m pytest tests/interop -v
(OFL_INTEROP_SIZE_MIB shrinks the 64 MiB tensors; -s is not needed: rates and
codes are printed in the terminal summary.)
"""

import json
import time
import uuid

import pytest

from conftest import (
    EXIT_TIMEOUT, HERE, PEER_WATCHDOG, SIZE_MIB, START_TIMEOUT, free_port,
)

OPENFL_CLIENT = HERE / "openfl_client.py"
OPENFL_SERVER = HERE / "openfl_server.py"
MIB = 1 << 20
SIZE = int(SIZE_MIB * MIB)
SMALL_MIB = 1  # payload of the refusal tests, which end with an honest round trip

OPENFL, OURS = "OpenFL", "ours"

EXPECTED_TASKS = [{"name": "train", "function_name": "train_task", "task_type": "train",
                   "apply_local": False}]


def uuids():
    return str(uuid.uuid4()), str(uuid.uuid4())


def tls_args(mode, certs):
    return [] if mode == "insecure" else ["--certs", certs]


# ---------------------------------------------------------------------------
# Starting peers
# ---------------------------------------------------------------------------

def start_our_aggregator(peers, binaries, mode, certs, agg, fed, size_mib=SIZE_MIB, extra=()):
    """Our AggregatorServer on a port it picks; returns (peer, port)."""
    peer = peers.start("interop_aggregator", [
        binaries["interop_aggregator"], "--mode", mode, *tls_args(mode, certs),
        "--host", "[::]", "--port", "0", "--collaborators", "col1,col2",
        "--aggregator-uuid", agg, "--federation-uuid", fed,
        "--size-mib", size_mib, "--timeout", PEER_WATCHDOG, *extra])
    return peer, peer.wait_json("listening", START_TIMEOUT)["listening"]


def start_openfl_server(peers, python, tmp_path, mode, certs, agg, fed, size_mib=SIZE_MIB):
    """OpenFL's AggregatorGRPCServer; returns (peer, port, rounds_file)."""
    rounds = tmp_path / "openfl_server_rounds.json"
    for attempt in range(3):  # the free port may be taken between probe and bind
        port = free_port()
        peer = peers.start(f"openfl_server-{attempt}", [
            python, OPENFL_SERVER, "--mode", mode, *tls_args(mode, certs),
            "--port", port, "--collaborators", "col1,col2",
            "--aggregator-uuid", agg, "--federation-uuid", fed,
            "--size-mib", size_mib, "--rounds-file", rounds, "--timeout", PEER_WATCHDOG])
        try:
            peer.wait_json("listening", START_TIMEOUT)
            return peer, port, rounds
        except pytest.fail.Exception:
            if attempt == 2:
                raise
            peer.kill()


def collaborator_argv(program, port, mode, certs, agg, fed, size_mib=SIZE_MIB, extra=()):
    """The command line of collaborator col1 run by `program` (a list): OpenFL's
    client script and ours take the same options."""
    return [*program, "--host", "localhost", "--port", port, "--mode", mode,
            *tls_args(mode, certs), "--collaborator", "col1",
            "--aggregator-uuid", agg, "--federation-uuid", fed,
            "--size-mib", size_mib, "--timeout", PEER_WATCHDOG, *extra]


def openfl_client_argv(python, *args, **kwargs):
    return collaborator_argv([python, OPENFL_CLIENT], *args, **kwargs)


def our_collaborator_argv(binaries, *args, **kwargs):
    return collaborator_argv([binaries["interop_collaborator"]], *args, **kwargs)


def run_ok(peers, name, argv):
    status, result, peer = peers.run(name, argv)
    assert status == 0 and result is not None, f"{name} failed\n" + peer.describe()
    return result


# ---------------------------------------------------------------------------
# What both sides must have seen
# ---------------------------------------------------------------------------

def check_client_result(result, mode, size):
    """A collaborator's own view: tasks, and the downloaded tensor byte-exact."""
    assert result["mode"] == mode
    assert result["tasks"] == EXPECTED_TASKS
    assert (result["round_number"], result["sleep_time"], result["quit"]) == (0, 0, False)
    assert result["tensor"] == {
        "name": "model_weights", "round_number": 0, "lossless": True, "report": False,
        "tags": ["model"], "int_list": [[size]], "bytes": size, "match": True,
    }
    assert result["download"]["bytes"] == size
    assert result["upload"]["bytes"] == size


def check_server_record(seen, size):
    """An aggregator's record: who asked, what was asked, and the upload byte-exact."""
    assert seen["get_tasks"] == ["col1"]
    assert seen["tensor_requests"] == [{
        "collaborator": "col1", "tensor_name": "model_weights", "round_number": 0,
        "report": False, "tags": ["model"], "require_lossless": True,
    }]
    assert len(seen["results"]) == 1
    got = seen["results"][0]
    assert (got["collaborator"], got["round_number"], got["task_name"], got["data_size"]) == (
        "col1", 0, "train", 100)
    assert got["tensors"] == [{
        "name": "model_weights", "round_number": 0, "lossless": True, "report": False,
        "tags": ["trained"], "int_list": [[size]], "bytes": size, "match": True,
    }]


def record_rates(report, pair, mode, result):
    report.rate(pair, mode, "download", result["download"]["mib_s"])
    report.rate(pair, mode, "upload", result["upload"]["mib_s"])


def finish_our_aggregator(server):
    """Our aggregator exits 0 after one upload and prints what it received."""
    received = server.wait_json("received", EXIT_TIMEOUT)["received"]
    assert server.wait_exit(EXIT_TIMEOUT) == 0, server.describe()
    return received


def finish_openfl_server(server, rounds):
    """OpenFL's server exits 0 about a second after the upload (it polls every 5 s)."""
    assert server.wait_exit(EXIT_TIMEOUT) == 0, server.describe()
    return json.loads(rounds.read_text())


# ---------------------------------------------------------------------------
# Round trips: GetTasks, SIZE MiB down, SIZE MiB up
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["mtls", "tls", "insecure"])
def test_openfl_client_to_our_server(mode, peers, python, binaries, certs, report):
    """OpenFL's AggregatorGRPCClient against our AggregatorServer. In "tls" mode
    (one-way: OpenFL's client with disable_client_auth presents no certificate)
    our server identifies the collaborator by its header sender; OpenFL's own
    server cannot serve that mode."""
    agg, fed = uuids()
    server, port = start_our_aggregator(peers, binaries, mode, certs, agg, fed)
    result = run_ok(peers, "openfl_client",
                    openfl_client_argv(python, port, mode, certs, agg, fed))
    check_client_result(result, mode, SIZE)
    check_server_record(finish_our_aggregator(server), SIZE)
    record_rates(report, f"{OPENFL} -> {OURS}", mode, result)


@pytest.mark.parametrize("mode", ["mtls", "insecure"])
def test_our_client_to_openfl_server(mode, peers, python, binaries, certs, report, tmp_path):
    """Our AggregatorClient against OpenFL's AggregatorGRPCServer."""
    agg, fed = uuids()
    server, port, rounds = start_openfl_server(peers, python, tmp_path, mode, certs, agg, fed)
    result = run_ok(peers, "interop_collaborator",
                    our_collaborator_argv(binaries, port, mode, certs, agg, fed))
    check_client_result(result, mode, SIZE)
    check_server_record(finish_openfl_server(server, rounds), SIZE)
    record_rates(report, f"{OURS} -> {OPENFL}", mode, result)


@pytest.mark.parametrize("mode", ["mtls", "insecure"])
def test_openfl_client_to_openfl_server(mode, peers, python, certs, report, tmp_path):
    """The baseline: the same OpenFL scripts against each other, in the same run."""
    agg, fed = uuids()
    server, port, rounds = start_openfl_server(peers, python, tmp_path, mode, certs, agg, fed)
    result = run_ok(peers, "openfl_client",
                    openfl_client_argv(python, port, mode, certs, agg, fed))
    check_client_result(result, mode, SIZE)
    check_server_record(finish_openfl_server(server, rounds), SIZE)
    record_rates(report, f"{OPENFL} -> {OPENFL}", mode, result)


@pytest.mark.parametrize("mode", ["mtls", "tls"])
def test_our_client_to_our_server(mode, peers, binaries, certs, report):
    """Ours against ours through the same Rust peers, for the table."""
    agg, fed = uuids()
    server, port = start_our_aggregator(peers, binaries, mode, certs, agg, fed)
    result = run_ok(peers, "interop_collaborator",
                    our_collaborator_argv(binaries, port, mode, certs, agg, fed))
    check_client_result(result, mode, SIZE)
    check_server_record(finish_our_aggregator(server), SIZE)
    record_rates(report, f"{OURS} -> {OURS}", mode, result)


# ---------------------------------------------------------------------------
# Refusals under mTLS
# ---------------------------------------------------------------------------

AUTH_DELAY_MS = 1000


def test_spoofed_sender_refused_by_our_server(peers, python, binaries, certs, report):
    """OpenFL's client with col1's certificate claims to be col2: UNAUTHENTICATED
    (after at most the configured random delay); the server keeps serving, and an
    honest round trip then succeeds."""
    agg, fed = uuids()
    server, port = start_our_aggregator(peers, binaries, "mtls", certs, agg, fed, SMALL_MIB,
                                        extra=["--auth-delay-ms", AUTH_DELAY_MS])
    t0 = time.monotonic()
    status, result, peer = peers.run("openfl_client-spoof", openfl_client_argv(
        python, port, "mtls", certs, agg, fed, SMALL_MIB,
        extra=["--spoof", "col2", "--rpc-timeout", 30]))
    elapsed = time.monotonic() - t0
    assert status == 0 and result, peer.describe()
    report.code("OpenFL client, col1 cert claiming col2 -> our server", result["code"],
                result["details"])
    assert result["code"] == "UNAUTHENTICATED", result
    assert "col2" in result["details"]
    assert elapsed < 30, f"refusal took {elapsed:.1f} s"

    honest = run_ok(peers, "openfl_client", openfl_client_argv(
        python, port, "mtls", certs, agg, fed, SMALL_MIB))
    check_client_result(honest, "mtls", SMALL_MIB * MIB)
    check_server_record(finish_our_aggregator(server), SMALL_MIB * MIB)


def test_spoofed_sender_refused_by_openfl_server(peers, python, binaries, certs, report, tmp_path):
    """Our client with col1's certificate claims to be col2: OpenFL's server answers
    UNAUTHENTICATED (after its random delay of up to 5 s), which we do not retry."""
    agg, fed = uuids()
    server, port, rounds = start_openfl_server(peers, python, tmp_path, "mtls", certs, agg, fed,
                                               SMALL_MIB)
    t0 = time.monotonic()
    status, result, peer = peers.run("interop_collaborator-spoof", our_collaborator_argv(
        binaries, port, "mtls", certs, agg, fed, SMALL_MIB, extra=["--spoof", "col2"]))
    elapsed = time.monotonic() - t0
    assert status == 0 and result, peer.describe()
    report.code("our client, col1 cert claiming col2 -> OpenFL server", result["code"],
                result["details"])
    assert result["code"] == "UNAUTHENTICATED", result
    assert elapsed < 15, f"refusal took {elapsed:.1f} s (retried?)"

    honest = run_ok(peers, "interop_collaborator", our_collaborator_argv(
        binaries, port, "mtls", certs, agg, fed, SMALL_MIB))
    check_client_result(honest, "mtls", SMALL_MIB * MIB)
    check_server_record(finish_openfl_server(server, rounds), SMALL_MIB * MIB)


FOREIGN_RPC_TIMEOUT = 15


def test_foreign_ca_openfl_client_refused_by_our_server(peers, python, binaries, certs, report):
    """OpenFL's client presents a CN=col1 certificate from a foreign CA: the
    handshake is refused (rustls sends an UnknownCA alert); OpenFL sees a failure
    within its rpc timeout, and the server keeps serving honest peers."""
    agg, fed = uuids()
    server, port = start_our_aggregator(peers, binaries, "mtls", certs, agg, fed, SMALL_MIB)
    t0 = time.monotonic()
    status, result, peer = peers.run("openfl_client-foreign", openfl_client_argv(
        python, port, "mtls", certs, agg, fed, SMALL_MIB,
        extra=["--cert", "foreign", "--spoof", "col1", "--rpc-timeout", FOREIGN_RPC_TIMEOUT]))
    elapsed = time.monotonic() - t0
    assert status == 0 and result, peer.describe()
    report.code("OpenFL client, foreign-CA cert -> our server", result["code"], result["details"])
    assert result["code"] != "OK", result
    assert elapsed < FOREIGN_RPC_TIMEOUT + 15, f"took {elapsed:.1f} s"

    honest = run_ok(peers, "openfl_client", openfl_client_argv(
        python, port, "mtls", certs, agg, fed, SMALL_MIB))
    check_client_result(honest, "mtls", SMALL_MIB * MIB)
    check_server_record(finish_our_aggregator(server), SMALL_MIB * MIB)


FOREIGN_RETRY_DEADLINE = 5


def test_foreign_ca_our_client_refused_by_openfl_server(peers, python, binaries, certs, report,
                                                        tmp_path):
    """Our client presents a foreign-CA certificate to OpenFL's server. gRPC C-core
    closes the connection after the handshake without a TLS alert, so our client
    cannot tell it from a dropped connection: it retries until its deadline and
    reports RETRIES_EXHAUSTED (against our server it gets TLS at once)."""
    agg, fed = uuids()
    server, port, rounds = start_openfl_server(peers, python, tmp_path, "mtls", certs, agg, fed,
                                               SMALL_MIB)
    t0 = time.monotonic()
    status, result, peer = peers.run("interop_collaborator-foreign", our_collaborator_argv(
        binaries, port, "mtls", certs, agg, fed, SMALL_MIB,
        extra=["--cert", "foreign", "--spoof", "col1",
               "--retry-deadline", FOREIGN_RETRY_DEADLINE]))
    elapsed = time.monotonic() - t0
    assert status == 0 and result, peer.describe()
    report.code("our client, foreign-CA cert -> OpenFL server", result["code"], result["details"])
    assert result["code"] in ("TLS", "UNAUTHENTICATED", "RETRIES_EXHAUSTED"), result
    assert elapsed < FOREIGN_RETRY_DEADLINE + 15, f"took {elapsed:.1f} s"


def test_foreign_ca_our_client_refused_by_our_server(peers, binaries, certs, report):
    """For comparison: rustls answers the foreign certificate with an UnknownCA
    alert, which our client reports as TLS without retrying."""
    agg, fed = uuids()
    server, port = start_our_aggregator(peers, binaries, "mtls", certs, agg, fed, SMALL_MIB)
    t0 = time.monotonic()
    status, result, peer = peers.run("interop_collaborator-foreign", our_collaborator_argv(
        binaries, port, "mtls", certs, agg, fed, SMALL_MIB,
        extra=["--cert", "foreign", "--spoof", "col1", "--retry-deadline", 20]))
    elapsed = time.monotonic() - t0
    assert status == 0 and result, peer.describe()
    report.code("our client, foreign-CA cert -> our server", result["code"], result["details"])
    assert result["code"] == "TLS", result
    assert elapsed < 10, f"took {elapsed:.1f} s (retried?)"
