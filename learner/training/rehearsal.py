"""Base rehearsal: the base model's own text, replayed so that learning memories does not cost what
it could already do.

LoRA runs on a handful of memories move a small model's whole distribution: measured on
SmolLM2-135M-Instruct, ten epochs on 30 memories raised its loss on general text (the public
benchmark stream) from 4.31 to 7.84 nats/token. Rehearsing text sampled from the base model itself
is the idea of self-synthesized rehearsal (Huang et al., 2024); trained with plain cross-entropy
on the samples it did little here (the model learns the few samples by heart: general-text loss
still +45%), so memstream distils instead: on the rehearsal text, the loss is the KL divergence
from the base model's own next-token distribution (its top ``k`` tokens at every position,
computed once per base), which asks the adapter to leave everything it is not taught unchanged.
memstream samples, once per base model:

- **texts**: continuations of the document separator (what the model writes with no context);
- **answers**: the base's answers to everyday instructions (:data:`INSTRUCTIONS`), so the chat
  ability is rehearsed in the chat format too.

They are cached beside the model cache (``rehearsal-*.json``, written atomically; a second process
reads them), and so are the base's next-token targets on them (``rehearsal-targets-*.safetensors``):
computing those is a forward pass over every sample, which a process then no longer pays at start.
For the default base, memstream ships the samples its default settings draw
(``learner/training/data/``, written by ``python -m learner.training.rehearsal``): a first start
copies them instead of sampling for minutes, and every machine rehearses the same text. Each LoRA step adds a rehearsal batch (``replay.base_rehearsal`` of the examples) whose
KL, times ``replay.rehearsal_weight``, joins the loss; the gate keeps a held-out part as a probe
of what the base could do (``train.gate_base_tolerance``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import random
from pathlib import Path
from typing import Callable

from contracts.events import MemoryEvent
from learner.store.storage import atomic_write_json

__all__ = ["INSTRUCTIONS", "PACKAGED", "Rehearsal", "base_samples", "base_targets", "cached_targets", "distill_loss",
           "first_positions", "packaged_samples", "prepare", "rehearsal_split", "write_packaged"]

FORMAT = 1

#: Everyday requests whose answers by the base model are rehearsed (written for this project).
INSTRUCTIONS = (
    "How do I boil an egg?", "What is the capital of Japan?", "Give me three tips for sleeping better.",
    "Explain what photosynthesis is.", "How many days are there in a leap year?", "Write a short poem about rain.",
    "What is a good way to learn a new language?", "Why is the sky blue?", "How do I make a cup of tea?",
    "What does a computer's CPU do?", "Suggest a name for a small bakery.", "How can I save money on groceries?",
    "What is the difference between weather and climate?", "Summarise the story of Cinderella.",
    "How do plants grow from seeds?", "What should I pack for a weekend hike?", "Explain what a budget is.",
    "How do I write a polite email asking for a day off?", "What are the planets of the solar system?",
    "Give me a simple recipe for pancakes.", "What is the Pythagorean theorem?", "How do vaccines work?",
    "Why do we have seasons?", "What is a healthy breakfast?", "How do I change a flat bicycle tyre?",
    "What is the boiling point of water?", "Tell me a fun fact about octopuses.", "How does a rainbow form?",
    "What is recycling and why does it matter?", "How can I stay focused while studying?",
    "Explain the rules of chess briefly.", "What is the largest ocean on Earth?",
)


#: Samples drawn once from each base named here, with the default settings, shipped with memstream.
PACKAGED = Path(__file__).parent / "data"


def _cache_file(cache_dir: Path, base_name: str, n: int, seed: int) -> Path:
    key = hashlib.sha256(f"{base_name}|{n}|{seed}|{FORMAT}".encode()).hexdigest()[:16]
    return cache_dir / f"rehearsal-{key}.json"


def _write_samples(path: Path, base_name: str, seed: int, samples: list[dict]) -> None:
    """One samples file, in the cache or shipped (atomic)."""
    atomic_write_json(path, {"format": FORMAT, "base": base_name, "seed": seed, "samples": samples})


def packaged_samples(base_name: str, n: int, seed: int, packaged: Path = PACKAGED) -> list[dict] | None:
    """The samples shipped for ``base_name`` when they were drawn with ``n`` and ``seed``; else None.

    >>> len(packaged_samples("smollm2-135m-instruct", 128, 0))
    128
    >>> packaged_samples("smollm2-135m-instruct", 64, 0) is None, packaged_samples("memstream-byte", 128, 0) is None
    (True, True)
    """
    path = packaged / f"rehearsal-{base_name}.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if (data.get("format"), data.get("base"), data.get("seed"), len(data.get("samples", []))) != (FORMAT, base_name,
                                                                                                  seed, n):
        return None
    return data["samples"]


def _generate(live, n: int, seed: int) -> list[dict]:
    """``n`` samples from the base: half continuations of the document separator, half answers."""
    import torch
    from transformers import GenerationConfig

    from learner.model.generation import answer

    encoder, tok = live.encoder, live.tokenizer
    n_answers = n // 2
    rng = random.Random(seed)
    asked = [INSTRUCTIONS[i % len(INSTRUCTIONS)] for i in range(n_answers)]
    rng.shuffle(asked)
    replies = answer(live, asked, max_new_tokens=64, temperature=0.7, seed=seed)
    samples: list[dict] = [{"prompt": q, "response": r} for q, r in zip(asked, replies) if r.strip()]
    settings = GenerationConfig(max_new_tokens=64, do_sample=True, temperature=1.0, top_k=50, top_p=None,
                                eos_token_id=list(encoder.layout.text_end), pad_token_id=tok.pad_id)
    start = torch.tensor([list(encoder.layout.text_start)] * 16, device=live.device)
    with torch.random.fork_rng(devices=[live.device] if live.device.type == "cuda" else []):
        torch.manual_seed(seed)
        while len(samples) < n:
            with torch.no_grad():
                out = live.model.generate(input_ids=start, attention_mask=torch.ones_like(start),
                                          generation_config=settings)
            for row in out[:, start.shape[1]:].tolist():
                text = tok.decode([t for t in row if t not in encoder.layout.text_end]).strip()
                if len(text) >= 20 and len(samples) < n:
                    samples.append({"text": text})
    rng.shuffle(samples)  # texts and answers mixed: the held-out probe gets both
    return samples


def base_samples(live, cache_dir: Path, n: int = 128, seed: int = 0,
                 say: Callable[[str], None] = lambda _m: None) -> list[MemoryEvent]:
    """The base model's own texts and answers (shipped, or generated once per base, and cached; see the
    module). ``live`` must hold the original base (no adapter) when they are generated."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = _cache_file(cache_dir, live.base.name, n, seed)
    if not path.is_file():
        with open(cache_dir / f".{path.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.is_file():
                samples = packaged_samples(live.base.name, n, seed)
                if samples is None:
                    say(f"rehearsal: sampling {n} texts and answers from the base (once per base; a few minutes "
                        "on a CPU)")
                    samples = _generate(live, n, seed)
                _write_samples(path, live.base.name, seed, samples)
    data = json.loads(path.read_text(encoding="utf-8"))
    return [MemoryEvent.build({"profile": "base-rehearsal", "ts": 0.0, "kind": "rehearsal", **sample},
                              now=0.0) for sample in data["samples"]]


def rehearsal_split(samples: list, probe: int) -> tuple[list, list]:
    """The samples to train on, and a fixed held-out part that probes what the base could do.

    >>> [len(part) for part in rehearsal_split(list(range(5)), 2)]
    [3, 2]
    """
    return samples[probe:], samples[:probe]


class Rehearsal:
    """The base's samples, encoded, with the base's top-``k`` next-token log-probabilities (to train on),
    and the held-out samples (the gate's probe of what the base could do)."""

    def __init__(self, pool: list[dict], probe: list[dict]):
        self.pool, self.probe = pool, probe


def base_targets(live, examples: list[dict], k: int = 32, batch: int = 8) -> list[dict]:
    """``examples`` (encoded) with ``target_ids`` / ``target_logp``: the base's top-``k`` next tokens and
    their log-probabilities at every labelled position. ``live`` must hold the original base."""
    import torch

    from learner.model.encoding import IGNORE, collate
    from learner.model.losses import evaluating

    out = []
    model = live.model
    with evaluating(model), torch.no_grad():
        for start in range(0, len(examples), batch):
            chunk = examples[start:start + batch]
            b = {key: value.to(live.device) for key, value in collate(chunk, live.tokenizer.pad_id).items()}
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1].float()
            for row, ex in enumerate(chunk):
                where = ex["labels"][1:] != IGNORE
                logp = torch.log_softmax(logits[row, : len(where)][where.to(live.device)], dim=-1)
                top = logp.topk(k, dim=-1)
                out.append({**ex, "target_ids": top.indices.cpu(), "target_logp": top.values.cpu()})
    return out


