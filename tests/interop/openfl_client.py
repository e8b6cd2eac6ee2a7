"""A collaborator built on OpenFL 1.6's own AggregatorGRPCClient, as an interop peer.

Normal run: GetTasks, then GetAggregatedTensor("model_weights") checked against
pattern(1, size), then SendLocalTaskResults with pattern(2, size); prints one JSON
line with the tasks and the MiB/s of the download and the upload.

--spoof NAME: send one GetTasks whose header claims to be NAME (the TLS certificate
stays --cert's) and print the gRPC status code name it got ("OK" if accepted).

OpenFL's client retries UNAVAILABLE every second forever and, in
_resend_data_on_reconnection, resends at once and forever on every other error
except UNAUTHENTICATED. So the spoof call uses OpenFL's channel with a plain stub
and a deadline, and a watchdog bounds the whole run.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def parse_args():
    def options(p):
        p.add_argument("--collaborator", default="col1")
        p.add_argument("--cert", help="certificate name in --certs (default: --collaborator)")
        p.add_argument("--aggregator-uuid", required=True)
        p.add_argument("--federation-uuid", required=True)
        p.add_argument("--size-mib", type=float, default=64)
        p.add_argument("--spoof", metavar="NAME", help="claim to be NAME in GetTasks")
        p.add_argument("--rpc-timeout", type=float, default=30, help="deadline of the spoof call")

    return common.parse_peer_args(__doc__, options)


def make_client(args):
    from openfl.transport import AggregatorGRPCClient

    return AggregatorGRPCClient(**common.aggregator_client_kwargs(args, args.cert or args.collaborator))


def spoof(client, args):
    """One GetTasks claiming to be args.spoof; returns the status code name."""
    import grpc
    from openfl.protocols import aggregator_pb2, aggregator_pb2_grpc

    client._set_header(args.spoof)  # OpenFL's own header construction
    request = aggregator_pb2.GetTasksRequest(header=client.header)
    # OpenFL's channel (its TLS credentials and options) without its retry
    # interceptor, so a rejected handshake (UNAVAILABLE) is reported, not retried.
    stub = aggregator_pb2_grpc.AggregatorStub(client.channel)
    try:
        stub.GetTasks(request, timeout=args.rpc_timeout)
        return {"spoof": args.spoof, "code": "OK", "details": ""}
    except grpc.RpcError as e:
        return {"spoof": args.spoof, "code": e.code().name, "details": e.details() or ""}


def rate(nbytes, seconds):
    return {"bytes": nbytes, "seconds": round(seconds, 4),
            "mib_s": round(nbytes / common.MIB / seconds, 1)}


def round_trip(client, args):
    """GetTasks, download, upload, through OpenFL's public client methods."""
    name = args.collaborator
    size = int(args.size_mib * common.MIB)

    tasks, round_number, sleep_time, quit_ = client.get_tasks(name)

    expected = common.pattern(common.SEED_AGGREGATED, size)
    t0 = time.perf_counter()
    tensor = client.get_aggregated_tensor(name, "model_weights", 0, False, ("model",), True)
    download = rate(len(tensor.data_bytes), time.perf_counter() - t0)
    received = common.describe_tensor(tensor, expected)
    del expected
    if tensor.name != "model_weights" or not received["match"]:
        common.fail(f"aggregated tensor differs from pattern(1, {size}): {received}")

    upload_tensor = common.named_tensor(
        "model_weights", common.pattern(common.SEED_UPLOADED, size), 0, ("trained",))
    t0 = time.perf_counter()
    client.send_local_task_results(name, 0, "train", 100, [upload_tensor])
    upload = rate(size, time.perf_counter() - t0)

    return {
        "tasks": [{"name": t.name, "function_name": t.function_name,
                   "task_type": t.task_type, "apply_local": t.apply_local} for t in tasks],
        "round_number": round_number,
        "sleep_time": sleep_time,
        "quit": quit_,
        "tensor": received,
        "download": download,
        "upload": upload,
    }


def main():
    args = parse_args()
    common.start_watchdog(args.timeout)
    client = make_client(args)
    try:
        result = spoof(client, args) if args.spoof else round_trip(client, args)
    except Exception as e:  # gRPC errors, OpenFL's check_equal ValueErrors, ...
        common.fail(f"{type(e).__name__}: {e}")
    common.emit({"mode": args.mode, **result})


if __name__ == "__main__":
    main()
