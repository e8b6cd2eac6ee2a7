"""A real OpenFL 1.6 collaborator: OpenFL's own Collaborator class, its own
AggregatorGRPCClient, and a small numpy TaskRunner, as a peer of our FedAvg
aggregator (tests/interop/peers/fedavg.rs, tests/interop/test_fedavg_interop.py).

The model is a linear regression y = x @ w + b with w of shape [4, 3] and b of
shape [3] (the aggregator's default initial model). Each collaborator's data
is deterministic: drawn from a generator seeded by its name, with its own
sizes (col1: 24 training and 8 validation samples, col2: 40 and 16, others
32 and 12), so the aggregator's data_size weights differ between them.

The task runner follows OpenFL's TaskRunner subclassing API as
PyTorchTaskRunner does: validate_task (apply=global: the aggregated model,
GLOBAL "model" tensors; apply=local: this collaborator's own "trained"
tensors) reports one metric, "score" = 1 / (1 + validation MSE);
train_task runs --epochs full-batch gradient-descent epochs from the
aggregated model and returns the trained w and b (tag "trained") plus the
metric "train_loss". The task names map to functions through the plan-style
task_config of OpenFL's default plan.

The AggregatorGRPCClient is subclassed only to record, around OpenFL's own
methods, every GetTasks reply, every tensor downloaded (decoded as
float32 with its int_list shape) and every upload (data_size, and each
NamedTensor decoded from the bytes actually sent). The record is written to
--record as JSON after every call, and one JSON summary line is printed on
stdout when Collaborator.run() returns (after the aggregator said quit).

A watchdog bounds the run: OpenFL's client retries UNAVAILABLE forever and
resends on every other error except UNAUTHENTICATED forever.
"""

import json
import os
import sys
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

# OpenFL 1.6's openfl/federated/__init__.py calls importlib.util.find_spec
# without importing importlib.util; it only works when something imported it
# earlier.
import importlib.util  # noqa: E402,F401

import numpy as np  # noqa: E402

FEATURES, OUTPUTS = 4, 3
MODEL_SHAPES = {"w": (FEATURES, OUTPUTS), "b": (OUTPUTS,)}
SIZES = {"col1": (24, 8), "col2": (40, 16)}
DEFAULT_SIZES = (32, 12)
VALIDATION_METRIC = "score"
TRAIN_METRIC = "train_loss"


def task_config(epochs):
    """OpenFL's default plan's tasks: task name -> function and kwargs."""
    return {
        "aggregated_model_validation": {
            "function": "validate_task",
            "kwargs": {"apply": "global", "metrics": [VALIDATION_METRIC]}},
        "train": {
            "function": "train_task",
            "kwargs": {"metrics": [TRAIN_METRIC], "epochs": epochs}},
        "locally_tuned_model_validation": {
            "function": "validate_task",
            "kwargs": {"apply": "local", "metrics": [VALIDATION_METRIC]}},
    }


def parse_args():
    def options(p):
        p.add_argument("--collaborator", default="col1")
        p.add_argument("--aggregator-uuid", required=True)
        p.add_argument("--federation-uuid", required=True)
        p.add_argument("--epochs", type=int, default=3, help="gradient steps per train task")
        p.add_argument("--lr", type=float, default=0.1)
        p.add_argument("--record", required=True, help="JSON file for what was sent and received")
        p.add_argument("--cancel-first-upload", action="store_true",
                       help="before each upload, start one of its first tensor only and cancel "
                            "it (grpcio future.cancel(): RST_STREAM CANCEL) before its end")

    return common.parse_peer_args(__doc__, options)


# ---------------------------------------------------------------------------
# Data and task runner
# ---------------------------------------------------------------------------

