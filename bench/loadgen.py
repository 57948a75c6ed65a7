"""The benchmark's load generator (wrk with bench/bench.lua) and CPU accounting.

wrk is written in C and answers far faster than the services, so it measures
them rather than itself; its own CPU share is reported beside every figure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LUA = Path(__file__).resolve().parent / "bench.lua"
TICKS = os.sysconf("SC_CLK_TCK")
CPUS = os.cpu_count() or 1


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        sys.exit(
            "make bench needs wrk, the HTTP load generator:\n"
            "    sudo apt-get install -y wrk      (Debian/Ubuntu)\n"
            "    brew install wrk                 (macOS)"
        )
    return path


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (0 for any that are gone)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def group_pids(pgid: int) -> list[int]:
    """Every process in a process group: a service and its Sanic workers."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                pids.append(int(entry.name))
    return pids


def listener_pids(port: int, name: str) -> list[int]:
    """The processes called name that listen on this TCP port (the MySQL server the stack
    uses, not every mariadbd on the machine); every one called name if none is found."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    found = []
    for pid in pids_named(name):
        try:
            fds = Path(f"/proc/{pid}/fd").iterdir()
            if any(os.readlink(fd) in inodes for fd in fds):
                found.append(pid)
        except OSError:
            continue
    return found or pids_named(name)


def pids_named(name: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@dataclass
class Run:
    """One wrk run: what bench.lua counted, and who used the CPU meanwhile."""

    seconds: float
    answered: int
    statuses: dict[str, int]
    p50_ms: float
    p99_ms: float
    socket_errors: int
    selling_seconds: float  # first request to the last 201
    answered_while_selling: int
    cpu_share: dict[str, float] = field(default_factory=dict)  # of the whole machine
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # each one's CPU, whole run

    def cpu_us_per_request(self, name: str = "activity_service") -> float:
        """µs of that one's CPU per request answered: steadier than req/s on a busy machine."""
        return 1e6 * self.cpu_seconds.get(name, 0.0) / self.answered if self.answered else 0.0

    @property
    def rps(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    @property
    def created(self) -> int:
        return self.statuses.get("201", 0)

    @property
    def sale_rps(self) -> float:
        """Requests answered per second from the first request to the last 201."""
        return self.answered_while_selling / self.selling_seconds if self.selling_seconds else 0.0

    @property
    def orders_per_second(self) -> float:
        return self.created / self.selling_seconds if self.selling_seconds else 0.0


def run_wrk(
    url: str,
    path: str,
    method: str,
    tokens_file: Path | None,
    order_file: Path,
    connections: int,
    threads: int,
    max_seconds: int,
    stop_at_sold_out: bool,
    watch: dict[str, list[int]],
) -> Run:
    """Run wrk once over the sequence in order_file; watch names process ids to account CPU for."""
    env = {
        **os.environ,
        "BENCH_METHOD": method,
        "BENCH_PATH": path,
        "BENCH_TOKENS": str(tokens_file) if tokens_file else "-",
        "BENCH_ORDER": str(order_file),
        "BENCH_THREADS": str(threads),
        "BENCH_STOP_AT_SOLD_OUT": "1" if stop_at_sold_out else "0",
    }
    command = [
        require_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max_seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url + path,
    ]
    before = {name: cpu_seconds(pids) for name, pids in watch.items()}
    with (
        tempfile.TemporaryFile() as stdout,
        tempfile.TemporaryFile() as stderr,
        tempfile.TemporaryDirectory() as done,
    ):
        env["BENCH_DONE_DIR"] = done
        started = time.monotonic()
        proc = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr)
        # wait4, not poll(): it also gives the child's own CPU time.
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        while pid == 0 and len(os.listdir(done)) < threads:
            time.sleep(0.02)
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == 0:
            proc.send_signal(signal.SIGINT)  # every thread is done: wrk reports at once
            _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read().decode(), stderr.read().decode()
    used = {name: cpu_seconds(pids) - before[name] for name, pids in watch.items()}
    share = {name: seconds / (wall * CPUS) for name, seconds in used.items()}
    used["wrk"] = usage.ru_utime + usage.ru_stime
    share["wrk"] = used["wrk"] / (wall * CPUS)
    line = next((x for x in out.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{out}\n{err}")
    result = json.loads(line.removeprefix("BENCH_RESULT "))
    selling = (result["last_created_us"] - result["first_request_us"]) / 1e6
    return Run(
        seconds=(result["last_answer_us"] - result["first_request_us"]) / 1e6,
        answered=result["answered"],
        statuses=result["statuses"],
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        socket_errors=result["socket_errors"] + result["timeouts"],
        selling_seconds=max(selling, 0.0) if result["last_created_us"] else 0.0,
        answered_while_selling=result["answered_until_last_created"],
        cpu_share=share,
        cpu_seconds=used,
    )
