"""Interop of our Rust director with OpenFL 1.6's own director clients.

OpenFL's ShardDirectorClient (envoys col1, col2) and DirectorClient
(frontends "frontend" and "frontend2") drive our DirectorServer
(tests/interop/peers/director.rs, whose host plays the aggregator: metrics,
best/last models, finish) through a full experiment life cycle, over mTLS and
without TLS: registration, health checks, WaitExperiment woken at once,
an archive up and down byte-identical in 2 MiB chunks, status, metric
stream, trained models, list, description, isolation between frontends,
rejection by the host's review, failure reported by an envoy, a bad name,
removal. See tests/interop/openfl_director_peers.py for the scenario.

Run: target/interop-venv/bin/python -m pytest tests/interop/test_director_interop.py -v
(uses the release build of the peer if present, else the debug one;
OFL_DIRECTOR_ARCHIVE_MIB sets the archive size, default 8).
"""

import os
import subprocess

import pytest

from conftest import EXIT_TIMEOUT, HERE, PEER_WATCHDOG, START_TIMEOUT, example_binary

PEERS = HERE / "openfl_director_peers.py"
ARCHIVE_MIB = float(os.environ.get("OFL_DIRECTOR_ARCHIVE_MIB", "8"))
CHUNK = 2 << 20


@pytest.fixture(scope="session")
def director_binary():
    """tests/interop/peers/director.rs, built (release preferred, as `make build` does)."""
    return example_binary("interop_director")


def start_director(peers, binary, mode, certs, tmp_path):
    argv = [binary, "--mode", mode, "--host", "127.0.0.1", "--port", "0",
            "--sample-shape", "28,28", "--target-shape", "1", "--health-period-secs", "1",
            "--archive-dir", tmp_path / "archives", "--timeout", PEER_WATCHDOG]
    if mode == "mtls":
        argv += ["--certs", certs]
    director = peers.start("interop_director", argv, stdin=subprocess.PIPE)
    return director, director.wait_json("listening", START_TIMEOUT)["listening"]


def run_openfl_peers(peers, python, port, mode, certs, tmp_path):
    workdir = tmp_path / "peers"
    workdir.mkdir()
    argv = [python, PEERS, "--host", "127.0.0.1", "--port", port, "--mode", mode,
            "--workdir", workdir, "--archive-mib", ARCHIVE_MIB, "--timeout", PEER_WATCHDOG]
    if mode == "mtls":
        argv += ["--certs", certs]
    status, result, peer = peers.run("openfl_director_peers", argv)
    assert status == 0 and result is not None, "OpenFL's director clients failed\n" + peer.describe()
    return result


def finish_director(director):
    director.close_stdin()
    summary = director.wait_json("summary", EXIT_TIMEOUT)["summary"]
    assert director.wait_exit(EXIT_TIMEOUT) == 0, director.describe()
    return summary


def check_envoys(result, mode):
    assert result["envoys_before"] == {}, "GetEnvoys must work before any envoy exists"
    assert result["dataset_info"] == [["28", "28"], ["1"]]
    assert result["accepted"] == {"col1": True, "col2": True, "col3": False}
    assert result["health_check_period"] == 1
    assert result["unknown_envoy_health_check"] == "ShardNotFoundError"
    # Whoever asks (under mTLS another envoy's certificate): NOT_FOUND, as OpenFL.
    assert result["unregistered_envoy_health_check"] == "ShardNotFoundError"
    if mode == "mtls":
        assert result["impostor"] == "PERMISSION_DENIED"
    assert result["envoys_dict_keys"] == ["col1", "col2"]
    for envoy in result["envoys"]:
        assert envoy["is_online"] and envoy["valid_duration_s"] == 2
        assert envoy["cuda"] == ["interop-gpu"]
        assert envoy["is_experiment_running"] is False
    assert result["envoy_errors"] == []


