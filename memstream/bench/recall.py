"""``memstream bench recall``: does the model remember what it was told, keep it, and keep what it knew?

Protocol (the same for every strategy, seed by seed)
    1. A fictional person (:func:`memstream.samples.facts.make_person`, values drawn with the seed) tells
       ``facts_per_phase`` facts per phase, each as three memory events: a conversation turn, an
       observation and a reflection (shuffled within the phase).
    2. After each phase, one consolidation, through memstream's own loop
       (:func:`learner.training.loop.run_consolidation`): the same epochs, LR, LoRA shape and seeds
       for every strategy.
    3. After each phase, every held-out question of every phase is asked (greedy decoding, in the
       chat format the model was trained in); an answer counts when it contains the fact's key word.
       ``R[i][j]`` is the recall of phase ``j``'s facts after phase ``i``.
       ``L[i][j]`` and ``C[i][j]`` grade the same (:mod:`memstream.bench.recall_choice`): the loss of the
       fact's answer sentence after each held-out question, and the probability the model gives the
       told value among every value its relation can take: they move with every question's margin, not
       only when an answer flips.
    4. **Base capability**: the loss (nats/token) on general text the memories never touch — held-out
       events of the public benchmark stream (code, licences, changelogs, manual pages) — before any
       training and after the last phase (ratio; ≤ 1.05 is the target).

Strategies
    ``naive``        the phase's events only.
    ``replay``       + a reservoir sample of earlier events (``train.replay_ratio`` of the batch).
    ``replay+ewc``   + the EWC penalty + base rehearsal (``replay.base_rehearsal`` of the batch is the base
                     model's own text, :mod:`learner.training.rehearsal`): memstream's learning rule.
    ``joint``        every event told so far, mixed, + base rehearsal (what retraining from scratch each
                     time would see).
    ``memstream``    the product path: an :class:`learner.online.OnlineLearner` that learns the events and
                     consolidates at the end of each phase, **with** its evaluation gate and retry policy
                     (a refused first attempt is retried at once; the others run with the gate off: they
                     measure the learning rule, not the safety net).
    ``replay+progressive``
                     replay + base rehearsal, and after each run its adapter is merged into the weights and
                     frozen: every run trains a fresh adapter on top of the ones before (no EWC: nothing
                     trained earlier can move). Merged, the adapters cost nothing at inference.
    ``replay+ewc+paraphrase``
                     replay+ewc, and before each run the current model rewrites every new memory
                     twice (sampled; a rewrite that loses a capitalised word or a number of the
                     original is dropped); the rewrites train beside the originals. The published
                     knowledge-injection result this tries: diverse wordings of a fact raise recall.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from learner.config import LearnerConfig
from learner.training.loop import run_consolidation
from learner.model.losses import mean_loss
from contracts.events import MemoryEvent
from learner.training.ewc import EWC
from memstream.samples.diary import make_diary_person
from memstream.samples.facts import Person, make_person, recalled
from memstream.samples.wider import make_wider_person
from learner.model.generation import answer
from learner.memory.replay import ReservoirBuffer
from learner.training.plan import Plan
from learner.training.trainer import Trainer
from learner.store.versions import LORA, ewc_from_bytes
from memstream.bench.paraphrase import paraphrased
from memstream.bench.recall_choice import graded_by_phase
from memstream.bench.recall_summary import acceptance, summary

__all__ = ["PEOPLE", "STRATEGIES", "run_recall", "general_text"]

#: The made-up people: noted down, telling a diary, and noted down with more to tell (four themes of twenty).
PEOPLE = {"facts": make_person, "diary": make_diary_person, "wider": make_wider_person}
STRATEGIES = ("naive", "replay", "replay+ewc", "joint", "memstream", "replay+progressive", "replay+ewc+paraphrase")
PROFILE = "recall"


@dataclass
class SeedRun:
    R: list[list[float]]
    general_loss: float
    seconds: float
    phases: list[dict] = field(default_factory=list)
    answers: list[dict] = field(default_factory=list)
    graded: list[tuple[list[float], list[float]]] = field(default_factory=list)  # after each phase: (L, C) rows


def general_text(n: int = 64) -> list[MemoryEvent]:
    """Held-out general text: every 53rd event of the public stream (all four domains)."""
    from memstream.samples.public_stream import load_public_stream

    return load_public_stream()[::53][:n]


def _phase_events(person: Person, phase: int, seed: int) -> list[MemoryEvent]:
    rng = random.Random(seed * 100 + phase)
    ts = 1_767_225_600.0 + phase * 86_400
    events = [MemoryEvent.build(e) for i, f in enumerate(person.phase(phase))
              for e in f.events(PROFILE, ts + 10 * i, id_prefix=f"s{seed}-")]
    rng.shuffle(events)
    return events


def _gate_off(config: LearnerConfig, ewc: bool) -> LearnerConfig:
    train = replace(config.train, gate_tolerance=1e9, gate_max_forgetting=1e9, gate_base_tolerance=1e9)
    return replace(config, train=train, ewc=replace(config.ewc, enabled=ewc))


class _Asker:
    """Every held-out question of a person, asked of the live model; recall per phase."""

    def __init__(self, person: Person, max_new_tokens: int):
        self.person = person
        self.asked = [(f, q) for f in person.facts for q in f.questions]
        self.max_new_tokens = max_new_tokens

    def row(self, live, in_context: bool = False) -> tuple[list[float], list[dict]]:
        """Recall per phase; ``in_context``: each question comes after the fact's own memories (the ceiling
        a model that learned them perfectly, and answered as with them in view, would reach)."""
        prompts = [_with_memories(f, q) if in_context else q for f, q in self.asked]
        answers = answer(live, prompts, max_new_tokens=self.max_new_tokens)
        hits = [[0, 0] for _ in range(self.person.phases)]
        shown = []
        for (fact, question), text in zip(self.asked, answers):
            ok = recalled(fact, text)
            hits[fact.phase][0] += ok
            hits[fact.phase][1] += 1
            shown.append({"phase": fact.phase, "question": question, "expected": fact.value, "answer": text,
                          "recalled": ok})
        return [h / n for h, n in hits], shown

    def graded(self, live) -> tuple[list[float], list[float]]:
        """Graded recall per phase: the told answer's loss, and the told value's share among its relation's."""
        return graded_by_phase(live, self.asked, self.person.phases)