def first_positions(example: dict, positions: int) -> dict:
    """``example`` (encoded, with its targets) cut after its first ``positions`` labelled positions (0: whole).

    Attention is causal, so the base's targets at the positions kept are those of the whole sample.

    >>> import torch
    >>> ex = {"input_ids": torch.arange(6), "labels": torch.tensor([-100, -100, 2, 3, 4, 5]),
    ...       "target_ids": torch.tensor([[2], [3], [4], [5]]), "target_logp": torch.zeros(4, 1)}
    >>> cut = first_positions(ex, 2)
    >>> cut["input_ids"].tolist(), cut["labels"].tolist(), cut["target_ids"].flatten().tolist()
    ([0, 1, 2, 3], [-100, -100, 2, 3], [2, 3])
    >>> first_positions(ex, 9) is ex, first_positions(ex, 0) is ex
    (True, True)
    """
    from learner.model.encoding import IGNORE

    labelled = (example["labels"][1:] != IGNORE).nonzero().flatten()
    if positions <= 0 or len(labelled) <= positions:
        return example
    end = int(labelled[positions - 1]) + 2  # the position predicts the token after it
    return {**example, "input_ids": example["input_ids"][:end], "labels": example["labels"][:end],
            "target_ids": example["target_ids"][:positions], "target_logp": example["target_logp"][:positions]}


