"""Our built-in FedAvg aggregator federating real OpenFL 1.6 collaborators.

Peers:
- tests/interop/peers/fedavg.rs: our AggregatorServer running FedAvg (OpenFL's
  default task list, collaborators col1 and col2, initial model w [4, 3] and
  b [3]); after serve() returns it prints every round's aggregated model,
  the metrics, and the best and last models;
- tests/interop/openfl_fedavg_collaborator.py (two processes, col1 and col2):
  OpenFL 1.6's own Collaborator class with OpenFL's AggregatorGRPCClient and a
  numpy linear-regression TaskRunner on deterministic data of different
  sizes; each records every reply, download and upload it saw.

Checked, per round: the aggregated model equals the numpy data_size-weighted
average of the trained tensors the collaborators actually sent (within 1e-5),
the averaged metrics equal the weighted averages of the metrics sent, every
collaborator downloaded exactly the previous round's aggregate (round 0: the
initial model), the best/last models are the right rounds' models; and at the
end every collaborator was told to quit and every process exited 0. One run
over mTLS, one without TLS.

Run: target/interop-venv/bin/python -m pytest tests/interop/test_fedavg_interop.py -v
(after `cargo build --release --examples`; -s shows the per-round comparison).
"""

import json
import time
import uuid

import numpy as np
import pytest

from conftest import HERE, example_binary

COLLABORATOR = HERE / "openfl_fedavg_collaborator.py"
COLLABORATORS = ("col1", "col2")
ROUNDS = 3
TOLERANCE = 1e-5

# Bounds (seconds). A run takes about 5 s; each one, failing or not, ends
# within RUN_BUDGET (+ a few seconds to kill what is left), so both stay well
# below 90 s together.
RUN_BUDGET = 38        # every wait of one run comes out of this
START_TIMEOUT = 15     # until the aggregator prints {"listening": PORT}
PEER_WATCHDOG = 40     # every peer kills itself after this long

TASK_VALIDATE = "aggregated_model_validation"
TASK_TRAIN = "train"
TASK_LOCAL = "locally_tuned_model_validation"
EXPECTED_TASKS = [
    {"name": TASK_VALIDATE, "function_name": "validate_task", "task_type": "validate",
     "apply_local": False},
    {"name": TASK_TRAIN, "function_name": "train_task", "task_type": "train", "apply_local": False},
    {"name": TASK_LOCAL, "function_name": "validate_task", "task_type": "validate",
     "apply_local": True},
]
# Tags OpenFL's collaborator puts on each upload of each task.
EXPECTED_UPLOAD_TAGS = {
    TASK_VALIDATE: {"score": ["compressed", "metric", "validate_agg"]},
    TASK_TRAIN: {"train_loss": ["compressed", "metric"], "w": ["compressed", "trained"],
                 "b": ["compressed", "trained"]},
    TASK_LOCAL: {"score": ["compressed", "metric", "validate_local"]},
}
TRAIN_SIZES = {"col1": 24, "col2": 40}
VALID_SIZES = {"col1": 8, "col2": 16}


@pytest.fixture(scope="session")
def fedavg_binary():
    """tests/interop/peers/fedavg.rs, built (release preferred)."""
    return example_binary("interop_fedavg")


# ---------------------------------------------------------------------------
# Running a federation
# ---------------------------------------------------------------------------

