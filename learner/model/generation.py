"""Asking the model: questions in, answers out, in the format it was trained in.

A question is laid out exactly as a conversation memory's prompt is during training (the chat
template's generation prompt, or the plain ``Q: ...\\nA: `` layout; see :mod:`learner.model.encoding`),
so what was learned is what is asked. Many questions are answered in batches (left-padded, with
an attention mask) on one loaded model.
"""

from __future__ import annotations

import torch

from learner.model.adapted import AdaptedModel

__all__ = ["answer", "sample"]


@torch.no_grad()
def answer(live: AdaptedModel, prompts: list[str], max_new_tokens: int = 96, temperature: float = 0.0,
           top_k: int = 40, seed: int = 0, batch_size: int = 16) -> list[str]:
    """The model's answer to each prompt: greedy when ``temperature`` is 0, else sampled (top-k, seeded).

    Decoding stops at the end-of-turn token; the answers hold no special tokens.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    from transformers import GenerationConfig

    encoder, tok, model = live.encoder, live.tokenizer, live.model
    model.eval()
    stops = list(encoder.stop_ids)
    settings = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                                temperature=temperature if temperature > 0 else None,
                                top_k=top_k if temperature > 0 else None, top_p=None,
                                eos_token_id=stops, pad_token_id=tok.pad_id)
    answers: list[str] = []
    for start in range(0, len(prompts), batch_size):
        asked = [encoder.prompt_ids(p, room_for_answer=max_new_tokens) for p in prompts[start:start + batch_size]]
        width = max(len(ids) for ids in asked)
        input_ids = torch.full((len(asked), width), tok.pad_id, dtype=torch.long)
        mask = torch.zeros((len(asked), width), dtype=torch.long)
        for row, ids in enumerate(asked):  # left padding: every answer starts at the same column
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            mask[row, width - len(ids):] = 1
        with torch.random.fork_rng(devices=[live.device] if live.device.type == "cuda" else []):
            torch.manual_seed(seed)
            out = model.generate(input_ids=input_ids.to(live.device), attention_mask=mask.to(live.device),
                                 generation_config=settings)
        for row in out[:, width:].tolist():
            cut = next((i for i, t in enumerate(row) if t in stops), len(row))
            answers.append(tok.decode(row[:cut]).strip())
    return answers


def sample(live: AdaptedModel, prompt: str, max_new_tokens: int = 160, temperature: float = 0.8,
           top_k: int = 40, seed: int = 0) -> str:
    """One answer to one prompt (see :func:`answer`)."""
    return answer(live, [prompt], max_new_tokens, temperature, top_k, seed)[0]
