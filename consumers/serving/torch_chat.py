"""A chat reply from a checked-out torch model: the OpenAI body's messages laid out as memstream trains
(one user turn: exactly a memory's prompt; a longer conversation: the model's chat template), greedy
or sampled, each new piece of text to ``on_piece`` as it is decoded.

>>> sampling({"temperature": 0, "max_tokens": 5})
{'max_new_tokens': 5, 'do_sample': False}
>>> sampling({"temperature": 0.7, "top_p": 0.9})["do_sample"]
True
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["generate_reply", "prompt_ids", "sampling"]

DEFAULT_MAX_TOKENS = 256


def sampling(body: dict[str, Any]) -> dict[str, Any]:
    """transformers' generation settings for an OpenAI body (temperature 0, or none given: greedy)."""
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    temperature = float(body.get("temperature") or 0.0)
    settings: dict[str, Any] = {"max_new_tokens": int(limit), "do_sample": temperature > 0}
    if temperature > 0:
        settings.update(temperature=temperature, top_p=float(body.get("top_p") or 1.0), top_k=None)
    return settings


def prompt_ids(live, messages: list[dict[str, Any]], room: int) -> list[int]:
    """The tokens the model reads before its reply."""
    turns = [m for m in messages if m.get("role") != "system" or m.get("content")]
    if len(turns) == 1 and turns[0].get("role") == "user":
        return live.encoder.prompt_ids(str(turns[0].get("content") or ""), room_for_answer=room)
    rendered = live.tokenizer.render_chat([{"role": m["role"], "content": str(m.get("content") or "")}
                                           for m in turns], add_generation_prompt=True)
    if rendered is None:  # no chat template: the conversation as one question
        return live.encoder.prompt_ids("\n".join(str(m.get("content") or "") for m in turns), room_for_answer=room)
    return live.tokenizer.encode_template(rendered)[-(live.encoder.max_len - room):]


class _Pieces:
    """transformers streamer: decodes the reply so far and hands on what is new."""

    def __init__(self, live, stops: set[int], on_piece: Callable[[str], None] | None):
        self.live, self.stops, self.on_piece = live, stops, on_piece
        self.ids: list[int] = []
        self.text, self.started, self.ended = "", False, False

    def put(self, value) -> None:
        if not self.started:  # the first call is the prompt
            self.started = True
            return
        for token in value.reshape(-1).tolist():
            if self.ended or token in self.stops:
                self.ended = True
                continue
            self.ids.append(token)
        text = self.live.tokenizer.decode(self.ids)
        if text.endswith("\ufffd"):
            return  # half a character: wait for the rest of its bytes
        new, self.text = text[len(self.text):], text
        if new and self.on_piece is not None:
            self.on_piece(new)

    def end(self) -> None:
        pass


def generate_reply(live, body: dict[str, Any], on_piece: Callable[[str], None] | None = None
                   ) -> tuple[str, str, dict[str, int]]:
    """``(reply, finish_reason, usage)`` for ``body`` (``stop`` strings cut the reply too)."""
    import torch
    from transformers import GenerationConfig

    settings = sampling(body)
    ids = prompt_ids(live, body.get("messages") or [], settings["max_new_tokens"])
    stops = set(live.encoder.stop_ids)
    streamer = _Pieces(live, stops, on_piece)
    model = live.model
    model.eval()
    seed = body.get("seed")
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed) if seed is not None else 0)
        out = model.generate(input_ids=torch.tensor([ids], device=live.device),
                             attention_mask=torch.ones((1, len(ids)), dtype=torch.long, device=live.device),
                             generation_config=GenerationConfig(**settings, eos_token_id=sorted(stops),
                                                                pad_token_id=live.tokenizer.pad_id),
                             streamer=streamer)
    text = streamer.text.strip()
    finish = "stop" if streamer.ended else "length"
    for stop in [body["stop"]] if isinstance(body.get("stop"), str) else (body.get("stop") or []):
        if stop and stop in text:
            text, finish = text.split(stop, 1)[0], "stop"
    produced = int(out.shape[1]) - len(ids)
    return text, finish, {"prompt_tokens": len(ids), "completion_tokens": produced,
                          "total_tokens": len(ids) + produced}