def make_data(name):
    """Deterministic (train, valid) sets of `name`: same true model, own shift."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    true_w = np.arange(FEATURES * OUTPUTS, dtype=np.float64).reshape(FEATURES, OUTPUTS) / 6.0 - 1.0
    true_b = np.array([0.5, -0.25, 1.0])
    shift = rng.normal(0.0, 0.5, FEATURES)

    def draw(n):
        x = rng.normal(shift, 1.0, (n, FEATURES))
        y = x @ true_w + true_b + rng.normal(0.0, 0.05, (n, OUTPUTS))
        return x.astype(np.float32), y.astype(np.float32)

    n_train, n_valid = SIZES.get(name, DEFAULT_SIZES)
    return draw(n_train), draw(n_valid)


def make_task_runner(name, lr):
    from openfl.federated.data.loader import DataLoader
    from openfl.federated.task.runner import TaskRunner
    from openfl.utilities import TensorKey, change_tags

    class ArrayDataLoader(DataLoader):
        def __init__(self, train, valid):
            super().__init__()
            self.train, self.valid = train, valid

        def get_feature_shape(self):
            return self.train[0].shape[1:]

        def get_train_loader(self, **kwargs):
            return [self.train]

        def get_valid_loader(self):
            return [self.valid]

        def get_train_data_size(self):
            return len(self.train[0])

        def get_valid_data_size(self):
            return len(self.valid[0])

    class NumpyLinearRunner(TaskRunner):
        """y = x @ w + b; full-batch gradient descent on the mean squared error."""

        def __init__(self, data_loader):
            super().__init__(data_loader=data_loader)
            self.weights = {k: np.zeros(s, np.float32) for k, s in MODEL_SHAPES.items()}

        # --- what OpenFL's Collaborator calls ---------------------------------

        def get_required_tensorkeys_for_function(self, func_name, **kwargs):
            if func_name == "validate_task" and kwargs.get("apply") == "local":
                # The model this collaborator trained this round (its TensorDB).
                return [TensorKey(k, "LOCAL", 0, False, ("trained",)) for k in MODEL_SHAPES]
            if func_name in ("validate_task", "train_task"):
                return [TensorKey(k, "GLOBAL", 0, False, ("model",)) for k in MODEL_SHAPES]
            raise ValueError(f"unknown task function {func_name!r}")

        def validate_task(self, col_name, round_num, input_tensor_dict, **kwargs):
            self.set_tensor_dict(input_tensor_dict, with_opt_vars=False)
            x, y = self.data_loader.valid
            score = 1.0 / (1.0 + self.mse(x, y))
            suffix = "validate_local" if kwargs.get("apply") == "local" else "validate_agg"
            tags = change_tags(("metric",), add_field=suffix)
            key = TensorKey(VALIDATION_METRIC, col_name, round_num, True, tags)
            return {key: np.array(score, dtype=np.float32)}, {}

        def train_task(self, col_name, round_num, input_tensor_dict, epochs=1, **kwargs):
            self.set_tensor_dict(input_tensor_dict, with_opt_vars=False)
            x, y = (a.astype(np.float64) for a in self.data_loader.train)
            w = self.weights["w"].astype(np.float64)
            b = self.weights["b"].astype(np.float64)
            losses = []
            for _ in range(epochs):
                err = x @ w + b - y
                losses.append(float(np.mean(err ** 2)))
                w -= lr * 2.0 * x.T @ err / err.size
                b -= lr * 2.0 * err.sum(axis=0) / err.size
            self.weights = {"w": w.astype(np.float32), "b": b.astype(np.float32)}
            metric = {TensorKey(TRAIN_METRIC, col_name, round_num, True, ("metric",)):
                      np.array(np.mean(losses), dtype=np.float32)}
            trained = {TensorKey(k, col_name, round_num, False, ("trained",)): v
                       for k, v in self.get_tensor_dict(with_opt_vars=False).items()}
            return {**metric, **trained}, {}

        def get_tensor_dict(self, with_opt_vars=False):
            return {k: v.copy() for k, v in self.weights.items()}

        def set_tensor_dict(self, tensor_dict, with_opt_vars=False):
            for k, shape in MODEL_SHAPES.items():
                value = np.array(tensor_dict[k], dtype=np.float32)  # a writable copy
                if value.shape != shape:
                    raise ValueError(f"tensor {k}: shape {value.shape}, expected {shape}")
                self.weights[k] = value

        def reset_opt_vars(self):
            pass

        def initialize_globals(self):
            pass

        # --- helpers ------------------------------------------------------------

        def mse(self, x, y):
            pred = x.astype(np.float64) @ self.weights["w"] + self.weights["b"]
            return float(np.mean((pred - y) ** 2))

    train, valid = make_data(name)
    return NumpyLinearRunner(ArrayDataLoader(train, valid))


# ---------------------------------------------------------------------------
# Recording client
# ---------------------------------------------------------------------------

def decode(tensor):
    """A NamedTensor as OpenFL's NoCompressionPipeline encodes it, decoded."""
    shape = [list(m.int_list) for m in tensor.transformer_metadata]
    values = np.frombuffer(tensor.data_bytes, dtype="<f4")
    return {
        "name": tensor.name,
        "round_number": tensor.round_number,
        "report": tensor.report,
        "lossless": tensor.lossless,
        "tags": list(tensor.tags),
        "int_list": shape,
        "values": [float(v) for v in values],
    }


