"""A Hugging Face causal LM from a local path: LoRA from the start, targets found automatically."""

import pytest
import torch

from learner.config import load_config
from learner.model.loading import find_lora_targets
from learner.online import OnlineLearner
from tests.conftest import TINY


def save_local_model(path, kind):
    from transformers import ByT5Tokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if kind == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=259, n_embd=32, n_layer=1, n_head=2, n_positions=128,
                                           bos_token_id=1, eos_token_id=1, pad_token_id=0))
    else:
        model = LlamaForCausalLM(LlamaConfig(vocab_size=259, hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                             bos_token_id=1, eos_token_id=1, pad_token_id=0))
    model.save_pretrained(path, safe_serialization=True)
    ByT5Tokenizer(extra_ids=0).save_pretrained(path)
    return path


@pytest.mark.parametrize("kind, targets", [
    ("llama", ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]),
    ("gpt2", ["c_attn", "c_fc", "c_proj"]),
])
def test_local_hf_model_trains_lora_from_the_first_run(tmp_path, small_stream, kind, targets):
    path = save_local_model(tmp_path / kind, kind)
    cfg = load_config(overrides=TINY + [f"model.base={path}"], environ={})
    learner = OnlineLearner("alice", cfg, tmp_path / "state")
    assert find_lora_targets(learner.live.base.model) == targets
    steps = learner.learn_many(small_stream[:100])
    report = next(s.consolidation for s in steps if s.consolidation)
    assert report.mode == "lora" and report.accepted, report.reason
    entry = learner.registry.entry(report.version)
    assert entry["base_model_used"] == str(path.resolve()) and entry["base_version"] is None
    reloaded = OnlineLearner.open(tmp_path / "state", "alice", cfg)
    ids = torch.tensor([[1, 70, 80, 90]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded.model(input_ids=ids).logits, learner.model(input_ids=ids).logits)


def test_missing_local_model_is_one_clear_error(tmp_path):
    cfg = load_config(overrides=TINY + [f"model.base={tmp_path / 'nope'}"], environ={})
    with pytest.raises(ValueError, match="not a known model name .*, a local model directory or a .gguf file"):
        _ = OnlineLearner("alice", cfg, tmp_path).live


def test_the_base_rehearsal_targets_are_computed_once_and_read_back_the_same(tmp_path, monkeypatch):
    from learner.model.adapted import AdaptedModel
    from learner.training import rehearsal

    path = save_local_model(tmp_path / "llama", "llama")
    cfg = load_config(overrides=[f"model.base={path}", f"model.cache_dir={tmp_path / 'cache'}", "model.max_seq_len=64",
                                 "replay.base_samples=8", "train.base_probe_size=2"], environ={})
    live = AdaptedModel(cfg.model)
    first = rehearsal.prepare(live, cfg)
    [saved] = (tmp_path / "cache").glob("rehearsal-targets-*.safetensors")

    def not_again(*_args, **_kwargs):
        raise AssertionError("the targets were computed again")

    monkeypatch.setattr(rehearsal, "base_targets", not_again)
    again = rehearsal.prepare(live, cfg)
    assert len(again.pool) == len(first.pool) == 6
    for a, b in zip(first.pool, again.pool):
        assert torch.equal(a["target_ids"], b["target_ids"]) and torch.equal(a["target_logp"], b["target_logp"])
    saved.write_bytes(b"not safetensors")  # a damaged file is not trusted: computed again
    monkeypatch.undo()
    third = rehearsal.prepare(live, cfg)
    assert all(torch.equal(a["target_logp"], c["target_logp"]) for a, c in zip(first.pool, third.pool))
    assert saved.read_bytes() != b"not safetensors"


def test_the_default_base_rehearses_the_shipped_samples_without_sampling(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from learner.training import rehearsal

    def no_sampling(*_args, **_kwargs):
        raise AssertionError("the base was sampled although its samples are shipped")

    monkeypatch.setattr(rehearsal, "_generate", no_sampling)
    said = []
    live = SimpleNamespace(base=SimpleNamespace(name="smollm2-135m-instruct"))
    samples = rehearsal.base_samples(live, tmp_path, n=128, seed=0, say=said.append)
    shipped = rehearsal.packaged_samples("smollm2-135m-instruct", 128, 0)
    assert [e.text or e.response for e in samples] == [s.get("text") or s["response"] for s in shipped]
    assert said == [] and len(list(tmp_path.glob("rehearsal-*.json"))) == 1
    with pytest.raises(AssertionError, match="sampled"):  # other settings than the shipped ones: sampled here
        rehearsal.base_samples(live, tmp_path, n=64, seed=0, say=said.append)
    assert said and "sampling 64" in said[0]


def test_a_folded_adapter_keeps_what_it_learned_in_the_weights_and_the_next_run_starts_a_fresh_one(tmp_path):
    from learner.model.adapted import AdaptedModel

    path = save_local_model(tmp_path / "llama", "llama")
    live = AdaptedModel(load_config(overrides=[f"model.base={path}", "model.max_seq_len=64"], environ={}).model)
    before = live.base_state()
    live.start_lora()
    with torch.no_grad():
        for name, p in live.peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    ids = torch.tensor([[1, 70, 80, 90]])
    with torch.no_grad():
        adapted = live.model(input_ids=ids).logits
        live.fold_adapter("folded")
        folded = live.model(input_ids=ids).logits
    assert not live.has_adapter and live.base_tag == "folded"
    torch.testing.assert_close(folded, adapted, rtol=1e-4, atol=1e-5)
    assert any(not torch.equal(before[k], v) for k, v in live.base_state().items())
    live.start_lora()  # B = 0: the folded weights alone decide the output
    with torch.no_grad():
        torch.testing.assert_close(live.model(input_ids=ids).logits, folded)


def test_progressive_adapters_in_the_recall_bench_leave_the_base_as_it_was_for_the_next_strategy(tmp_path):
    from memstream.bench.recall import run_recall

    path = save_local_model(tmp_path / "llama", "llama")
    cfg = load_config(overrides=TINY + [f"model.base={path}", f"model.cache_dir={tmp_path / 'cache'}",
                                        "train.epochs=1", "replay.base_samples=8", "train.base_probe_size=2"],
                      environ={})
    both = run_recall(cfg, ["replay+progressive", "naive"], [0], phases=2, facts_per_phase=1, max_new_tokens=4,
                      general_events=4)
    alone = run_recall(cfg, ["naive"], [0], phases=2, facts_per_phase=1, max_new_tokens=4, general_events=4)
    progressive = both["strategies"]["replay+progressive"]
    assert all(run["steps"] > 0 for run in progressive["phases"][0])
    assert both["strategies"]["naive"]["general_loss_ratio"] == alone["strategies"]["naive"]["general_loss_ratio"]
