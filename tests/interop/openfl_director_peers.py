"""Envoys and frontends built on OpenFL 1.6's own ShardDirectorClient and
DirectorClient, driving a director through a full experiment life cycle.

Run against tests/interop/peers/director.rs (see its doc for what the host does)
by test_director_interop.py. Every call goes through OpenFL's client classes
unchanged; a watchdog bounds the run (OpenFL's WaitExperiment has no deadline).

The scenario (envoys col1, col2; frontends "frontend" and "frontend2", named
by certificate under mTLS and by client_id without TLS):
 1. frontend: GetEnvoys before any envoy exists, GetDatasetInfo;
 2. envoys: UpdateShardInfo (col3 with a wrong sample shape is refused;
    under mTLS col1's certificate claiming to be col2 is PERMISSION_DENIED),
    UpdateEnvoyStatus (and for the refused col3: ShardNotFoundError);
 3. envoys wait (WaitExperiment); frontend submits "mnist" (SetNewExperiment:
    an archive of --archive-mib MiB in 2 MiB chunks + an initial model);
    envoys download it (GetExperimentData) and report health with
    is_experiment_running; frontend polls GetExperimentStatus, streams the
    metrics (GetMetricStream) until the experiment ends, fetches the best and
    last models (GetTrainedModel), lists and describes its experiments;
    frontend2 sees none of it (NOT_FOUND / empty list; as from OpenFL's own
    director, an empty status and a removal acknowledged that removes
    nothing);
 4. frontend submits "reject-me": rejected by the host's review;
 5. frontend submits "doomed" for col1: col1 downloads it, then reports
    SetExperimentFailed; the status turns "failed";
 6. a name with a path in it is refused (INVALID_ARGUMENT); "mnist" is
    removed (RemoveExperimentData), after which its status is empty (as
    OpenFL's director answers for an unknown experiment).

Prints one JSON line with everything observed.
"""

import hashlib
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def parse_args():
    def options(p):
        p.add_argument("--workdir", required=True, help="where archives are written")
        p.add_argument("--archive-mib", type=float, default=8)

    return common.parse_peer_args(__doc__, options, modes=("mtls", "insecure"),
                                  host="127.0.0.1", timeout=150)


class Shard:
    """The ShardDescriptor interface as OpenFL's envoy hands it to report_shard_info."""

    def __init__(self, sample_shape, target_shape, description):
        self.sample_shape = sample_shape
        self.target_shape = target_shape
        self.dataset_description = description


def envoy_client(args, name, cert_name=None):
    from openfl.transport.grpc.director_client import ShardDirectorClient

    return ShardDirectorClient(director_host=args.host, director_port=args.port, shard_name=name,
                               **common.tls_kwargs(args.mode, args.certs, cert_name or name))


def frontend_client(args, name):
    from openfl.transport.grpc.director_client import DirectorClient

    return DirectorClient(client_id=name, director_host=args.host, director_port=args.port,
                          **common.tls_kwargs(args.mode, args.certs, name))


def code_of(call):
    """The gRPC status code name a call ended with ("OK" when it returned)."""
    import grpc

    try:
        call()
        return "OK"
    except grpc.RpcError as e:
        return e.code().name


def answer_of(call):
    """What a call returned, or the gRPC status code name it ended with."""
    import grpc

    try:
        return call()
    except grpc.RpcError as e:
        return e.code().name


def wait_status(frontend, name, wanted, deadline_s=60):
    """Polls GetExperimentStatus until it is one of `wanted`; returns the statuses seen."""
    seen = []
    deadline = time.monotonic() + deadline_s
    while True:
        status = frontend.get_experiment_status(name).experiment_status
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in wanted:
            return seen
        if time.monotonic() > deadline:
            common.fail(f"{name}: status still {status!r} after {deadline_s} s (seen {seen})")
        time.sleep(0.05)


