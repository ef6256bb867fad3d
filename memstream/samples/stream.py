"""The bundled sample stream: memory events of one person's assistant, in three phases.

Written for this project. Two generators:

- :func:`make_sample_stream`: everyday memories in six domains (templates and vocabulary per domain,
  filled by a seeded generator), moving through three phases (home life → training and code →
  travel and money), so drift detection and consolidation both have something to do;
- :func:`sample_stream`: the bundled stream the demo publishes — each phase is that phase's
  everyday memories mixed with **facts** a person would later ask about (who their sister is, where
  they work, where their next trip goes: :mod:`memstream.samples.facts`), told as a conversation turn, an
  observation and a reflection.

Rebuild the bundled file with::

    python -m memstream.samples.stream memstream/samples/data/sample_stream.jsonl

>>> events = make_sample_stream(n_per_phase=(4, 4, 4), seed=1)
>>> len(events), sorted({e["meta"]["domain"] for e in events})[:2]
(12, ['coding', 'cooking'])
>>> sorted({e["kind"] for e in make_sample_stream(seed=0)})
['conversation', 'note', 'observation', 'reflection']
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

__all__ = ["DOMAINS", "PHASES", "SAMPLE_FACTS_PER_PHASE", "SAMPLE_CHATTER_PER_PHASE", "make_sample_stream",
           "sample_person", "sample_stream", "sample_stream_path"]

SAMPLE_FACTS_PER_PHASE = 8
SAMPLE_CHATTER_PER_PHASE = 12

DOMAINS: dict[str, dict[str, list[str]]] = {
    "cooking": {
        "thing": ["risotto", "lentil soup", "sourdough loaf", "green curry", "shakshuka", "apple pie",
                  "miso ramen", "roast chicken", "pesto pasta", "banana bread", "dal", "paella"],
        "part": ["onions", "garlic", "the stock", "the dough", "saffron", "fresh basil", "the rice",
                 "coconut milk", "brown butter", "the spice mix", "lemon zest", "the starter"],
        "act": ["simmer", "knead", "toast", "whisk", "braise", "fold in", "season", "reduce", "proof", "sear"],
        "detail": ["on low heat for twenty minutes", "until it smells nutty", "with a pinch of salt",
                   "in the cast iron pan", "overnight in the fridge", "before the guests arrive",
                   "with a splash of white wine", "until golden at the edges"],
    },
    "gardening": {
        "thing": ["tomato plants", "the fig tree", "basil seedlings", "the rose bed", "runner beans",
                  "the compost heap", "strawberries", "the apple tree", "lavender", "courgettes"],
        "part": ["aphids", "mulch", "the soil", "seaweed feed", "new shoots", "yellow leaves",
                 "the drip line", "bone meal", "slugs", "frost cloth"],
        "act": ["water", "prune", "repot", "stake", "mulch", "thin out", "harvest", "feed", "cover", "deadhead"],
        "detail": ["early in the morning", "before the first frost", "every other evening",
                   "after the rain stops", "in the north corner", "with the new secateurs",
                   "once the buds swell", "while the soil is still damp"],
    },
    "fitness": {
        "thing": ["the 10k run", "deadlifts", "the interval session", "my swim", "yoga flow",
                  "the hill repeats", "squats", "the long ride", "rowing", "pull-ups"],
        "part": ["my left knee", "heart rate zones", "the warm-up", "my pace", "hip mobility",
                 "recovery days", "grip strength", "cadence", "protein intake", "sleep"],
        "act": ["track", "stretch", "increase", "rest", "time", "log", "ice", "pace", "train", "measure"],
        "detail": ["at an easy pace", "for three sets of eight", "twice this week",
                   "before breakfast", "with a longer cool-down", "in zone two",
                   "without pain today", "after the rest day"],
    },
    "coding": {
        "thing": ["the parser", "the Kafka consumer", "the migration script", "unit tests",
                  "the API client", "the build pipeline", "the cache layer", "the CLI", "the scheduler",
                  "the database schema"],
        "part": ["a race condition", "the retry logic", "type hints", "the error handling",
                 "a memory leak", "the config loader", "flaky tests", "the logging", "an off-by-one bug",
                 "the connection pool"],
        "act": ["refactor", "profile", "debug", "document", "benchmark", "rewrite", "review", "test",
                "deploy", "simplify"],
        "detail": ["before the release", "with a failing test first", "behind a feature flag",
                   "in a separate branch", "after the code review", "using the new profiler",
                   "so the CI stays green", "without changing the public API"],
    },
    "travel": {
        "thing": ["the train to Lisbon", "our flight to Oslo", "the hostel in Kyoto", "the ferry to Split",
                  "the hike near Chamonix", "the museum pass", "the night bus", "the rental car",
                  "the visa appointment", "the hotel in Porto"],
        "part": ["the passport", "seat reservations", "the luggage", "travel insurance",
                 "the itinerary", "local currency", "the check-in time", "the boarding pass",
                 "walking shoes", "the power adapter"],
        "act": ["book", "confirm", "pack", "cancel", "reschedule", "print", "compare", "reserve",
                "check", "upgrade"],
        "detail": ["two weeks ahead", "before the fares go up", "for the early departure",
                   "with a window seat", "near the old town", "for the return leg",
                   "in case the connection is late", "with free cancellation"],
    },
    "finance": {
        "thing": ["the monthly budget", "the index fund", "the tax return", "the savings account",
                  "the mortgage", "the emergency fund", "the pension plan", "the electricity bill",
                  "the credit card", "the grocery spending"],
        "part": ["the interest rate", "recurring subscriptions", "the receipts", "the deductible",
                 "the direct debit", "the fees", "quarterly statements", "the payslip",
                 "the spending categories", "the exchange rate"],
        "act": ["review", "rebalance", "file", "transfer", "cap", "cancel", "reconcile", "track",
                "pay off", "set aside"],
        "detail": ["before the end of the month", "by the tax deadline", "on payday",
                   "in the spreadsheet", "every quarter", "without touching the savings",
                   "after the salary lands", "using the new app"],
    },
}

PHASES: list[tuple[str, ...]] = [("cooking", "gardening"), ("fitness", "coding"), ("travel", "finance")]

_NOTES = [
    "Remember to {act} {part} {detail}.",
    "Note: {thing} needs me to {act} {part} {detail}.",
    "To do: {act} {part} for {thing} {detail}.",
]
_OBSERVATIONS = [
    "Noticed that {part} changed after I had to {act} {thing} {detail}.",
    "Today {thing} went well once I decided to {act} {part} {detail}.",
    "Saw that {part} matters more than I thought for {thing}.",
]
_REFLECTIONS = [
    "I think {thing} works best when I {act} {part} {detail}; I should keep doing that.",
    "Looking back, skipping {part} made {thing} harder. Next time I will {act} it {detail}.",
    "What I learned this week: {thing} depends on {part}, and it pays to {act} {detail}.",
]
_QUESTIONS = [
    ("How should I handle {part} for {thing}?", "For {thing}, {act} {part} {detail}. That has worked for you before."),
    ("When do I {act} {part}?", "You usually {act} {part} {detail}, especially for {thing}."),
    ("What did I say about {thing}?", "You said {thing} goes better if you {act} {part} {detail}."),
    ("Any tips for {thing}?", "Start with {part}: {act} it {detail}, then check {thing} again."),
]


def _fill(template: str, words: dict[str, list[str]], rng: random.Random) -> str:
    return template.format(**{k: rng.choice(v) for k, v in words.items()})


def _event(domain: str, index: int, ts: float, rng: random.Random, profile: str) -> dict:
    words = DOMAINS[domain]
    kind = rng.choices(["conversation", "note", "observation", "reflection"], weights=[4, 2, 2, 2])[0]
    event = {"v": 1, "id": f"{profile}-{index:05d}", "profile": profile, "ts": ts, "kind": kind,
             "meta": {"domain": domain}}
    if kind == "conversation":
        question, answer = rng.choice(_QUESTIONS)
        event["prompt"] = _fill(question, words, rng)
        event["response"] = _fill(answer, words, rng)
    else:
        templates = {"note": _NOTES, "observation": _OBSERVATIONS, "reflection": _REFLECTIONS}[kind]
        text = _fill(rng.choice(templates), words, rng)
        event["text"] = text[0].upper() + text[1:]
    return event


def make_sample_stream(n_per_phase: tuple[int, ...] = (450, 400, 400), seed: int = 0,
                    profile: str = "alice", start_ts: float = 1_767_225_600.0,
                    phases: list[tuple[str, ...]] | None = None) -> list[dict]:
    """Events moving through ``phases`` (domains mixed within a phase), a few minutes apart."""
    rng = random.Random(seed)
    phases = phases or PHASES
    events, ts = [], start_ts
    for count, domains in zip(n_per_phase, phases):
        for _ in range(count):
            ts += rng.uniform(60, 900)
            events.append(_event(rng.choice(domains), len(events), round(ts, 3), rng, profile))
    return events


def sample_person():
    """The person of the bundled stream (its facts and their held-out questions)."""
    from memstream.samples.facts import make_person

    return make_person(seed=7, phases=len(PHASES), facts_per_phase=SAMPLE_FACTS_PER_PHASE)


def sample_stream(profile: str = "alice", seed: int = 0) -> list[dict]:
    """The bundled stream: per phase, the facts of :func:`sample_person` (three events each) shuffled
    with ``SAMPLE_CHATTER_PER_PHASE`` everyday memories of the phase's domains; phases in order."""
    person = sample_person()
    chatter = make_sample_stream(n_per_phase=(SAMPLE_CHATTER_PER_PHASE,) * len(PHASES), seed=seed, profile=profile)
    rng = random.Random(seed)
    events: list[dict] = []
    for phase in range(len(PHASES)):
        mixed = chatter[phase * SAMPLE_CHATTER_PER_PHASE:(phase + 1) * SAMPLE_CHATTER_PER_PHASE]
        for fact in person.phase(phase):
            mixed += fact.events(profile, 0.0, id_prefix=f"{profile}-fact-")
        rng.shuffle(mixed)
        events += mixed
    ts = 1_767_225_600.0
    for event in events:  # a few minutes apart, in order
        ts += rng.uniform(60, 900)
        event["ts"] = round(ts, 3)
    return events


def sample_stream_path() -> Path:
    """The bundled sample stream (see :func:`sample_stream`)."""
    return Path(__file__).parent / "data" / "sample_stream.jsonl"


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else sample_stream_path()
    lines = [json.dumps(e, ensure_ascii=False) for e in sample_stream()]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} events to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
