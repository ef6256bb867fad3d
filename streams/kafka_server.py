"""Apache Kafka itself, one KRaft node (broker and controller in one JVM), for tests and for users with Java.

The broker's jars come from Maven Central through ``kafka/pom.xml`` (pinned versions; ``./dev
kafka-jars`` collects them into ``.kafka/libs``). The node's settings are :data:`NODE_SETTINGS`, the
same that ``docker-compose.yml`` gives the official image: one node, so every internal topic has one
replica, and rebalances that start at once.

Examples
--------
>>> NODE_SETTINGS["offsets.topic.replication.factor"]
'1'
>>> server_properties("/tmp/k", port=19092, controller_port=19093)["listeners"]
'PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093'
>>> compose_name("group.initial.rebalance.delay.ms")
'KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS'
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Callable

from streams.broker import BrokerProcess, BrokerStartError, free_port, port_in_use

__all__ = ["ApacheKafka", "NODE_SETTINGS", "server_properties", "kafka_libs", "compose_name", "new_cluster_id"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LIBS = ROOT / ".kafka" / "libs"
READY_LINE = "Kafka Server started"

NODE_SETTINGS = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    "inter.broker.listener.name": "PLAINTEXT",
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "1000",
}

LOG4J2 = """Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
"""


def compose_name(setting: str) -> str:
    """The official image's environment variable for a server setting."""
    return "KAFKA_" + setting.upper().replace(".", "_")


def server_properties(data_dir: str | Path, port: int, controller_port: int, host: str = "127.0.0.1") -> dict[str, str]:
    """Every setting of one node listening on ``host:port`` (clients) and ``controller_port``."""
    return {
        **NODE_SETTINGS,
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.quorum.bootstrap.servers": f"{host}:{controller_port}",
        "log.dirs": str(Path(data_dir) / "log"),
    }


def kafka_libs(libs: str | Path | None = None) -> Path:
    """The folder of the broker's jars: ``libs``, else ``MEMSTREAM_APACHE_KAFKA_LIBS``, else ``.kafka/libs``."""
    folder = Path(libs or os.environ.get("MEMSTREAM_APACHE_KAFKA_LIBS") or DEFAULT_LIBS)
    if not any(folder.glob("kafka_2.13-*.jar")):
        raise BrokerStartError(f"Apache Kafka's jars are not in {folder}: run ./dev kafka-jars "
                               f"(Java 17 and Maven), or set MEMSTREAM_APACHE_KAFKA_LIBS")
    if shutil.which("java") is None:
        raise BrokerStartError("Apache Kafka needs Java 17 or newer on PATH (java not found)")
    return folder



def new_cluster_id(make: Callable[[], uuid.UUID] = uuid.uuid4) -> str:
    """A cluster id in Kafka's form (a UUID in URL-safe base64, unpadded), drawn again while it starts
    with ``-``, as Kafka's own ``Uuid.randomUuid`` does: the format tool would read it as an option.

    >>> ids = iter([uuid.UUID(bytes=bytes([0xF8] + [0] * 15)), uuid.UUID(int=1)])
    >>> new_cluster_id(lambda: next(ids))
    'AAAAAAAAAAAAAAAAAAAAAQ'
    """
    while True:
        cid = base64.urlsafe_b64encode(make().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid

class ApacheKafka(BrokerProcess):
    """One KRaft node in its own process group, its data and ``kafka.log`` under ``data_dir``.

    The first start formats the data directory (a new cluster id); later starts reuse it, so
    topics and committed offsets survive a restart.
    """

    stop_timeout_s = 30.0  # a controlled shutdown hands the partitions over first

    def __init__(self, data_dir: str | Path, port: int = 9092, host: str = "127.0.0.1",
                 controller_port: int | None = None, libs: str | Path | None = None, heap_mb: int = 512):
        self.data_dir = Path(data_dir)
        self.port = port
        self.host = host
        self.controller_port = controller_port or _saved_controller_port(self.data_dir) or free_port(host)
        self.libs = libs
        self.heap_mb = heap_mb
        self.process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "kafka.log"

    def start(self, timeout_s: float = 90.0) -> "ApacheKafka":
        for port in (self.port, self.controller_port):
            if port_in_use(self.host, port):
                raise BrokerStartError(f"port {port} on {self.host} is already in use: pick another with --port")
        libs = kafka_libs(self.libs)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        java = self._java_command(libs)
        if not (self.data_dir / "log" / "meta.properties").exists():
            self._format(java, config)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([*java, "kafka.Kafka", str(config)], stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=log, start_new_session=True)
        log.close()
        self._wait_ready(offset, timeout_s)
        return self

    def _write_config(self) -> Path:
        props = server_properties(self.data_dir, self.port, self.controller_port, self.host)
        config = self.data_dir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.data_dir / "log4j2.yaml").write_text(LOG4J2)
        return config

    def _java_command(self, libs: Path) -> list[str]:
        classpath = os.pathsep.join(str(p) for p in sorted(libs.glob("*.jar")))
        return ["java", f"-Xmx{self.heap_mb}m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.yaml'}", "-cp", classpath]

    def _format(self, java: list[str], config: Path) -> None:
        done = subprocess.run([*java, "kafka.tools.StorageTool", "format", "--standalone", "-t", new_cluster_id(), "-c",
                               str(config)], capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise BrokerStartError(f"formatting Kafka's data directory {self.data_dir} failed: {last[0]}")

    def _wait_ready(self, offset: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerStartError(f"Apache Kafka exited with code {self.process.returncode} "
                                       f"(log: {self.log_path})")
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                if READY_LINE.encode() in log.read():
                    return
            time.sleep(0.2)
        self.stop()
        raise BrokerStartError(f"Apache Kafka did not start on {self.bootstrap} within {timeout_s:g} s "
                               f"(log: {self.log_path})")


def _saved_controller_port(data_dir: Path) -> int | None:
    """The controller port a formatted data directory was last started with (its quorum names it)."""
    try:
        lines = (data_dir / "server.properties").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition("=")
        if key == "controller.quorum.bootstrap.servers" and value.rpartition(":")[2].isdigit():
            return int(value.rpartition(":")[2])
    return None