def _with_memories(fact, question: str) -> str:
    said = [e.get("text") or e["response"] for e in fact.events(PROFILE, 0.0)]
    return "What you know about me:\n" + "\n".join(f"- {s}" for s in said) + f"\n\n{question}"


def _run_costs(*results) -> dict:
    """What a phase's runs cost together (tokens trained, examples that rested once learned) and how far
    its last run moved the model (views, KL(base ‖ tuned) on its new memories)."""
    m = results[-1].metrics
    return {"tokens": sum(r.metrics.get("tokens_real") or 0 for r in results),
            "views": (m.get("views") or {}).get("views", 0),
            "rested": sum(r.metrics.get("rested_examples", 0) for r in results), "kl_base_new": m.get("kl_base_new")}


def _general_loss(live, examples) -> float:
    return mean_loss(live.model, examples, live.tokenizer.pad_id, device=live.device)


def _rule_strategy(name: str, trainer: Trainer, person: Person, config: LearnerConfig, seed: int,
                   asker: _Asker, general, progress: Callable[[int], None]) -> SeedRun:
    uses_ewc = name.startswith("replay+ewc")
    cfg = _gate_off(config, uses_ewc)
    live = trainer.checkout(None, None, cfg)  # the original base, no adapter
    progressive = name.endswith("+progressive")
    original = live.base_state() if progressive else None  # merged adapters change the base: put it back after
    ewc = EWC(cfg.ewc.lam if uses_ewc else 0.0, cfg.ewc.gamma)
    reservoir = ReservoirBuffer(cfg.replay.capacity, seed=seed)
    rng = random.Random(seed)
    told: list[MemoryEvent] = []
    R, graded, phases = [], [], []
    started = time.perf_counter()
    shown = []
    for phase in range(person.phases):
        new = _phase_events(person, phase, seed)
        told += new
        replay = []
        if name == "joint":
            new = rng.sample(told, len(told))
        elif name.startswith("replay") and len(reservoir):
            want = round(len(new) * cfg.train.replay_ratio / (1 - cfg.train.replay_ratio))
            replay = reservoir.sample(want, rng)
        rewrites = paraphrased(live, new, seed=seed * 100 + phase) if name.endswith("+paraphrase") else []
        new = new + rewrites
        plan = Plan("manual", LORA, new, replay, new[:4], None, seed=seed * 1000 + phase)
        rehearse = trainer.rehearsal(cfg) if name not in ("naive", "replay") else None
        result = run_consolidation(plan, live, cfg, ewc, profile=f"{name}/seed {seed}", rehearsal=rehearse)
        if result.status != "accepted":
            raise RuntimeError(f"{name}, phase {phase}: {result.status} ({result.reason})")
        if uses_ewc:
            ewc = ewc_from_bytes(result.files["ewc.safetensors"], cfg)
        if progressive:
            live.fold_adapter(("bench", name, seed, phase))
        for event in _phase_events(person, phase, seed):
            reservoir.add(event)
        row, shown = asker.row(live)
        R.append(row)
        graded.append(asker.graded(live))
        phases.append({"new": len(new), "rewrites": len(rewrites), "replay": len(replay), "steps": result.steps,
                       "train_loss": result.metrics.get("train_loss_mean"), "seconds": result.duration_s,
                       **_run_costs(result)})
        progress(1)
    general_loss = _general_loss(live, general)
    live.tag = ("bench", name)  # trained weights no version has: the next checkout starts from the base
    if original is not None:
        live.load_base_state(original, "original")
    return SeedRun(R, general_loss, time.perf_counter() - started, phases, shown, graded)