def check_experiment(result):
    size = int(ARCHIVE_MIB * (1 << 20))
    assert result["submitted"] is True
    assert result["statuses"] == ["in_progress", "finished"]
    for envoy in ("col1", "col2"):
        got = result["per_envoy"][envoy]["experiments"][0]
        assert (got["expected"], got["got"]) == ("mnist", "mnist")
        assert got["bytes"] == size and got["sha256"] == result["archive"]["sha256"]
        assert got["max_chunk"] <= CHUNK and got["chunks"] == -(-size // CHUNK)
        assert got["health_check_period"] == 1
        # Woken at once (about the 0.5 s the script waits before submitting),
        # not at OpenFL 1.6's next 10 s poll.
        assert got["waited_s"] < 5, got
    accuracy = [(m["metric_origin"], m["task_name"], m["metric_name"], m["metric_value"], m["round"])
                for m in result["metrics"]]
    assert accuracy == [
        row for r in (1, 2, 3) for row in (
            ("aggregator", "aggregated_model_validation", "accuracy", 0.25 * r, r),
            ("col1", "train", "loss", round(1.0 / r, 6), r))]
    assert result["best_is_negated_initial"] is True
    assert result["last_is_initial"] is True
    assert result["list"] == [{"name": "mnist", "status": "finished", "collaborators_amount": 2,
                               "tasks_amount": 2, "progress": 1.0}]
    assert result["description"] == {
        "name": "mnist", "status": "finished", "progress": 1.0,
        "current_round": 3, "total_rounds": 3,
        "models": {"best": "ready", "last": "ready", "init": "ready"},
        "logs": {"aggregator": "ready"},
        "collaborators": {"col1": "finished", "col2": "finished"},
        "tasks": ["train", "aggregated_model_validation"],
    }
    # As OpenFL 1.6's director: an empty status, a removal acknowledged that
    # removes nothing; the rest is a precise NOT_FOUND (OpenFL: UNKNOWN errors).
    assert result["isolation"] == {"status": "", "description": "NOT_FOUND",
                                   "best_model": "NOT_FOUND", "metrics": "NOT_FOUND",
                                   "remove": True, "list": []}
    assert result["status_after_foreign_remove"] == "finished"


def check_rejection_failure_removal(result):
    assert result["reject_submitted"] is True and result["reject_statuses"][-1] == "rejected"
    assert result["doomed_submitted"] is True and result["doomed_statuses"][-1] == "failed"
    doomed = result["per_envoy"]["col1"]["experiments"][1]
    assert (doomed["got"], doomed.get("reported_failure")) == ("doomed", True)
    assert result["bad_name"] == "INVALID_ARGUMENT"
    assert result["removed"] is True
    assert result["status_after_remove"] == ""
    assert result["list_after_remove"] == ["reject-me", "doomed"]


def check_summary(summary, owner):
    by_name = {e["name"]: e for e in summary["experiments"]}
    assert sorted(by_name) == ["doomed", "reject-me"], "mnist was removed"
    assert summary["reviewed"] == ["mnist", "reject-me", "doomed"]
    assert summary["started"] == ["mnist", "doomed"]
    assert summary["envoys"] == ["col1", "col2"]
    assert summary["failed"] == ["doomed: col1 (code 3): interop failure"]
    rejected, doomed = by_name["reject-me"], by_name["doomed"]
    assert (rejected["status"], rejected["owner"], rejected["downloads"]) == ("rejected", owner, [])
    assert (doomed["status"], doomed["owner"], doomed["downloads"]) == ("failed", owner, ["col1"])
    assert doomed["failure"] == {"collaborator": "col1", "error_code": 3,
                                 "description": "interop failure"}
    # OpenFL's frontend sends the initial model (with every chunk); it was kept.
    assert doomed["initial_tensors"] == ["conv1.weight", "fc.bias"]


@pytest.mark.parametrize("mode", ["mtls", "insecure"])
def test_openfl_director_clients_drive_our_director(mode, peers, python, certs, director_binary,
                                                     tmp_path, report):
    director, port = start_director(peers, director_binary, mode, certs, tmp_path)
    result = run_openfl_peers(peers, python, port, mode, certs, tmp_path)
    assert result["mode"] == mode
    check_envoys(result, mode)
    check_experiment(result)
    check_rejection_failure_removal(result)
    # Under mTLS the owner is the certificate CN; without TLS the client_id.
    check_summary(finish_director(director), owner="frontend")
    report.code(f"director {mode}: OpenFL frontend2 reading frontend's experiment",
                result["isolation"]["description"])
    report.code(f"director {mode}: OpenFL frontend submitting '../escape'", result["bad_name"])