def run_envoy(args, name, experiments, out, errors, stop):
    """One envoy: waits for each expected experiment, downloads it, reports
    health; fails the ones named 'doomed*'; then keeps reporting health (as a
    real envoy does) until `stop` is set, so it stays online."""
    try:
        client = envoy_client(args, name)
        record = out[name] = {"experiments": []}
        for expected in experiments:
            started = time.monotonic()
            got = client.wait_experiment()
            waited = time.monotonic() - started
            digest = hashlib.sha256()
            size = chunks = max_chunk = 0
            for chunk in client.get_experiment_data(got):
                if chunk.size != len(chunk.npbytes):
                    raise AssertionError(f"chunk size field {chunk.size} != {len(chunk.npbytes)}")
                digest.update(chunk.npbytes)
                size += len(chunk.npbytes)
                chunks += 1
                max_chunk = max(max_chunk, len(chunk.npbytes))
            period = client.send_health_check(envoy_name=name, is_experiment_running=True,
                                              cuda_devices_info=[{"index": 0, "name": "interop-gpu"}])
            entry = {"expected": expected, "got": got, "waited_s": round(waited, 3), "bytes": size,
                     "chunks": chunks, "max_chunk": max_chunk, "sha256": digest.hexdigest(),
                     "health_check_period": period}
            if got.startswith("doomed"):
                client.set_experiment_failed(got, error_code=3, error_description="interop failure")
                entry["reported_failure"] = True
            record["experiments"].append(entry)
        client.send_health_check(envoy_name=name, is_experiment_running=False)
        while not stop.wait(0.5):
            client.send_health_check(envoy_name=name, is_experiment_running=False)
    except Exception as e:  # reported to the main thread
        errors.append(f"envoy {name}: {type(e).__name__}: {e}")