def make_client(args, record, save):
    from openfl.transport import AggregatorGRPCClient

    class RecordingClient(AggregatorGRPCClient):
        """OpenFL's client; each call recorded after OpenFL's own method ran."""

        def get_tasks(self, collaborator_name):
            tasks, round_number, sleep_time, quit_ = super().get_tasks(collaborator_name)
            record["get_tasks"].append({
                "round_number": round_number, "sleep_time": sleep_time, "quit": quit_,
                "tasks": [{"name": t.name, "function_name": t.function_name,
                           "task_type": t.task_type, "apply_local": t.apply_local} for t in tasks],
            })
            save()
            return tasks, round_number, sleep_time, quit_

        def get_aggregated_tensor(self, collaborator_name, tensor_name, round_number, report,
                                  tags, require_lossless):
            tensor = super().get_aggregated_tensor(collaborator_name, tensor_name, round_number,
                                                   report, tags, require_lossless)
            record["downloads"].append({
                "request": {"tensor_name": tensor_name, "round_number": round_number,
                            "report": report, "tags": list(tags),
                            "require_lossless": require_lossless},
                "tensor": decode(tensor),
            })
            save()
            return tensor

        def send_local_task_results(self, collaborator_name, round_number, task_name, data_size,
                                    named_tensors):
            if args.cancel_first_upload:
                self.cancel_partial_upload(collaborator_name, round_number, task_name, data_size,
                                           named_tensors[:1])
                record["cancelled_uploads"] += 1
            response = super().send_local_task_results(collaborator_name, round_number, task_name,
                                                       data_size, named_tensors)
            record["uploads"].append({
                "round_number": round_number, "task_name": task_name, "data_size": data_size,
                "tensors": [decode(t) for t in named_tensors],
            })
            save()
            return response

        def cancel_partial_upload(self, collaborator_name, round_number, task_name, data_size,
                                  tensors):
            """Streams a TaskResults that stops after whole tensors (so its bytes
            decode), holds the stream open without END_STREAM, then cancels the
            call as a grpcio user would: the server must not count it."""
            from openfl.protocols import aggregator_pb2, utils

            self._set_header(collaborator_name)
            partial = aggregator_pb2.TaskResults(header=self.header, round_number=round_number,
                                                 task_name=task_name, data_size=data_size,
                                                 tensors=tensors)
            chunks = list(utils.proto_to_datastream(partial, self.logger))
            release = threading.Event()

            def requests():
                yield from chunks
                release.wait(10)  # no END_STREAM until the call is cancelled

            future = self.stub.SendLocalTaskResults.future(requests())
            time.sleep(0.3)  # the chunks reach the server
            future.cancel()
            release.set()

    return RecordingClient(**common.aggregator_client_kwargs(args, args.collaborator))


def main():
    args = parse_args()
    common.start_watchdog(args.timeout)

    from openfl.component.collaborator import Collaborator
    from openfl.utilities import add_log_level

    # Collaborator.send_task_results logs every metric with logger.metric(),
    # a level that only OpenFL's `fx` CLI registers (as METRIC = 25).
    add_log_level("METRIC", 25)

    record = {"collaborator": args.collaborator, "get_tasks": [], "downloads": [], "uploads": [],
              "cancelled_uploads": 0}
    lock = threading.Lock()

    def save():
        with lock:
            tmp = args.record + ".tmp"
            with open(tmp, "w") as f:
                json.dump(record, f)
            os.replace(tmp, args.record)

    runner = make_task_runner(args.collaborator, args.lr)
    collaborator = Collaborator(
        collaborator_name=args.collaborator,
        aggregator_uuid=args.aggregator_uuid,
        federation_uuid=args.federation_uuid,
        client=make_client(args, record, save),
        task_runner=runner,
        task_config=task_config(args.epochs),
        opt_treatment="RESET",
        delta_updates=False,
        db_store_rounds=1,
    )
    try:
        collaborator.run()
    except Exception as e:  # gRPC errors, OpenFL's check_equal ValueErrors, ...
        save()
        common.fail(f"{type(e).__name__}: {e}")
    record["finished"] = True
    save()
    rounds = sorted({u["round_number"] for u in record["uploads"]})
    common.emit({"collaborator": args.collaborator, "mode": args.mode, "rounds": rounds,
                 "uploads": len(record["uploads"]), "downloads": len(record["downloads"]),
                 "quit": bool(record["get_tasks"]) and record["get_tasks"][-1]["quit"],
                 "train_data_size": runner.get_train_data_size(),
                 "valid_data_size": runner.get_valid_data_size()})


if __name__ == "__main__":
    main()
