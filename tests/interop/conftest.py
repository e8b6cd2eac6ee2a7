"""Fixtures of the OpenFL 1.6 interop tests (test_interop.py).

Run with the interop venv (made by tests/interop/setup_venv.sh) after building
the Rust peers (tests/interop/peers, Cargo [[example]] targets, so they land in
target/release/examples):

    cargo build --release --examples
    tests/interop/setup_venv.sh
    target/interop-venv/bin/python -m pytest tests/interop -v

OFL_INTEROP_SIZE_MIB (default 64) sets the tensor size moved each way.

Every peer is a subprocess: its stdout is read line by line on a thread (so a
test waits for the {"listening": PORT} line instead of sleeping), its stderr
goes to a file shown when something fails, every wait is bounded, and every
process still running at the end of a test is killed. Transfer rates and the
status codes the peers saw are collected and printed in the terminal summary.
"""

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
EXAMPLES = REPO / "target" / "release" / "examples"
MAKE_CERTS = REPO / "tests" / "certs" / "make_certs.sh"

SIZE_MIB = float(os.environ.get("OFL_INTEROP_SIZE_MIB", "64"))

# Bounds (seconds). Generous for a loaded 2-core machine, never unbounded.
START_TIMEOUT = 60      # until a server prints {"listening": PORT}
PEER_WATCHDOG = 150     # a peer kills itself after this long (its --timeout)
RUN_TIMEOUT = 180       # subprocess bound on a client run
EXIT_TIMEOUT = 60       # a server exiting after its upload (OpenFL polls every 5 s)


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

class Peer:
    """A running peer process: stdout parsed line by line on a thread, stderr to a file."""

    def __init__(self, name, argv, workdir: Path, stdin=subprocess.DEVNULL):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.stderr_path = workdir / f"{name}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=self._stderr, cwd=REPO)
        self.lines = queue.Queue()
        self.stdout_lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.stdout_lines.append(line)
            self.lines.put(line)
        self.lines.put(None)  # end of stdout

    def stderr(self, limit=4000):
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return text if len(text) <= limit else "...\n" + text[-limit:]

    def describe(self):
        return (f"{self.name} (pid {self.proc.pid}, exit {self.proc.poll()})\n"
                f"  argv: {' '.join(self.argv)}\n"
                f"  stdout: {self.stdout_lines}\n"
                f"  stderr:\n{self.stderr()}")

    def wait_json(self, key, timeout):
        """The first stdout line that is a JSON object holding `key`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no {key!r} line from {self.name} within {timeout:g} s\n"
                            + self.describe())
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=10)
                pytest.fail(f"{self.name} ended before printing {key!r}\n" + self.describe())
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and key in obj:
                return obj

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} did not exit within {timeout:g} s\n" + self.describe())

    def close_stdin(self):
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def cleanup(self):
        self.kill()
        self._reader.join(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._stderr.close()


class Peers:
    """Starts peers for one test and kills whatever is left at teardown."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.started = []

    def start(self, name, argv, **kw):
        peer = Peer(name, argv, self.workdir, **kw)
        self.started.append(peer)
        return peer

    def run(self, name, argv, timeout=RUN_TIMEOUT):
        """Runs a client to completion: (exit status, its JSON result or None, peer)."""
        peer = self.start(name, argv)
        try:
            peer.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            peer.kill()
            pytest.fail(f"{name} did not finish within {timeout:g} s\n" + peer.describe())
        peer._reader.join(timeout=10)
        result = None
        for line in peer.stdout_lines:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                result = obj
        return peer.proc.returncode, result, peer

    def cleanup(self):
        for peer in self.started:
            peer.cleanup()


@pytest.fixture
def peers(tmp_path):
    p = Peers(tmp_path)
    yield p
    p.cleanup()


# ---------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def python():
    """The interpreter that runs the OpenFL peers: this one, which must import OpenFL 1.6."""
    try:
        import openfl  # noqa: F401
        from openfl.transport import AggregatorGRPCClient, AggregatorGRPCServer  # noqa: F401
    except ImportError as e:
        pytest.fail(f"OpenFL 1.6 is not importable from {sys.executable} ({e}): run "
                    "tests/interop/setup_venv.sh, then "
                    "target/interop-venv/bin/python -m pytest tests/interop", pytrace=False)
    return sys.executable


@pytest.fixture(scope="session")
def binaries():
    """Paths of the Rust interop peers (built by `cargo build --release --examples`)."""
    found = {name: EXAMPLES / name for name in ("interop_aggregator", "interop_collaborator")}
    missing = [str(p) for p in found.values() if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail("missing Rust interop peers: " + ", ".join(missing)
                    + "\nbuild them first: cargo build --release --examples", pytrace=False)
    return found


def example_binary(name):
    """The Rust peer `name` (Cargo example target; source in tests/interop/peers),
    built: the release build if present (as `make build` makes it), else the
    debug one."""
    for path in (EXAMPLES / name, REPO / "target" / "debug" / "examples" / name):
        if os.access(path, os.X_OK):
            return path
    pytest.fail(f"missing Rust peer {name} (tests/interop/peers): build it first with "
                "`cargo build --release --examples`", pytrace=False)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """A fresh test PKI made by tests/certs/make_certs.sh, once per session."""
    out = tmp_path_factory.mktemp("certs")
    try:
        subprocess.run(["bash", str(MAKE_CERTS), str(out)], check=True, timeout=120,
                       capture_output=True)
    except subprocess.CalledProcessError as e:
        pytest.fail(f"make_certs.sh failed: {e.stderr.decode(errors='replace')}", pytrace=False)
    return out


def free_port():
    """A port that was free a moment ago (for OpenFL's server, which needs one given)."""
    with socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# What the session measured
# ---------------------------------------------------------------------------

class Report:
    def __init__(self):
        self.rates = []   # (pair, mode, direction, mib_s)
        self.codes = []   # (what, code, details)

    def rate(self, pair, mode, direction, mib_s):
        self.rates.append((pair, mode, direction, mib_s))

    def code(self, what, code, details=""):
        self.codes.append((what, code, details))


REPORT = Report()


@pytest.fixture(scope="session")
def report():
    return REPORT


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    tr = terminalreporter
    if REPORT.rates:
        tr.section(f"OpenFL 1.6 interop throughput ({SIZE_MIB:g} MiB tensors, MiB/s, "
                   "measured by the client)")
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        tr.write_line(f"one transfer per cell, load average {load} on {os.cpu_count()} CPUs: "
                      "expect noise on a busy machine")
        pairs = []
        for pair, mode, _, _ in REPORT.rates:
            if (pair, mode) not in pairs:
                pairs.append((pair, mode))
        width = max(len(p) for p, _ in pairs)
        tr.write_line(f"{'client -> server':<{width}}  {'mode':<8} {'download':>9} {'upload':>9}")
        for pair, mode in pairs:
            cell = {}
            for p, m, direction, mib_s in REPORT.rates:
                if (p, m) == (pair, mode):
                    cell[direction] = f"{mib_s:9.1f}"
            tr.write_line(f"{pair:<{width}}  {mode:<8} {cell.get('download', '-'):>9} "
                          f"{cell.get('upload', '-'):>9}")
    if REPORT.codes:
        tr.section("OpenFL 1.6 interop: status codes seen")
        for what, code, details in REPORT.codes:
            tr.write_line(f"{what}: {code}" + (f"  ({details})" if details else ""))
