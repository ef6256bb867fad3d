import json

import pytest

from learner.config import ConfigError, LearnerConfig, SchedulerConfig, describe, load_config
from learner.policy.scheduler import ConsolidationScheduler


def test_count_trigger_and_counters_survive_restore():
    s = ConsolidationScheduler(SchedulerConfig(count=5, interval_s=None))
    assert [s.observe(now=i) for i in range(5)] == [None] * 4 + ["count"]
    restored = ConsolidationScheduler.restore(json.loads(json.dumps(s.snapshot())))
    assert restored.new_examples == 5 and restored.total_examples == 5
    restored.mark_consolidated(now=5, examples_covered=5)
    assert restored.observe(now=6) is None and restored.consolidations == 1


def test_time_trigger_needs_min_examples():
    s = ConsolidationScheduler(SchedulerConfig(count=100, interval_s=10, min_examples=3))
    s.observe(now=0)
    assert s.observe(now=20) is None  # only 2 examples
    assert s.observe(now=21) == "time"


def test_drift_and_manual_take_precedence():
    s = ConsolidationScheduler(SchedulerConfig(count=3, interval_s=None, min_examples=1, after_drift=0))
    s.observe(now=0)
    s.request("drift")
    assert s.due(now=0) == "drift"
    s.request("manual")
    assert s.observe(now=1) == "manual"
    with pytest.raises(ValueError, match="only 'manual' and 'drift'"):
        s.request("count")


def test_covered_examples_only_are_subtracted():
    s = ConsolidationScheduler(SchedulerConfig(count=10, interval_s=None))
    for i in range(12):
        s.observe(now=i)
    s.mark_consolidated(now=12, examples_covered=10)  # two arrived during the run
    assert s.new_examples == 2


def test_config_precedence_file_env_flags(tmp_path):
    file = tmp_path / "c.toml"
    file.write_text("[train]\nepochs = 2\nlr = 0.01\n[ewc]\nlam = 5\n")
    cfg = load_config(file, ["train.lr=0.5"], environ={"MEMSTREAM_TRAIN_EPOCHS": "4", "MEMSTREAM_STATE": "/x"})
    assert (cfg.train.epochs, cfg.train.lr, cfg.ewc.lam) == (4, 0.5, 5.0)


@pytest.mark.parametrize("overrides, message", [
    (["train.epoch=3"], "unknown config key 'train.epoch'"),
    (["nope.x=1"], "unknown config section 'nope'"),
    (["train.epochs=two"], "train.epochs = 'two': must be an integer"),
    (["train.replay_ratio=1.5"], "train.replay_ratio = 1.5"),
    (["model.d_model=30"], "divisible by model.n_heads"),
    (["trainepochs"], "section.key=value"),
    (["drift.enabled=1"], "must be true or false"),
])
def test_bad_config_names_the_value(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_config(overrides=overrides, environ={})


def test_missing_and_broken_config_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, environ={})


def test_describe_is_a_loadable_config_of_the_defaults(tmp_path):
    file = tmp_path / "defaults.toml"
    file.write_text(describe())
    assert load_config(file, environ={}) == LearnerConfig()


def test_every_memstream_variable_the_code_reads_is_a_setting_or_outside_the_config_sections():
    """``MEMSTREAM_<SECTION>_<KEY>`` sets a config key: a variable of memstream's own that begins with a section's
    name would stop every worker started where it is set ("unknown config key")."""
    import re
    from pathlib import Path

    from learner.config import _section_classes
    from streams.settings import StreamConfig

    root = Path(__file__).resolve().parents[1]
    sources = [p for folder in ("learner", "streams", "memstream", "producers", "consumers", "contracts", "tests")
               for p in (root / folder).rglob("*.py")] + [root / "dev", root / "docker-compose.yml"]
    names = {m for p in sources for m in re.findall(r"MEMSTREAM_[A-Z0-9_]*[A-Z0-9]", p.read_text(encoding="utf-8"))}
    assert "MEMSTREAM_APACHE_KAFKA_LIBS" in names and "MEMSTREAM_CPU_BF16" in names  # the scan sees them
    sections = _section_classes(StreamConfig)
    clashes = []
    for name in sorted(names):
        section, _, key = name[len("MEMSTREAM_"):].lower().partition("_")
        if section in sections and key:
            try:
                load_config(environ={name: "1"}, root=StreamConfig)
            except ConfigError as exc:
                if "unknown config key" in str(exc):
                    clashes.append(name)
    assert not clashes, clashes