def _product_strategy(trainer: Trainer, person: Person, config: LearnerConfig, seed: int, asker: _Asker,
                      general, progress: Callable[[int], None]) -> SeedRun:
    from learner.online import OnlineLearner

    cfg = replace(config, scheduler=replace(config.scheduler, count=10**9, interval_s=None,
                                            consolidate_on_drift=False))
    R, graded, phases, shown = [], [], [], []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="memstream-recall-") as state:
        learner = OnlineLearner(PROFILE, cfg, state, auto_consolidate=False)
        for phase in range(person.phases):
            learner.learn_many(_phase_events(person, phase, seed))
            runs = learner.consolidate_runs("manual")  # a refused first attempt is retried at once
            result = runs[-1]
            row, shown = asker.row(learner.live)
            R.append(row)
            graded.append(asker.graded(learner.live))
            phases.append({"status": result.status, "reason": result.reason, "attempt": result.attempt,
                           "refused": [r.reason for r in runs[:-1]], "new": result.samples_new,
                           "replay": result.samples_replay, "steps": sum(r.steps for r in runs),
                           "seconds": sum(r.duration_s for r in runs), "version": result.version,
                           **_run_costs(*runs)})
            progress(1)
        general_loss = _general_loss(learner.live, general)
        learner.close()
    return SeedRun(R, general_loss, time.perf_counter() - started, phases, shown, graded)


def check_strategies(names: list[str]) -> None:
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown or not names:
        raise ValueError(f"unknown strategy {(unknown or [''])[0]!r} (known: {', '.join(STRATEGIES)})")


