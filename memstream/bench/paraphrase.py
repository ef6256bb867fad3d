"""Paraphrased views of memories written by the base model itself, kept only when every name and
number of the original survives (the recall benchmark's ``replay+ewc+paraphrase`` strategy)."""

from __future__ import annotations

from contracts.events import MemoryEvent
from learner.model.generation import answer

__all__ = ["PARAPHRASE_PROMPT", "paraphrased"]


PARAPHRASE_PROMPT = "Rewrite this sentence in different words, keeping every name and fact:\n\n{text}"


def _kept_words(text: str) -> set[str]:
    """Names and numbers a rewrite must keep (capitalised words after the first, digits)."""
    words = [w.strip(".,;:!?\"'()") for w in text.split()]
    return {w for i, w in enumerate(words) if w and (w[0].isdigit() or (i > 0 and w[0].isupper()))}


def paraphrased(live, events: list[MemoryEvent], per_event: int = 2, seed: int = 0) -> list[MemoryEvent]:
    """Rewrites of ``events`` by the model itself (prompts of conversations, texts of notes), filtered."""
    sources = [e.prompt if e.prompt is not None else e.text for e in events]
    out = []
    for k in range(per_event):
        texts = answer(live, [PARAPHRASE_PROMPT.format(text=t) for t in sources], max_new_tokens=48,
                       temperature=0.7, seed=seed * 10 + k)
        for event, source, text in zip(events, sources, texts):
            text = text.strip().strip('"')
            if not text or text == source or not _kept_words(source) <= _kept_words(text) | {"I"}:
                continue
            fields = event.to_dict()
            fields.pop("id")
            fields.update({"prompt": text} if event.prompt is not None else {"text": text})
            out.append(MemoryEvent.build(fields))
    return out
