import json

import pytest

from learner.store.registry import ModelRegistry, RegistryError
from learner.store.storage import CorruptStateError


def commit(reg, n, mode="lora", base_version=None):
    return reg.commit_version({"w.bin": f"weights {n}".encode()},
                              {"run_id": f"r{n}", "mode": mode, "trigger": "count", "samples_trained": n,
                               "base_version": base_version})


def test_fields_a_monthly_retraining_user_recognises(tmp_path):
    reg = ModelRegistry.open(tmp_path, "alice", "memstream-byte")
    commit(reg, 1, mode="foundation")
    data = json.loads((tmp_path / "alice" / "registry.json").read_text())
    assert {"original_base_model", "current_version", "training_history", "versioning"} <= set(data)
    entry = data["training_history"][0]
    assert {"version", "run_id", "timestamp", "base_model_used", "output_model_path", "samples_trained",
            "training_success"} <= set(entry)
    assert data["versioning"]["keep_versions"] == 4


def test_prunes_to_keep_versions_but_keeps_history_and_the_foundation(tmp_path):
    reg = ModelRegistry.open(tmp_path, "alice", "memstream-byte", keep_versions=2)
    commit(reg, 1, mode="foundation")
    for n in range(2, 7):
        commit(reg, n, base_version=1)
    assert reg.kept_versions() == [1, 5, 6]  # v1 is the base of the kept LoRA versions
    assert len(reg.history) == 6 and reg.entry(3)["pruned"]
    assert not reg.version_dir(3).exists()
    with pytest.raises(RegistryError, match="pruned"):
        reg.rollback(3)


def test_tampered_file_is_refused(tmp_path):
    reg = ModelRegistry.open(tmp_path, "alice", "b")
    commit(reg, 1)
    (reg.version_dir(1) / "w.bin").write_bytes(b"evil")
    with pytest.raises(CorruptStateError, match="w.bin fails its sha256 check"):
        reg.verify(1)
    with pytest.raises(CorruptStateError):
        reg.rollback(1)


def test_tampered_manifest_is_refused(tmp_path):
    reg = ModelRegistry.open(tmp_path, "alice", "b")
    commit(reg, 1)
    manifest = reg.version_dir(1) / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"w.bin"', '"w.bin" ').replace("  ", " "))
    with pytest.raises(CorruptStateError, match="manifest.json does not match"):
        reg.verify(1)


def test_uncommitted_version_directory_is_removed_on_open(tmp_path):
    reg = ModelRegistry.open(tmp_path, "alice", "b")
    commit(reg, 1)
    orphan = reg.version_dir(2)  # a crash after the rename, before registry.json was replaced
    orphan.mkdir()
    (orphan / "w.bin").write_bytes(b"half")
    (reg.directory / "versions" / ".tmp-v0003-abc").mkdir()
    reg = ModelRegistry.open(tmp_path, "alice", "b")
    assert not orphan.exists() and reg.kept_versions() == [1]
    assert not list((reg.directory / "versions").glob(".tmp-*"))
    assert commit(reg, 2) == 2


def test_rollback_and_reset_keep_lineage(tmp_path):
    reg = ModelRegistry.open(tmp_path, "alice", "b")
    for n in (1, 2, 3):
        commit(reg, n)
    reg.rollback(1)
    assert reg.current_version == 1
    assert commit(reg, 4) == 4 and reg.entry(4)["parent_version"] == 1
    reg.reset()
    assert reg.current_version is None
    assert [a["action"] for a in reg.data["actions"]] == ["rollback", "reset"]
    with pytest.raises(RegistryError, match="not in the registry"):
        reg.rollback(9)


def test_rejected_runs_are_recorded_without_a_version(tmp_path):
    reg = ModelRegistry.open(tmp_path, "alice", "b")
    commit(reg, 1)
    entry = reg.record_run({"run_id": "x", "reason": "forgetting"}, "rejected")
    assert entry["version"] is None and not entry["training_success"] and reg.current_version == 1
    with pytest.raises(RegistryError, match="not accepted"):
        reg.data["training_history"][-1]["version"] = 7
        reg.rollback(7)
