"""Settings of the running system: the broker (``[kafka]``) and the worker (``[worker]``).

They sit beside the learning sections in one TOML file and bind to the environment the same
way (``MEMSTREAM_KAFKA_BOOTSTRAP``, ``MEMSTREAM_WORKER_FLUSH_INTERVAL_S``, ...). Secrets
(``kafka.sasl_password``) are masked wherever a config is printed or written.

Examples
--------
>>> from learner.config import load_config
>>> cfg = load_config(overrides=["kafka.bootstrap=broker:9093", "kafka.sasl_password=hunter2"],
...                   environ={"MEMSTREAM_WORKER_FLUSH_EVERY": "64"}, root=StreamConfig)
>>> cfg.kafka.bootstrap, cfg.worker.flush_every
('broker:9093', 64)
>>> cfg.to_dict()["kafka"]["sasl_password"]
'***'
>>> load_config(overrides=["kafka.security_protocol=SSH"], environ={}, root=StreamConfig)
Traceback (most recent call last):
...
learner.fields.ConfigError: kafka.security_protocol = 'SSH': must be one of PLAINTEXT, SASL_PLAINTEXT, SASL_SSL, SSL
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts.topics import BrokerUnavailable
from learner.config import LearnerConfig
from learner.fields import require, setting

__all__ = ["KafkaConfig", "WorkerConfig", "StreamConfig", "SECRET_MASK"]

SECRET_MASK = "***"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass
class KafkaConfig:
    """The ``[kafka]`` section: where the broker is, topic settings and the client's security.

    >>> KafkaConfig(bootstrap="kafka:9092,kafka2:9092").partitions
    6
    >>> KafkaConfig(bootstrap="kafka")
    Traceback (most recent call last):
    ...
    learner.fields.ConfigError: kafka.bootstrap = 'kafka': must look like HOST:PORT[,HOST:PORT...]
    """

    bootstrap: str = setting("Broker address(es), HOST:PORT[,HOST:PORT...].", "127.0.0.1:9092")
    topic_prefix: str = setting("Prefix of every topic name.", "memstream.")
    partitions: int = setting("Partitions of each topic created at start-up (profiles shard across them).", 6)
    replication: int = setting("Replication factor of topics created at start-up.", 1)
    client_id: str = setting("Client id the broker sees.", "memstream")
    request_timeout_s: float = setting("How long a client waits for the broker before it gives up with an error.",
                                     15.0)
    metadata_max_age_s: float = setting("How often clients read the topics' partitions again: partitions added to a "
                                      "topic are read (and written to) within this many seconds.", 30.0)
    security_protocol: str = setting("PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.", "PLAINTEXT")
    sasl_mechanism: str = setting("PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with a SASL protocol).", "PLAIN")
    sasl_username: str | None = setting("SASL user name.", None)
    sasl_password: str | None = setting("SASL password (secret: never printed; prefer the environment).", None,
                                      repr=False)
    ssl_cafile: str | None = setting("CA bundle that signs the broker's certificate (TLS).", None)
    ssl_certfile: str | None = setting("Client certificate (mutual TLS).", None)
    ssl_keyfile: str | None = setting("Client private key (mutual TLS).", None)

    def __post_init__(self) -> None:
        require(bool(self.bootstrap.strip()), "kafka.bootstrap", self.bootstrap, "must name at least one HOST:PORT")
        for address in self.bootstrap.split(","):
            host, sep, port = address.strip().rpartition(":")
            require(bool(sep and host and port.isdigit() and 0 < int(port) < 65536), "kafka.bootstrap",
                   self.bootstrap, "must look like HOST:PORT[,HOST:PORT...]")
        require(self.partitions >= 1, "kafka.partitions", self.partitions, "must be at least 1")
        require(self.replication >= 1, "kafka.replication", self.replication, "must be at least 1")
        require(self.request_timeout_s > 0, "kafka.request_timeout_s", self.request_timeout_s, "must be positive")
        require(self.metadata_max_age_s > 0, "kafka.metadata_max_age_s", self.metadata_max_age_s, "must be positive")
        require(self.security_protocol in SECURITY_PROTOCOLS, "kafka.security_protocol", self.security_protocol,
               f"must be one of {', '.join(SECURITY_PROTOCOLS)}")
        require(self.sasl_mechanism in SASL_MECHANISMS, "kafka.sasl_mechanism", self.sasl_mechanism,
               f"must be one of {', '.join(SASL_MECHANISMS)}")
        if self.security_protocol.startswith("SASL"):
            require(bool(self.sasl_username and self.sasl_password), "kafka.security_protocol",
                   self.security_protocol, "needs kafka.sasl_username and kafka.sasl_password")

    @property
    def servers(self) -> list[str]:
        return [a.strip() for a in self.bootstrap.split(",")]

    def kafka_python_options(self) -> dict[str, Any]:
        """Connection and security keyword arguments for every kafka-python client."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": int(self.request_timeout_s * 1000),
            "bootstrap_timeout_ms": int(self.request_timeout_s * 1000),  # an unreachable broker fails this fast
            "metadata_max_age_ms": int(self.metadata_max_age_s * 1000),
        }
        if self.security_protocol.startswith("SASL"):
            options.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.sasl_password)
        if self.security_protocol.endswith("SSL"):
            options.update(ssl_cafile=self.ssl_cafile, ssl_certfile=self.ssl_certfile, ssl_keyfile=self.ssl_keyfile)
        return options

    def unavailable(self, exc: BaseException) -> BrokerUnavailable:
        """The one-line error for a client that got no answer from ``bootstrap``: it says whether
        anything listens there (a broker down) or something does but does not speak Kafka (a wrong
        port, another service).

        >>> str(KafkaConfig(bootstrap="127.0.0.1:1", request_timeout_s=2).unavailable(TimeoutError()))
        'no Kafka broker answered at 127.0.0.1:1 within 2 s (TimeoutError): nothing listens there'
        """
        listening = self.listening()
        why = (f"{', '.join(listening)} accepts connections but gave no Kafka answer: is it a Kafka broker's "
               "client listener?") if listening else "nothing listens there"
        return BrokerUnavailable(f"no Kafka broker answered at {self.bootstrap} within {self.request_timeout_s:g} s "
                                 f"({type(exc).__name__}): {why}")

    def listening(self) -> list[str]:
        """The bootstrap addresses where something accepts a TCP connection (each tried for at most 1 s).

        >>> KafkaConfig(bootstrap="127.0.0.1:1").listening()
        []
        """
        return [address for address in self.servers if _accepts_connections(address)]

    def faust_options(self) -> dict[str, Any]:
        """Broker URL and credentials for the faust app."""
        import faust  # only the worker needs faust

        options: dict[str, Any] = {"broker": [f"kafka://{s}" for s in self.servers]}
        ssl_context = None
        if self.security_protocol.endswith("SSL"):
            import ssl

            ssl_context = ssl.create_default_context(cafile=self.ssl_cafile)
            if self.ssl_certfile:
                ssl_context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        if self.security_protocol.startswith("SASL"):
            options["broker_credentials"] = faust.SASLCredentials(
                username=self.sasl_username, password=self.sasl_password,
                mechanism=self.sasl_mechanism, ssl_context=ssl_context)
        elif ssl_context is not None:
            options["broker_credentials"] = faust.SSLCredentials(ssl_context)
        return options

    def public_dict(self) -> dict[str, Any]:
        """The settings with every secret masked (for logs, ``--json`` and ``config --effective``)."""
        data = dict(self.__dict__)
        if data.get("sasl_password"):
            data["sasl_password"] = SECRET_MASK
        return data