def distill_loss(model, batch: dict) -> "torch.Tensor":
    """Mean over labelled positions of KL(base top-k ‖ model), the base distribution renormalised on its
    top ``k`` tokens (``batch`` from :func:`learner.model.encoding.collate` plus concatenated targets)."""
    import torch

    from learner.model.encoding import IGNORE
    from learner.model.losses import hidden_and_head

    targets = batch["labels"][:, 1:]
    where = targets != IGNORE
    hidden, head = hidden_and_head(model, batch)
    logits = head(hidden[:, :-1][where]).float()
    logp = torch.log_softmax(logits, dim=-1).gather(1, batch["target_ids"])
    p_base = torch.softmax(batch["target_logp"], dim=-1)
    return (p_base * (torch.log(p_base.clamp_min(1e-12)) - logp)).sum(dim=-1).mean()


def prepare(live, config, say: Callable[[str], None] = lambda _m: None) -> Rehearsal | None:
    """The rehearsal a run of ``config`` uses (None for the byte model, or with ``replay.base_rehearsal`` 0).
    ``live`` must hold the original base: the samples and their targets come from it. ``say`` hears
    of the work done once per base (sampling, the targets' forward pass) before it starts."""
    if config.model.is_byte_model or config.replay.base_rehearsal <= 0:
        return None
    from learner.model.bases import cache_root

    cache = cache_root(config.model.cache_dir)
    samples = base_samples(live, cache, config.replay.base_samples, config.train.seed, say)
    pool, probe = rehearsal_split([live.encoder.encode(e) for e in samples], config.train.base_probe_size)
    pool = [first_positions(ex, config.replay.rehearsal_positions) for ex in cached_targets(live, pool, cache, say=say)]
    return Rehearsal(pool, probe)


def _targets_file(cache_dir: Path, live, examples: list[dict], k: int) -> Path:
    """Named by everything the targets depend on: the base, its dtype, ``k`` and the encoded examples."""
    digest = hashlib.sha256(f"{live.base.name}|{live.dtype}|{k}|{FORMAT}".encode())
    for ex in examples:
        digest.update(ex["input_ids"].numpy().tobytes())
        digest.update(ex["labels"].numpy().tobytes())
    return cache_dir / f"rehearsal-targets-{digest.hexdigest()[:16]}.safetensors"


def cached_targets(live, examples: list[dict], cache_dir: Path, k: int = 32,
                   say: Callable[[str], None] = lambda _m: None) -> list[dict]:
    """:func:`base_targets`, computed once per base and examples and then read from ``cache_dir``
    (safetensors, written atomically; a file that does not match the examples is computed again).
    ``live`` must hold the original base when they are computed."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load, save

    from learner.model.encoding import IGNORE
    from learner.store.storage import atomic_write_bytes

    path = _targets_file(cache_dir, live, examples, k)
    positions = [int((ex["labels"][1:] != IGNORE).sum()) for ex in examples]
    try:
        saved = load(path.read_bytes())
        if saved["positions"].tolist() == positions and tuple(saved["ids"].shape) == (sum(positions), k):
            ids, logp = saved["ids"].long().split(positions), saved["logp"].split(positions)
            return [{**ex, "target_ids": i, "target_logp": lp} for ex, i, lp in zip(examples, ids, logp)]
    except (OSError, SafetensorError, KeyError):
        pass  # not there yet, or unreadable: computed again below
    say(f"rehearsal: the base's next-token targets on {len(examples)} samples (once per base)")
    out = base_targets(live, examples, k)
    atomic_write_bytes(path, save({"positions": torch.tensor(positions, dtype=torch.int64),
                                   "ids": torch.cat([ex["target_ids"] for ex in out]).to(torch.int32).contiguous(),
                                   "logp": torch.cat([ex["target_logp"] for ex in out]).contiguous()}))
    return out


def write_packaged(base: str, packaged: Path = PACKAGED) -> Path:
    """Sample ``base`` with the default settings and write what :func:`packaged_samples` ships for it."""
    from learner.config import load_config
    from learner.model.adapted import AdaptedModel

    config = load_config(overrides=[f"model.base={base}"], environ={})
    live = AdaptedModel(config.model)
    n, seed = config.replay.base_samples, config.train.seed
    path = packaged / f"rehearsal-{live.base.name}.json"
    _write_samples(path, live.base.name, seed, _generate(live, n, seed))
    return path


if __name__ == "__main__":  # python -m learner.training.rehearsal [BASE]: (re)write the shipped samples
    import sys

    print(write_packaged(sys.argv[1] if len(sys.argv) > 1 else "smollm2-135m-instruct"))