def run_recall(config: LearnerConfig, strategies: list[str], seeds: list[int], phases: int = 3,
               facts_per_phase: int = 10, max_new_tokens: int = 24, general_events: int = 64, people: str = "facts",
               progress: Callable[[int], None] = lambda _n: None,
               log: Callable[[str], None] = lambda _m: None) -> dict:
    """Run the protocol for every strategy and seed; returns the JSON-ready results."""
    check_strategies(strategies)
    if people not in PEOPLE:
        raise ValueError(f"unknown people {people!r} (known: {', '.join(PEOPLE)})")
    if not seeds:
        raise ValueError("at least one seed is needed")
    trainer = Trainer(config.model)
    live = trainer.checkout(None, None, config)
    general = [live.encoder.encode(e) for e in general_text(general_events)]
    base_general = _general_loss(live, general)
    runs: dict[str, list[SeedRun]] = {name: [] for name in strategies}
    base_rows, context_rows, base_graded = [], [], []
    for seed in seeds:
        person = PEOPLE[people](seed, phases, facts_per_phase)
        asker = _Asker(person, max_new_tokens)
        base_row, _ = asker.row(trainer.checkout(None, None, config))
        base_graded.append(asker.graded(trainer.checkout(None, None, config)))
        context_row, _ = asker.row(trainer.checkout(None, None, config), in_context=True)
        base_rows.append(base_row)
        context_rows.append(context_row)
        log(f"seed {seed}: the untrained base recalls {', '.join(f'{x:.0%}' for x in base_row)}; "
            f"with each fact's memories in its context {', '.join(f'{x:.0%}' for x in context_row)}; "
            f"graded: answer loss {', '.join(f'{x:.2f}' for x in base_graded[-1][0])}, "
            f"value choice {', '.join(f'{x:.3f}' for x in base_graded[-1][1])}")
        for name in strategies:
            if name == "memstream":
                run = _product_strategy(trainer, person, config, seed, asker, general, progress)
            else:
                run = _rule_strategy(name, trainer, person, config, seed, asker, general, progress)
            runs[name].append(run)
            log(f"seed {seed}: {name}: recall after each phase "
                + " | ".join(", ".join(f"{x:.0%}" for x in row) for row in run.R)
                + "; answer loss " + " | ".join(", ".join(f"{x:.2f}" for x in row) for row, _ in run.graded)
                + f"; general loss {run.general_loss:.3f} (base {base_general:.3f}); {run.seconds:.0f} s")
    m = config.model
    results = {
        "strategies": {name: summary(runs[name], base_general) for name in strategies},
        "setup": {"base": m.base, "dtype": str(trainer.live.dtype).removeprefix("torch."),
                  "people": people, "seeds": seeds, "phases": phases,
                  "facts_per_phase": facts_per_phase,
                  "events_per_phase": 3 * facts_per_phase, "questions_per_phase": 2 * facts_per_phase,
                  "epochs": config.train.epochs, "views": config.train.views, "linked_views": config.train.linked_views,
                  "objective": config.train.objective, "lr": config.train.lr, "batch_size": config.train.batch_size,
                  "lora_r": m.lora_r, "lora_alpha": m.lora_alpha, "target_modules": m.target_modules or "all linear",
                  "replay_ratio": config.train.replay_ratio, "ewc_lambda": config.ewc.lam,
                  "max_new_tokens": max_new_tokens,
                  "general_events": len(general), "base_general_loss": base_general,
                  "base_recall": [statistics.fmean(v) for v in zip(*base_rows)],
                  "base_recall_in_context": [statistics.fmean(v) for v in zip(*context_rows)],
                  "base_answer_loss": [statistics.fmean(v) for v in zip(*(g[0] for g in base_graded))],
                  "base_choice": [statistics.fmean(v) for v in zip(*(g[1] for g in base_graded))],
                  "choice_chance": statistics.fmean(1 / len(f.relation.values) for f in person.facts)},
    }
    results["acceptance"] = acceptance(results)
    return results


def progress_total(strategies: list[str], seeds: list[int], phases: int) -> int:
    return len(strategies) * len(seeds) * phases
