"""Sampling from the live model, so a person can see what it learned."""

from __future__ import annotations

import torch

from learner.adapted import AdaptedModel
from learner.data import prompt_text

__all__ = ["sample"]


@torch.no_grad()
def sample(live: AdaptedModel, prompt: str, max_new_tokens: int = 160, temperature: float = 0.8,
           top_k: int = 40, seed: int = 0) -> str:
    """Continue ``Q: {prompt}\\nA: `` with temperature and top-k sampling; stop at end of sequence.

    Sampled by hand with a seeded generator (``generate()`` would draw from the global RNG).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    tok = live.tokenizer
    model = live.model
    model.eval()
    ids = torch.tensor([[tok.eos_id] + tok.encode(prompt_text(prompt))], device=live.device)
    generator = torch.Generator(device=live.device).manual_seed(seed)
    out = _sample_loop(model, ids, max_new_tokens, temperature, top_k, tok.eos_id, generator)
    return tok.decode(out[0, ids.shape[1]:].tolist())


def _sample_loop(model, ids, max_new_tokens, temperature, top_k, eos_id, generator):
    past = None
    out = ids
    step_input = ids
    for _ in range(max_new_tokens):
        result = model(input_ids=step_input, past_key_values=past, use_cache=True)
        past = result.past_key_values
        logits = result.logits[:, -1, :].float() / temperature
        if top_k:
            kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1, None]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        next_id = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
        out = torch.cat([out, next_id], dim=1)
        if int(next_id) == eos_id:  # a sync per token: generation is sequential anyway
            break
        step_input = next_id
    return out