@dataclass
class WorkerConfig:
    """The ``[worker]`` section: the consumer group, flushing, limits on events and the trainers.

    >>> WorkerConfig().group, WorkerConfig(flush_interval_s=0.5).flush_interval_s
    ('memstream', 0.5)
    >>> WorkerConfig(max_event_bytes=10)
    Traceback (most recent call last):
    ...
    learner.fields.ConfigError: worker.max_event_bytes = 10: must be at least 256
    """

    group: str = setting("Consumer group of the workers (workers in one group share the profiles).", "memstream")
    flush_interval_s: float = setting("Save dirty learner states and release their offsets for commit this often.",
                                    1.0)
    flush_every: int = setting("... or after this many events, whichever comes first.", 2000)
    checkpoint_retry_s: float = setting("After a version could not be written (disk full, read-only), wait this "
                                      "long before the profile's next run.", 30.0)
    max_event_bytes: int = setting("Largest memory event accepted on the wire, in bytes.", 65536)
    max_text_chars: int = setting("Longest string in an event, in characters.", 16000)
    locked_wait_s: float = setting("How long events of a profile that another process is writing (memstream learn, "
                                 "registry rollback) wait, unacknowledged, before they go to the dead-letter "
                                 "topic; other profiles keep flowing meanwhile.", 300.0)
    profile_idle_s: float = setting("Close a profile that has had no event, run or message to publish for this long: "
                                  "its lock is given back (a profile whose events now come from a partition "
                                  "another worker reads can move there) and its memory freed; its next event "
                                  "opens it again.", 60.0)
    max_parallel_runs: int = setting(
        "Consolidations running at once across profiles (each in its own process); they share the cores this "
        "worker may run on (its CPU affinity) or OMP_NUM_THREADS as torch threads.", 1)
    warm_trainers: bool = setting("Start the trainer processes with the worker, each importing torch and loading "
                                  "the base while the worker joins its group, so that the first run starts at "
                                  "once (false: each starts at its first run).", True)
    metrics_port: int = setting("Port of the Prometheus /metrics endpoint (0: off).", 0)
    session_timeout_s: float = setting("Consumer group session timeout: how soon a dead worker's profiles move.",
                                     10.0)
    stop_commit_timeout_s: float = setting("On stop, how long the last offset commit may take; past it (the broker "
                                         "is unreachable) the worker leaves without it, and those events are read "
                                         "again and skipped by id.", 5.0)
    web_port: int = setting("Port of faust's own web server (0: off).", 0)
    loop_hold_warn_s: float = setting("Log work that holds the event loop (outbox, run starts, metrics; state saves "
                                    "and commits run in a thread) longer than this; every hold is in "
                                    "memstream_event_loop_held_seconds.", 0.1)
    instance_id: str | None = setting("Static group membership id (KIP-345): a worker restarted with the same id "
                                    "takes its partitions back at once instead of waiting for a rebalance.", None)
    leave_group_on_stop: bool = setting("A worker with an instance_id that is stopped (SIGTERM) leaves its group "
                                        "at once, so that its profiles move to the other workers without waiting "
                                        "for its session to time out; false keeps its place for a restart within "
                                        "the session timeout (no rebalance). A worker without one always leaves.",
                                        True)

    def __post_init__(self) -> None:
        require(self.flush_interval_s > 0, "worker.flush_interval_s", self.flush_interval_s, "must be positive")
        require(self.stop_commit_timeout_s > 0, "worker.stop_commit_timeout_s", self.stop_commit_timeout_s,
                "must be positive")
        require(self.flush_every >= 1, "worker.flush_every", self.flush_every, "must be at least 1")
        require(self.max_event_bytes >= 256, "worker.max_event_bytes", self.max_event_bytes, "must be at least 256")
        require(self.max_text_chars >= 16, "worker.max_text_chars", self.max_text_chars, "must be at least 16")
        require(self.locked_wait_s >= 0, "worker.locked_wait_s", self.locked_wait_s, "must not be negative")
        require(self.profile_idle_s > 0, "worker.profile_idle_s", self.profile_idle_s, "must be positive")
        require(self.max_parallel_runs >= 1, "worker.max_parallel_runs", self.max_parallel_runs,
               "must be at least 1")
        require(0 <= self.metrics_port < 65536, "worker.metrics_port", self.metrics_port, "must be a port or 0")
        require(self.loop_hold_warn_s > 0, "worker.loop_hold_warn_s", self.loop_hold_warn_s, "must be positive")
        require(self.session_timeout_s >= 1, "worker.session_timeout_s", self.session_timeout_s,
               "must be at least 1 second")


@dataclass
class StreamConfig(LearnerConfig):
    """The learning sections plus ``kafka`` and ``worker``."""

    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["kafka"] = self.kafka.public_dict()
        return data


def _accepts_connections(address: str, timeout_s: float = 1.0) -> bool:
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False
