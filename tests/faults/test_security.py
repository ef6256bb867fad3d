"""Kafka security settings: SASL (PLAIN/SCRAM) and TLS pass from config and environment to every producer,
consumer, admin client and the faust app; the password never shows in logs, errors or --json output."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import kafka
import kafka.admin as kafka_admin
import pytest

from learner.config import load_config
from streams.settings import StreamConfig

SECRET = "pa55-w0rd-that-must-not-leak"
ENV = {"MEMSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "MEMSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
       "MEMSTREAM_KAFKA_SASL_USERNAME": "memstream", "MEMSTREAM_KAFKA_SASL_PASSWORD": SECRET,
       "MEMSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1", "MEMSTREAM_KAFKA_REQUEST_TIMEOUT_S": "2"}


@pytest.fixture
def secure_config():
    return load_config(environ=ENV, root=StreamConfig)


class Captured(Exception):
    """Raised by a stand-in client constructor once it has recorded its keyword arguments."""


def _capture(monkeypatch, name: str, seen: dict):
    def constructor(*args, **kwargs):
        seen[name] = kwargs
        raise Captured(name)
    monkeypatch.setattr(kafka, name, constructor)
    if name == "KafkaAdminClient":
        monkeypatch.setattr(kafka_admin, name, constructor)


def test_every_kafka_python_client_gets_the_security_settings(secure_config, monkeypatch):
    from consumers.subscriber import Subscriber
    from producers.producer import MemoryProducer
    from streams.topics import admin_client

    seen: dict = {}
    for name in ("KafkaProducer", "KafkaConsumer", "KafkaAdminClient"):
        _capture(monkeypatch, name, seen)
    for make in (lambda: MemoryProducer(secure_config.kafka), lambda: Subscriber(secure_config.kafka),
                 lambda: admin_client(secure_config.kafka)):
        with pytest.raises(Captured):
            make()
    assert set(seen) == {"KafkaProducer", "KafkaConsumer", "KafkaAdminClient"}
    for name, kwargs in seen.items():
        assert kwargs["security_protocol"] == "SASL_SSL", name
        assert kwargs["sasl_mechanism"] == "SCRAM-SHA-256", name
        assert kwargs["sasl_plain_username"] == "memstream" and kwargs["sasl_plain_password"] == SECRET, name


def test_the_faust_app_gets_sasl_over_tls(secure_config):
    import faust

    options = secure_config.kafka.faust_options()
    credentials = options["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.mechanism.name.replace("_", "-") == "SCRAM-SHA-256"
    assert credentials.username == "memstream" and credentials.password == SECRET
    assert credentials.ssl_context is not None  # SASL_SSL: the password only ever travels over TLS


def test_tls_only_gives_the_app_an_ssl_context():
    import faust

    cfg = load_config(environ={"MEMSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL"}, root=StreamConfig)
    assert isinstance(cfg.kafka.faust_options()["broker_credentials"], faust.SSLCredentials)
    assert cfg.kafka.kafka_python_options()["security_protocol"] == "SSL"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **ENV}
    env.pop("MEMSTREAM_TEST_BOOTSTRAP", None)
    return subprocess.run([sys.executable, "-m", "memstream", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_the_password_never_shows_in_json_logs_or_errors(tmp_path, secure_config):
    shown = _run("config", "--effective")
    assert shown.returncode == 0, shown.stderr
    assert SECRET not in shown.stdout + shown.stderr
    assert json.loads(shown.stdout)["kafka"]["sasl_password"] not in ("", None, SECRET)
    described = _run("config")
    assert described.returncode == 0 and SECRET not in described.stdout + described.stderr
    events = tmp_path / "e.jsonl"
    events.write_text(json.dumps({"profile": "sec", "kind": "note", "text": "a secret-free memory"}) + "\n")
    for args in (("publish", str(events), "--json"), ("worker", "--state", str(tmp_path / "state")), ("watch", "all")):
        result = _run(*args)
        assert result.returncode != 0
        assert SECRET not in result.stdout + result.stderr, args
        assert "Traceback" not in result.stderr, result.stderr
    assert SECRET not in repr(secure_config) and SECRET not in secure_config.to_json()