def run_federation(peers, python, binary, mode, certs, tmp_path, collaborator_flags=()):
    """Our FedAvg aggregator and two OpenFL collaborators, to the end.

    Returns (aggregator result, {collaborator: record}, {collaborator: summary line})."""
    agg, fed = str(uuid.uuid4()), str(uuid.uuid4())
    tls = [] if mode == "insecure" else ["--certs", certs]
    started = time.monotonic()
    deadline = started + RUN_BUDGET

    def left():
        return max(1.0, deadline - time.monotonic())

    aggregator = peers.start(f"interop_fedavg-{mode}", [
        binary, "--mode", mode, *tls, "--host", "[::]", "--port", "0",
        "--collaborators", ",".join(COLLABORATORS), "--rounds", ROUNDS,
        "--aggregator-uuid", agg, "--federation-uuid", fed,
        "--sleep-time", 1, "--tensor-wait-ms", 10000, "--best-metric", "score",
        "--timeout", PEER_WATCHDOG])
    port = aggregator.wait_json("listening", START_TIMEOUT)["listening"]

    records = {c: tmp_path / f"{mode}-{c}.json" for c in COLLABORATORS}
    collaborators = {
        c: peers.start(f"openfl_collaborator-{c}-{mode}", [
            python, COLLABORATOR, "--host", "localhost", "--port", port, "--mode", mode, *tls,
            "--collaborator", c, "--aggregator-uuid", agg, "--federation-uuid", fed,
            "--record", records[c], "--timeout", PEER_WATCHDOG, *collaborator_flags])
        for c in COLLABORATORS
    }

    result = wait_result(aggregator, collaborators, deadline)["result"]
    assert aggregator.wait_exit(left()) == 0, aggregator.describe()
    summaries = {}
    for name, peer in collaborators.items():
        assert peer.wait_exit(left()) == 0, peer.describe()
        summaries[name] = peer.wait_json("collaborator", left())
    elapsed = time.monotonic() - started
    print(f"\n{mode}: {ROUNDS} rounds with 2 OpenFL collaborators in {elapsed:.1f} s")
    return result, {c: json.loads(records[c].read_text()) for c in COLLABORATORS}, summaries


def wait_result(aggregator, collaborators, deadline):
    """The aggregator's result line; fails early when a collaborator failed, and
    then shows the collaborators' side too (it usually has the reason)."""
    problem = None
    while problem is None:
        failed = [p for p in collaborators.values() if p.proc.poll() not in (None, 0)]
        if failed:
            problem = "a collaborator failed"
            break
        try:
            return aggregator.wait_json("result", max(0.1, min(1.0, deadline - time.monotonic())))
        except pytest.fail.Exception as e:
            if time.monotonic() >= deadline or aggregator.proc.poll() is not None:
                problem = str(e)
    pytest.fail(f"{problem}\n{aggregator.describe()}\n"
                + "\n".join(p.describe() for p in collaborators.values()), pytrace=False)


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

def tensor_array(t):
    """A recorded NamedTensor (int_list shape + float32 values) as an array."""
    assert len(t["int_list"]) == 1, t
    return np.asarray(t["values"], dtype=np.float32).reshape(t["int_list"][0])


def model_arrays(model):
    """The aggregator's JSON model as {name: float32 array}."""
    return {name: np.asarray(t["values"], dtype=np.float32).reshape(t["shape"])
            for name, t in model.items()}


def upload(record, round_number, task):
    found = [u for u in record["uploads"]
             if u["round_number"] == round_number and u["task_name"] == task]
    assert len(found) == 1, f"{record['collaborator']}: {len(found)} uploads of {task} in round {round_number}"
    return found[0]


def weighted_average(parts):
    """numpy's data_size-weighted average of [(data_size, array)], in float64."""
    sizes = np.array([size for size, _ in parts], dtype=np.float64)
    stacked = np.stack([np.asarray(a, dtype=np.float64) for _, a in parts])
    return np.average(stacked, axis=0, weights=sizes)


def check_collaborator_view(name, record, summary, mode):
    """What OpenFL's Collaborator itself saw and did."""
    assert record["finished"], f"{name} did not return from Collaborator.run()"
    assert summary["quit"] and summary["rounds"] == list(range(ROUNDS)), summary
    replies = record["get_tasks"]
    assert replies[-1] == {"round_number": ROUNDS, "sleep_time": 0, "quit": True, "tasks": []}
    assert sum(r["quit"] for r in replies) == 1, "told to quit more than once"
    for reply in replies[:-1]:
        assert 0 <= reply["round_number"] < ROUNDS and not reply["quit"]
        if reply["tasks"]:
            assert reply["tasks"] == EXPECTED_TASKS and reply["sleep_time"] == 0
        else:
            assert reply["sleep_time"] == 1  # waiting for the other collaborator
    assert [r["round_number"] for r in replies if r["tasks"]] == list(range(ROUNDS))

    assert len(record["uploads"]) == ROUNDS * len(EXPECTED_TASKS)
    for u in record["uploads"]:
        task = u["task_name"]
        expected_size = TRAIN_SIZES[name] if task == TASK_TRAIN else VALID_SIZES[name]
        assert u["data_size"] == expected_size, u
        tags = {t["name"]: t["tags"] for t in u["tensors"]}
        assert tags == EXPECTED_UPLOAD_TAGS[task], (task, tags)
        for t in u["tensors"]:
            assert t["lossless"] and t["round_number"] == u["round_number"]
            assert t["report"] == ("metric" in t["tags"])
    assert summary["train_data_size"] == TRAIN_SIZES[name]
    assert summary["mode"] == mode


