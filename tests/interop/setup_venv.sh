#!/usr/bin/env bash
# Create (or reuse) a Python venv holding the real OpenFL 1.6 package, used as
# the peer in interop tests.
#
#   tests/interop/setup_venv.sh [VENV_DIR]     (default: <repo>/target/interop-venv)
#
# OpenFL is installed with --no-deps: its full dependency list drags in Jupyter,
# TensorBoard, Docker, ... which the transport never touches. Only the modules
# that `openfl.transport`, `openfl.component` (Aggregator/Collaborator) and the
# director client import at module level are installed. Idempotent: a stamp
# file records the install list, so a second run returns at once.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${1:-$repo_root/target/interop-venv}"
python="${PYTHON:-python3}"

openfl_spec="openfl==1.6"
# Why each is here (all imported at module level by OpenFL 1.6):
#   grpcio, protobuf 4.x     transport + generated *_pb2 (OpenFL wants protobuf<5)
#   numpy<2.4                numpy 2.4 dropped reshape(newshape=) that OpenFL calls
#   dynaconf, click, PyYAML  openfl.utilities / interface / director (pins from OpenFL's setup.py)
#   tqdm, scikit-learn       openfl.pipelines (imported by the aggregator client)
#   pandas                   openfl.databases.TensorDB (Aggregator, Collaborator)
#   rich, tensorboardX       openfl.utilities.logs (Aggregator)
#   pytest                   runs the interop tests
deps=(
  grpcio "protobuf==4.25.*" "numpy<2.4"
  "dynaconf==3.2.6" "click==8.1.7" PyYAML
  tqdm scikit-learn pandas rich tensorboardX
  pytest
)

stamp="$venv/.openfl-interop-stamp"
want="$openfl_spec ${deps[*]}"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/python" ]]; then
  exit 0
fi

"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --no-deps "$openfl_spec"
# pip then reports OpenFL's other declared requirements as "not installed":
# expected with --no-deps, harmless.
"${pip[@]}" "${deps[@]}"

# Fail here, not in a test, if an import OpenFL needs is still missing.
"$venv/bin/python" - <<'PY'
from openfl.transport import AggregatorGRPCClient, AggregatorGRPCServer  # noqa: F401
from openfl.transport.grpc.director_client import ShardDirectorClient, DirectorClient  # noqa: F401
from openfl.component.collaborator import Collaborator  # noqa: F401
PY

printf '%s' "$want" > "$stamp"
