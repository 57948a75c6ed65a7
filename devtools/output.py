"""What `make run` shows of the services' output: a terminal a person reads, the rest in files.

Each service writes one JSON line per event (common/telemetry/logs.py). make run reads them:
warnings and errors go to the terminal as one readable line each, the access log (one line
per request) to its own file, everything else to the services' log file. Lines that are not
JSON (a one-line start-up error, a traceback before logging was set up) go to the terminal as
they are. Each worker's "worker ready" line is counted: the banner waits for all of them.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

SHOWN = ("WARNING", "ERROR", "CRITICAL")
ACCESS_LOGGER = "seckill.access"
READY_LOGGER = "seckill.workers"
TERMINAL = "-"
OFF_WORDS = {"0", "false", "f", "n", "no", "off"}
ON_WORDS = {"", "1", "true", "t", "y", "yes", "on"}


def access_log_target(value: str | None, default: Path) -> Path | str | None:
    """ACCESS_LOG as make run reads it: a false word turns it off (None), a true word or
    nothing means the default file, `-` the terminal, anything else a file's path."""
    word = (value or "").strip()
    if word.lower() in OFF_WORDS:
        return None
    if word.lower() in ON_WORDS:
        return default
    if word == TERMINAL:
        return TERMINAL
    return Path(word)


def readable(record: dict[str, Any]) -> str:
    """One JSON log record as a line a person reads: time, service, level, message."""
    try:
        moment = datetime.fromisoformat(record["ts"]).astimezone().strftime("%H:%M:%S")
    except (KeyError, TypeError, ValueError):
        moment = "--:--:--"
    level = str(record.get("level", "")).lower()
    service = record.get("service") or "seckill"
    head = f"{moment} {service} {level}: " if level else f"{moment} {service}: "
    line = head + str(record.get("msg", ""))
    if record.get("logger") == ACCESS_LOGGER:
        line = f"{moment} {service} {record.get('msg', '')} {record.get('duration_ms', '')} ms"
    exc = record.get("exc")
    if exc:
        line += "\n" + "\n".join(f"    {part}" for part in str(exc).splitlines())
    return line


class Output:
    """The destination of every line the services write; safe to feed from several threads."""

    def __init__(self, services_log: Path, access_log: Path | str | None):
        self.lock = threading.Lock()
        self.services_log_path = services_log
        self.access_log_path = access_log
        services_log.parent.mkdir(parents=True, exist_ok=True)
        self.services_log: IO[str] = services_log.open("w", encoding="utf-8")
        self.access_log: IO[str] | None = None
        if isinstance(access_log, Path):
            access_log.parent.mkdir(parents=True, exist_ok=True)
            self.access_log = access_log.open("w", encoding="utf-8")
        self.ready: Counter[str] = Counter()
        self.early_warnings: list[str] = []  # before the banner: repeated under it
        self.banner_shown = False
        self.threads: list[threading.Thread] = []

    def say(self, text: str, warning: bool = False) -> None:
        """A line for the terminal (make run's own); a warning before the banner is kept."""
        with self.lock:
            print(text, file=sys.stderr, flush=True)
            if warning and not self.banner_shown:
                self.early_warnings.append(text)

    def banner(self, text: str) -> None:
        with self.lock:
            if self.early_warnings:
                text += "\n  warnings at start-up (also above):\n"
                text += "\n".join(f"    {w}" for w in self.early_warnings) + "\n"
            print(text, flush=True)
            self.banner_shown = True
            # In the services' log too: what came before it was there when it was shown.
            self.services_log.write(self.record("the ready banner is shown") + "\n")
            self.services_log.flush()

    @staticmethod
    def record(message: str) -> str:
        """A line of make run's own, in the services' format."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        line = {"ts": now, "level": "INFO", "logger": "devtools.local", "msg": message}
        return json.dumps(line, separators=(",", ":"))

    def line(self, service: str, raw: str) -> None:
        """One line a service wrote."""
        text = raw.rstrip("\n")
        if not text:
            return
        record = None
        if text.startswith("{"):
            try:
                record = json.loads(text)
            except ValueError:
                record = None
        if not isinstance(record, dict):
            self.say(text)
            return
        logger = record.get("logger")
        with self.lock:
            if logger == ACCESS_LOGGER:
                if self.access_log is not None:
                    self.access_log.write(text + "\n")
                    self.access_log.flush()
                elif self.access_log_path == TERMINAL:
                    print(readable(record), flush=True)
                return
            self.services_log.write(text + "\n")
            self.services_log.flush()
            if logger == READY_LOGGER:
                self.ready[service] += 1
        if str(record.get("level")) in SHOWN:
            self.say(readable(record), warning=record.get("level") == "WARNING")

    def follow(self, service: str, stream: IO[bytes]) -> None:
        """Read a service's output in a thread of its own until it ends."""

        def read() -> None:
            with stream:
                for raw in stream:
                    self.line(service, raw.decode("utf-8", "replace"))

        thread = threading.Thread(target=read, name=f"output-{service}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def close(self, timeout: float = 5.0) -> None:
        for thread in self.threads:
            thread.join(timeout)
        with self.lock:
            self.services_log.close()
            if self.access_log is not None:
                self.access_log.close()

    def where(self, root: Path) -> str:
        """The banner's line naming the log files."""

        def shown(path: Path) -> str:
            try:
                return str(path.resolve().relative_to(root))
            except ValueError:
                return str(path)

        if self.access_log_path is None:
            access = "off (ACCESS_LOG)"
        elif self.access_log_path == TERMINAL:
            access = "here (ACCESS_LOG=-)"
        else:
            access = shown(Path(self.access_log_path))
        services = shown(self.services_log_path)
        return f"  logs: access log {access}; the services' other lines {services}"