def check_downloads(name, record, served):
    """Each round, the collaborator fetched w and b once (OpenFL caches them for
    train after validation), exactly as the aggregator served them."""
    by_round = {}
    for d in record["downloads"]:
        req, t = d["request"], d["tensor"]
        assert req == {"tensor_name": t["name"], "round_number": t["round_number"],
                       "report": False, "tags": ["model"], "require_lossless": True}, d
        assert t["tags"] == ["compressed", "model"] and t["lossless"] and not t["report"], t
        assert t["name"] not in by_round.setdefault(t["round_number"], {}), f"{name}: fetched twice"
        by_round[t["round_number"]][t["name"]] = tensor_array(t)
    assert sorted(by_round) == list(range(ROUNDS)), f"{name} downloaded rounds {sorted(by_round)}"
    for round_number, tensors in by_round.items():
        expected = served[round_number]
        assert sorted(tensors) == sorted(expected)
        for tensor_name, array in tensors.items():
            assert array.shape == expected[tensor_name].shape
            assert np.array_equal(array, expected[tensor_name]), (
                f"{name} got a different {tensor_name} for round {round_number}")


def check_rounds(result, records):
    """Every round's aggregate against numpy's weighted average of what was sent."""
    assert [r["round"] for r in result["rounds"]] == list(range(ROUNDS))
    rows = []
    for entry in result["rounds"]:
        r = entry["round"]
        aggregated = model_arrays(entry["model"])
        assert sorted(aggregated) == ["b", "w"]
        for tensor_name, actual in aggregated.items():
            parts = []
            for record in records.values():
                u = upload(record, r, TASK_TRAIN)
                sent = {t["name"]: t for t in u["tensors"]}
                parts.append((u["data_size"], tensor_array(sent[tensor_name])))
            expected = weighted_average(parts)
            assert actual.shape == expected.shape
            diff = float(np.max(np.abs(actual.astype(np.float64) - expected)))
            assert diff <= TOLERANCE, (
                f"round {r} {tensor_name}: aggregate {actual.ravel().tolist()} vs numpy "
                f"{expected.ravel().tolist()} (max diff {diff:g})")
            # Not just any average: the weights matter (sizes 24 vs 40).
            unweighted = np.mean(np.stack([np.asarray(a, np.float64) for _, a in parts]), axis=0)
            assert np.max(np.abs(unweighted - expected)) > 10 * TOLERANCE
            rows.append((r, tensor_name, actual.ravel()[:3], expected.ravel()[:3], diff))
    print("round tensor  aggregated (first 3)                numpy weighted average (first 3)     max|diff|")
    for r, tensor_name, actual, expected, diff in rows:
        print(f"{r:5d} {tensor_name:6s}  {np.array2string(actual, precision=6):35s}  "
              f"{np.array2string(expected, precision=6):35s}  {diff:.1e}")


