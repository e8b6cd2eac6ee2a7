"""An aggregator built on OpenFL 1.6's own AggregatorGRPCServer, as an interop peer.

A minimal aggregator object stands in for openfl.component.Aggregator: it hands
out one "train" task, serves "model_weights" = pattern(1, size), and records what
arrives. Prints {"listening": PORT} once serving, writes everything it saw to
--rounds-file after each upload, and exits 0 about a second after the first
upload (OpenFL's serve() polls all_quit_jobs_sent every 5 s). Exits non-zero
after --timeout seconds.

--mode tls is OpenFL 1.6 as it is: with client auth disabled its server still reads
the peer certificate's CN, so every RPC fails with UNKNOWN ('x509_common_name').
"""

import json
import os
import sys
import threading
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


@dataclass
class Task:
    """What OpenFL's server reads from the objects get_tasks returns."""

    name: str
    function_name: str
    task_type: str
    apply_local: bool = False


class PatternAggregator:
    """The part of openfl.component.Aggregator that AggregatorGRPCServer calls."""

    def __init__(self, args, on_started):
        self.uuid = args.aggregator_uuid
        self.federation_uuid = args.federation_uuid
        self.single_col_cert_common_name = ""
        self.authorized_cols = args.collaborators.split(",")
        self.size = int(args.size_mib * common.MIB)
        self.rounds_file = args.rounds_file
        self.on_started = on_started
        self.model = common.named_tensor(
            "model_weights", common.pattern(common.SEED_AGGREGATED, self.size), 0, ("model",))
        self.expected_upload = common.pattern(common.SEED_UPLOADED, self.size)
        self.lock = threading.Lock()
        self.seen = {"get_tasks": [], "tensor_requests": [], "results": []}
        self.first_result_at = None

    def valid_collaborator_cn_and_id(self, cert_common_name, collaborator_common_name):
        # Same rule as OpenFL 1.6's Aggregator.
        if self.single_col_cert_common_name == "":
            return (cert_common_name == collaborator_common_name
                    and collaborator_common_name in self.authorized_cols)
        return (cert_common_name == self.single_col_cert_common_name
                and collaborator_common_name in self.authorized_cols)

    def get_tasks(self, collaborator_name):
        with self.lock:
            self.seen["get_tasks"].append(collaborator_name)
        return [Task("train", "train_task", "train")], 0, 0, False

    def get_aggregated_tensor(self, collaborator_name, tensor_name, round_number,
                              report, tags, require_lossless):
        with self.lock:
            self.seen["tensor_requests"].append({
                "collaborator": collaborator_name, "tensor_name": tensor_name,
                "round_number": round_number, "report": report, "tags": list(tags),
                "require_lossless": require_lossless})
        return self.model

    def send_local_task_results(self, collaborator_name, round_number, task_name,
                                data_size, named_tensors):
        with self.lock:
            self.seen["results"].append({
                "collaborator": collaborator_name, "round_number": round_number,
                "task_name": task_name, "data_size": data_size,
                "tensors": [common.describe_tensor(t, self.expected_upload)
                            for t in named_tensors]})
            self._write_rounds_file()
            if self.first_result_at is None:
                self.first_result_at = time.monotonic()

    def all_quit_jobs_sent(self):
        # serve() first calls this right after server.start(): the "listening" moment.
        if self.on_started:
            self.on_started()
            self.on_started = None
        # Linger a second so the last SendLocalTaskResults reply is sent before stop(0).
        return self.first_result_at is not None and time.monotonic() - self.first_result_at > 1

    def _write_rounds_file(self):
        tmp = self.rounds_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.seen, f, indent=1, sort_keys=True)
        os.replace(tmp, self.rounds_file)


def parse_args():
    def options(p):
        p.add_argument("--collaborators", default="col1,col2")
        p.add_argument("--aggregator-uuid", required=True)
        p.add_argument("--federation-uuid", required=True)
        p.add_argument("--size-mib", type=float, default=64)
        p.add_argument("--rounds-file", required=True, help="JSON record of what arrived")

    return common.parse_peer_args(__doc__, options, host=None)


def main():
    args = parse_args()
    common.start_watchdog(args.timeout)

    from openfl.transport import AggregatorGRPCServer

    aggregator = PatternAggregator(args, on_started=lambda: common.emit({"listening": args.port}))
    server = AggregatorGRPCServer(
        aggregator,
        args.port,
        disable_client_auth=args.mode == "tls",
        **common.tls_kwargs(args.mode, args.certs, "server"),
    )
    try:
        server.serve()  # OpenFL's own loop: start, poll all_quit_jobs_sent, stop(0)
    except Exception as e:  # e.g. the port could not be bound
        common.fail(f"{type(e).__name__}: {e}")
    print(f"served {len(aggregator.seen['results'])} upload(s)", file=sys.stderr)


if __name__ == "__main__":
    main()
