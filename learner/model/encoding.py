"""From memory events to token ids in the format the model expects, and the loss on them.

Layouts
    **chat** (a tokenizer with a chat template, e.g. SmolLM2-Instruct): a ``prompt`` + ``response``
    event is the conversation ``[user: prompt, assistant: response]`` rendered by the template;
    the loss is on the assistant's tokens only, with the end-of-turn token the model emits after
    an answer (``<|im_end|>``) and without what the template adds after it. Asking (``generate``,
    the demo, the recall benchmark) renders ``[user: prompt]`` with the generation prompt, so the
    model is trained and asked in one format.

    **plain** (the byte model, or a tokenizer without a chat template — the documented fallback):
    ``<start>Q: {prompt}\\nA: {response}<eos>``, loss on the response and the final ``<eos>``.

    A ``text`` event is ``<start>{text}<start>`` with loss on every token after the first, where
    ``<start>`` is the document separator the model was pretrained with (see
    :class:`learner.model.loading.HFTokenizer`).

Contents are tokenized apart from the template, with special-token text taken literally, so a
memory that contains ``<|im_end|>`` cannot forge a turn. Too long an event keeps the **end** of its
prompt and the **start** of its response (an answer cut short gets no end-of-turn token).

Examples
--------
>>> from contracts.events import MemoryEvent
>>> from learner.model.tokenizers import ByteTokenizer
>>> enc = Encoder(ByteTokenizer(), max_len=32)
>>> e = MemoryEvent.from_dict({"v": 1, "profile": "p", "ts": 0, "kind": "conversation",
...                            "prompt": "hi", "response": "yo"})
>>> ex = enc.encode(e)
>>> ByteTokenizer().decode(ex["input_ids"].tolist())
'Q: hi\\nA: yo'
>>> [i for i, label in enumerate(ex["labels"].tolist()) if label != -100]
[10, 11, 12]
>>> long = MemoryEvent.from_dict({"v": 1, "profile": "p", "ts": 0, "kind": "conversation",
...                               "prompt": "x" * 40 + " end?", "response": "yes " * 10})
>>> ByteTokenizer().decode(Encoder(ByteTokenizer(), max_len=32).encode(long)["input_ids"].tolist())
'Q: xxxxxxx end?\\nA: yes yes yes '
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from contracts.events import MemoryEvent

__all__ = ["IGNORE", "Encoder", "Layout", "collate"]

IGNORE = -100
_USER, _ASSISTANT = "\u2060memstream-user\u2060", "\u2060memstream-assistant\u2060"


@dataclass(frozen=True)
class Layout:
    """Token pieces around the contents of a memory (see the module docstring)."""

    kind: str  # "chat" or "plain"
    head: tuple[int, ...]  # before the prompt
    tail: tuple[int, ...]  # after the prompt, up to where the model starts to answer
    answer_head: tuple[int, ...]  # what the model writes before the response (labelled)
    answer_end: tuple[int, ...]  # what the model writes after the response (labelled)
    text_start: tuple[int, ...]
    text_end: tuple[int, ...]
    note: str = ""  # why a chat tokenizer fell back to the plain layout

    @property
    def fixed(self) -> int:
        """Template tokens of a prompt + response event."""
        return len(self.head) + len(self.tail) + len(self.answer_head) + len(self.answer_end)


def plain_layout(tokenizer, note: str = "") -> Layout:
    start = (tokenizer.text_boundary_id,)
    return Layout("plain", start + tuple(tokenizer.encode_template("Q: ")), tuple(tokenizer.encode_template("\nA: ")),
                  (), (tokenizer.eos_id,), start, start, note)


def chat_layout(tokenizer) -> Layout:
    """The layout a tokenizer's chat template gives, found by rendering it around two markers;
    the plain layout (with ``note`` saying why) when there is no template or it is not usable."""
    asked = tokenizer.render_chat([{"role": "user", "content": _USER}], add_generation_prompt=True)
    if asked is None:
        return plain_layout(tokenizer, "the tokenizer has no chat template")
    answered = tokenizer.render_chat([{"role": "user", "content": _USER}, {"role": "assistant", "content": _ASSISTANT}],
                                     add_generation_prompt=False)
    if asked.count(_USER) != 1 or answered.count(_USER) != 1 or answered.count(_ASSISTANT) != 1:
        return plain_layout(tokenizer, "the chat template does not show the messages' contents as they are")
    head, generation_tail = asked.split(_USER)
    head_again, rest = answered.split(_USER)
    between, after = rest.split(_ASSISTANT)
    if head != head_again or not between.startswith(generation_tail):
        return plain_layout(tokenizer, "the chat template renders a conversation unlike its generation prompt")
    end = tokenizer.encode_template(after)
    stops = [i for i, t in enumerate(end) if t in tokenizer.stop_ids]
    answer_end = tuple(end[: stops[0] + 1]) if stops else (tokenizer.eos_id,)
    boundary = (tokenizer.text_boundary_id,)
    return Layout("chat", tuple(tokenizer.encode_template(head)), tuple(tokenizer.encode_template(generation_tail)),
                  tuple(tokenizer.encode_template(between[len(generation_tail):])), answer_end, boundary, boundary)


class Encoder:
    """Encode events (and questions) for one tokenizer, at most ``max_len`` tokens each.

    Parameters
    ----------
    tokenizer
        A :class:`learner.model.loading.Tokenizer`.
    max_len
        Longest sequence in tokens (``model.max_seq_len``).
    template
        ``auto`` (the chat template when the tokenizer has a usable one) or ``plain``.
    """

    def __init__(self, tokenizer, max_len: int, template: str = "auto"):
        self.tokenizer = tokenizer
        self.max_len = max_len
        self.layout = chat_layout(tokenizer) if template == "auto" else plain_layout(tokenizer, "model.template = plain")
        if self.layout.fixed + 2 > max_len:
            raise ValueError(f"model.max_seq_len = {max_len} is too short: the {self.layout.kind} layout alone "
                             f"takes {self.layout.fixed} tokens")

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Tokens that end an answer."""
        return tuple(sorted({*self.tokenizer.stop_ids, *self.layout.answer_end[-1:]}))

    def encode(self, event: MemoryEvent) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``labels`` (``IGNORE`` where no loss is taken) of one event."""
        if event.text is not None:
            return self._encode_text(event.text)
        return self._encode_exchange(event.prompt or "", event.response or "")

    def _encode_text(self, text: str) -> dict[str, torch.Tensor]:
        lay = self.layout
        body = self.tokenizer.encode(text)
        room = self.max_len - len(lay.text_start) - len(lay.text_end)
        end = lay.text_end if len(body) <= room else ()
        ids = list(lay.text_start) + body[:room] + list(end)
        labels = [IGNORE] * len(lay.text_start) + ids[len(lay.text_start):]
        return _example(ids, labels)

    def _encode_exchange(self, prompt: str, response: str) -> dict[str, torch.Tensor]:
        lay = self.layout
        asked, answer = self.tokenizer.encode(prompt), self.tokenizer.encode(response)
        room = self.max_len - lay.fixed
        answer_kept = min(len(answer), max(room // 2, room - len(asked)))
        asked = asked[len(asked) - min(len(asked), room - answer_kept):]
        end = lay.answer_end
        if answer_kept < len(answer):  # a cut answer has no end marker: its room goes to the answer
            end, answer_kept = (), min(len(answer), answer_kept + len(lay.answer_end))
        context = list(lay.head) + asked + list(lay.tail)
        target = list(lay.answer_head) + answer[:answer_kept] + list(end)
        return _example(context + target, [IGNORE] * len(context) + target)

    def prompt_ids(self, prompt: str, room_for_answer: int = 0) -> list[int]:
        """What the model sees before it answers ``prompt`` (the end of a long prompt is kept)."""
        lay = self.layout
        asked = self.tokenizer.encode(prompt)
        room = max(1, self.max_len - room_for_answer - len(lay.head) - len(lay.tail) - len(lay.answer_head))
        return list(lay.head) + asked[-room:] + list(lay.tail) + list(lay.answer_head)


def _example(ids: list[int], labels: list[int]) -> dict[str, torch.Tensor]:
    # labels[t] is the target *at* position t; the loss shifts by one itself
    return {"input_ids": torch.tensor(ids, dtype=torch.long), "labels": torch.tensor(labels, dtype=torch.long)}


def collate(examples: list[dict[str, torch.Tensor]], pad_id: int, length: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example (or ``length``), with the attention mask.

    >>> batch = collate([_example([5, 6, 7], [-100, 6, 7]), _example([8], [8])], pad_id=0)
    >>> batch["input_ids"].tolist(), batch["attention_mask"].tolist()
    ([[5, 6, 7], [8, 0, 0]], [[1, 1, 1], [1, 0, 0]])
    """
    width = length or max(len(ex["input_ids"]) for ex in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, ex in enumerate(examples):
        n = len(ex["input_ids"])
        ids[row, :n] = ex["input_ids"]
        labels[row, :n] = ex["labels"]
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