def check_metrics(result, records):
    """Collaborators' metrics as sent; each round's averages weighted by data_size."""
    metrics = result["metrics"]
    for r in range(ROUNDS):
        for task in (TASK_VALIDATE, TASK_TRAIN, TASK_LOCAL):
            names = [n for n, tags in EXPECTED_UPLOAD_TAGS[task].items() if "metric" in tags]
            for metric in names:
                parts = []
                for c, record in records.items():
                    u = upload(record, r, task)
                    value = next(t["values"][0] for t in u["tensors"] if t["name"] == metric)
                    parts.append((u["data_size"], value))
                    mine = [m for m in metrics if (m["round"], m["origin"], m["task"], m["name"])
                            == (r, c, task, metric)]
                    assert len(mine) == 1 and not mine[0]["aggregated"], mine
                    assert mine[0]["value"] == pytest.approx(value, abs=1e-7)
                avg = [m for m in metrics if (m["round"], m["origin"], m["task"], m["name"])
                       == (r, "aggregator", task, metric)]
                assert len(avg) == 1 and avg[0]["aggregated"], avg
                assert avg[0]["value"] == pytest.approx(float(weighted_average(parts)), abs=TOLERANCE)
    per_round = sum("metric" in tags for t in EXPECTED_UPLOAD_TAGS.values() for tags in t.values())
    assert len(metrics) == ROUNDS * per_round * (len(COLLABORATORS) + 1)


def check_best_and_last(result):
    served = served_models(result)
    scores = {m["round"]: m["value"] for m in result["metrics"]
              if m["aggregated"] and m["task"] == TASK_VALIDATE and m["name"] == "score"}
    best_round = max(scores, key=scores.get)
    best = result["best"]
    assert best is not None and best["round"] == best_round
    assert best["score"] == pytest.approx(scores[best_round])
    # The best model is the one validated in that round: the round's global model.
    for name, array in model_arrays(best["model"]).items():
        assert np.array_equal(array, served[best_round][name])
    last = model_arrays(result["last_model"])
    final = model_arrays(result["rounds"][-1]["model"])
    assert sorted(last) == sorted(final)
    for name in last:
        assert np.array_equal(last[name], final[name])
    # Training through the federation works: the global model gets better.
    ordered = [scores[r] for r in range(ROUNDS)]
    assert ordered == sorted(ordered) and ordered[-1] > ordered[0], ordered


def served_models(result):
    """The model served for each round: the initial model, then each aggregate."""
    served = {0: model_arrays(result["initial_model"])}
    for entry in result["rounds"]:
        served[entry["round"] + 1] = model_arrays(entry["model"])
    return served


def check_aggregator_uploads(result, records):
    """The aggregator saw each collaborator's uploads once, with their data sizes."""
    seen = sorted((u["collaborator"], u["round"], u["task"], u["data_size"]) for u in result["uploads"])
    sent = sorted((c, u["round_number"], u["task_name"], u["data_size"])
                  for c, record in records.items() for u in record["uploads"])
    assert seen == sent


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["mtls", "insecure"])
def test_openfl_collaborators_federate_with_our_fedavg(peers, python, fedavg_binary, certs,
                                                       tmp_path, mode):
    result, records, summaries = run_federation(peers, python, fedavg_binary, mode, certs, tmp_path)
    check_federation(result, records, summaries, mode)


def test_cancelled_uploads_leave_our_fedavg_model_exact(peers, python, fedavg_binary, certs,
                                                        tmp_path):
    """Before every real upload each OpenFL collaborator streams the first tensor
    of it and cancels the call with grpcio (RST_STREAM CANCEL): the partial
    uploads decode, but none may count, so every round's model is still the
    exact weighted average of what the collaborators really sent."""
    result, records, summaries = run_federation(peers, python, fedavg_binary, "mtls", certs,
                                                tmp_path, ["--cancel-first-upload"])
    for name in COLLABORATORS:
        assert records[name]["cancelled_uploads"] == len(records[name]["uploads"]) > 0
    check_federation(result, records, summaries, "mtls")


def check_federation(result, records, summaries, mode):
    assert (result["current_round"], result["rounds_to_train"]) == (ROUNDS, ROUNDS)
    assert result["all_quit_jobs_sent"] is True
    for name in COLLABORATORS:
        check_collaborator_view(name, records[name], summaries[name], mode)
        check_downloads(name, records[name], served_models(result))
    check_aggregator_uploads(result, records)
    check_rounds(result, records)
    check_metrics(result, records)
    check_best_and_last(result)