def main():
    args = parse_args()
    common.start_watchdog(args.timeout)
    import numpy as np
    from openfl.transport.grpc.exceptions import ShardNotFoundError

    result = {"mode": args.mode}
    alice = frontend_client(args, "frontend")
    bob = frontend_client(args, "frontend2")

    # 1. Before any envoy (OpenFL 1.6's own director raises KeyError here).
    result["envoys_before"] = alice.get_envoys()
    sample, target = alice.get_dataset_info()
    result["dataset_info"] = [list(sample), list(target)]

    # 2. Registration and health checks.
    shard = Shard(["28", "28"], ["1"], "interop shard")
    envoys = {name: envoy_client(args, name) for name in ("col1", "col2")}
    result["accepted"] = {name: c.report_shard_info(shard, (0,)) for name, c in envoys.items()}
    refused = envoy_client(args, "col3")  # under mTLS its own certificate, CN=col3
    result["accepted"]["col3"] = refused.report_shard_info(Shard(["32", "32"], ["1"], "wrong"), (0,))
    result["health_check_period"] = envoys["col1"].send_health_check(
        envoy_name="col1", is_experiment_running=False, cuda_devices_info=[{"index": 0}])
    if args.mode == "mtls":
        # col1's certificate claiming to be envoy col2.
        impostor = envoy_client(args, "col2", cert_name="col1")
        result["impostor"] = code_of(lambda: impostor.report_shard_info(shard, (0,)))
    def health_check_of(client, name):
        # OpenFL's envoy turns NOT_FOUND into ShardNotFoundError (and then
        # reports its shard again); any other error is logged and None returned.
        try:
            return repr(client.send_health_check(envoy_name=name, is_experiment_running=False))
        except ShardNotFoundError:
            return "ShardNotFoundError"

    result["unknown_envoy_health_check"] = health_check_of(refused, "col3")
    # An envoy that is not registered, whatever certificate asks (under mTLS
    # col1's): OpenFL answers NOT_FOUND.
    result["unregistered_envoy_health_check"] = health_check_of(envoy_client(args, "ghost", "col1"), "ghost")

    # 3. The experiment.
    errors = []
    per_envoy = {}
    stop = threading.Event()
    threads = [
        threading.Thread(target=run_envoy, args=(args, "col1", ["mnist", "doomed"], per_envoy, errors, stop),
                         daemon=True),
        threading.Thread(target=run_envoy, args=(args, "col2", ["mnist"], per_envoy, errors, stop), daemon=True),
    ]
    for t in threads:
        t.start()
    time.sleep(0.5)  # both envoys are now blocked in WaitExperiment

    archive = os.path.join(args.workdir, "mnist.zip")
    data = os.urandom(int(args.archive_mib * common.MIB))
    with open(archive, "wb") as f:
        f.write(data)
    result["archive"] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    initial = {
        "conv1.weight": np.arange(64 * 1024, dtype=np.float32).reshape(64, 1024) / 7.0,
        "fc.bias": np.linspace(-1.0, 1.0, 10, dtype=np.float32),
    }
    response = alice.set_new_experiment("mnist", ["col1", "col2"], archive, initial_tensor_dict=initial)
    result["submitted"] = response.accepted
    result["statuses"] = wait_status(alice, "mnist", ("in_progress", "finished", "failed"))

    metrics = list(alice.stream_metrics("mnist"))  # ends when the experiment finished
    result["metrics"] = [
        {**m, "metric_value": round(float(m["metric_value"]), 6)} for m in metrics]
    result["statuses"] += [s for s in wait_status(alice, "mnist", ("finished", "failed"))
                           if s != result["statuses"][-1]]
    best = alice.get_best_model("mnist")
    last = alice.get_last_model("mnist")
    result["best_is_negated_initial"] = (
        sorted(best) == sorted(initial) and all(np.array_equal(best[k], -initial[k]) for k in initial))
    result["last_is_initial"] = (
        sorted(last) == sorted(initial) and all(np.array_equal(last[k], initial[k]) for k in initial))
    result["list"] = [
        {"name": e.name, "status": e.status, "collaborators_amount": e.collaborators_amount,
         "tasks_amount": e.tasks_amount, "progress": round(e.progress, 3)}
        for e in alice.get_experiments_list()]
    description = alice.get_experiment_description("mnist")
    result["description"] = {
        "name": description.name, "status": description.status,
        "progress": round(description.progress, 3),
        "current_round": description.current_round, "total_rounds": description.total_rounds,
        "models": {m.name: m.status for m in description.download_statuses.models},
        "logs": {m.name: m.status for m in description.download_statuses.logs},
        "collaborators": {c.name: c.status for c in description.collaborators},
        "tasks": [t.name for t in description.tasks],
    }
    # The other frontend sees nothing of it (OpenFL's own director answers an
    # empty status and acknowledges a removal that removes nothing).
    result["isolation"] = {
        "status": answer_of(lambda: bob.get_experiment_status("mnist").experiment_status),
        "description": code_of(lambda: bob.get_experiment_description("mnist")),
        "best_model": code_of(lambda: bob.get_best_model("mnist")),
        "metrics": code_of(lambda: list(bob.stream_metrics("mnist"))),
        "remove": answer_of(lambda: bob.remove_experiment_data("mnist")),
        "list": [e.name for e in bob.get_experiments_list()],
    }
    result["status_after_foreign_remove"] = alice.get_experiment_status("mnist").experiment_status

    # 4. Rejected by the host's review.
    small = os.path.join(args.workdir, "small.zip")
    with open(small, "wb") as f:
        f.write(b"plan: rejected\n" * 100)
    result["reject_submitted"] = alice.set_new_experiment(
        "reject-me", ["col1"], small, initial_tensor_dict=initial).accepted
    result["reject_statuses"] = wait_status(alice, "reject-me", ("rejected", "in_progress", "finished"))

    # 5. Failed by an envoy.
    result["doomed_submitted"] = alice.set_new_experiment(
        "doomed", ["col1"], small, initial_tensor_dict=initial).accepted
    result["doomed_statuses"] = wait_status(alice, "doomed", ("failed", "finished"))
    # Both envoys done with their experiments and still reporting health (col2
    # finished long before col1): what GetEnvoys says of live envoys.
    deadline = time.monotonic() + 30
    while True:
        raw_envoys = alice.get_envoys(raw_result=True)
        infos = list(raw_envoys.envoy_infos)
        settled = len(infos) == 2 and all(e.is_online and not e.is_experiment_running for e in infos)
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    result["envoys"] = sorted((
        {"name": e.shard_info.node_info.name, "is_online": e.is_online,
         "is_experiment_running": e.is_experiment_running,
         "valid_duration_s": e.valid_duration.seconds,
         "cuda": [d.name for d in e.shard_info.node_info.cuda_devices]}
        for e in infos), key=lambda e: e["name"])
    stop.set()
    for t in threads:
        t.join(timeout=60)
    if any(t.is_alive() for t in threads):
        common.fail(f"envoy threads still running; errors: {errors}")
    result["envoy_errors"] = errors
    result["per_envoy"] = per_envoy
    result["envoys_dict_keys"] = sorted(alice.get_envoys())


    # 6. A name that escapes the archive directory; removal.
    result["bad_name"] = code_of(
        lambda: alice.set_new_experiment("../escape", ["col1"], small, initial_tensor_dict=initial))
    result["removed"] = alice.remove_experiment_data("mnist")
    result["status_after_remove"] = answer_of(lambda: alice.get_experiment_status("mnist").experiment_status)
    result["list_after_remove"] = [e.name for e in alice.get_experiments_list()]
    common.emit(result)


if __name__ == "__main__":
    main()
