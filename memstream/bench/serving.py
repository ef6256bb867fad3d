"""``memstream bench serve``: what an assistant sees through ``memstream serve`` while memstream learns.

One run, one profile: the endpoint starts with nothing learned (the base answers); every held-out
question about a fictional person's facts is asked over HTTP; the facts are learned (one consolidation,
the product path); the endpoint is told of the new version as a model-updated event would tell it,
while requests keep coming — none may fail — and every question is asked again, over HTTP and of the
same version in torch (what ``memstream generate`` answers). The engine's tokens per second through
the endpoint are measured beside the same model in llama.cpp called directly, in the same run.

>>> summary_rows({"recall": {"base": 0.0, "served": 0.8, "torch": 0.85}, "swap": {"requests": 200,
...     "failed": 0, "p50_s": 0.1, "p95_s": 0.3, "switch_s": 1.5}, "throughput": {"served_tps": 40.0,
...     "direct_tps": 50.0}})[0]
['recall through the endpoint, before -> after learning', 0.0, 0.8, None, '-']
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import urllib.request
from dataclasses import replace
from typing import Any, Callable

from memstream.samples.facts import make_person, recalled

__all__ = ["run_serve_bench", "summary_rows"]

PROFILE = "recall"  # the profile the facts' events name (memstream.bench.recall)


def _post(url: str, body: dict, timeout: float = 300) -> dict:
    request = urllib.request.Request(url + "/v1/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return json.loads(reply.read())


def _ask_all(url: str, asked, max_tokens: int) -> tuple[float, list[dict], float, int]:
    """Recall over HTTP, one request at a time: (share right, answers, seconds, completion tokens)."""
    shown, tokens, started = [], 0, time.perf_counter()
    for fact, question in asked:
        reply = _post(url, {"model": PROFILE, "max_tokens": max_tokens, "temperature": 0,
                            "messages": [{"role": "user", "content": question}]})
        text = reply["choices"][0]["message"]["content"] or ""
        tokens += (reply.get("usage") or {}).get("completion_tokens", 0)
        shown.append({"question": question, "expected": fact.value, "answer": text, "recalled": recalled(fact, text),
                      "version": reply.get("system_fingerprint")})
    return sum(s["recalled"] for s in shown) / len(shown), shown, time.perf_counter() - started, tokens


class _Flood:
    """Requests one after another from ``senders`` threads until stopped; each one's status and latency."""

    def __init__(self, url: str, senders: int = 2):
        self.url, self.stop = url, threading.Event()
        self.done: list[tuple[bool, float, str | None]] = []
        self.threads = [threading.Thread(target=self._send, daemon=True) for _ in range(senders)]

    def _send(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                reply = _post(self.url, {"model": PROFILE, "max_tokens": 4, "temperature": 0,
                                         "messages": [{"role": "user", "content": "Say hello."}]}, timeout=60)
                self.done.append((True, time.perf_counter() - started, reply.get("system_fingerprint")))
            except Exception:  # noqa: BLE001 - a failed request is what is counted
                self.done.append((False, time.perf_counter() - started, None))

    def __enter__(self) -> "_Flood":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def _direct_tps(base, adapter, asked, max_tokens: int, threads: int) -> float:
    """Completion tokens per second of llama.cpp called in process, same base, adapter and questions."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(base)
    params.n_ctx, params.n_parallel = 4096, 1
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
    params.verbosity = 0  # llama.cpp's errors only, not a line per request
    params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(adapter), 1.0)]
    server = xllamacpp.Server(params)
    tokens, started = 0, time.perf_counter()
    for _fact, question in asked:
        reply = server.handle_chat_completions({"messages": [{"role": "user", "content": question}],
                                                "max_tokens": max_tokens, "temperature": 0})
        tokens += reply["usage"]["completion_tokens"]
    seconds = time.perf_counter() - started
    del server
    return tokens / seconds


def run_serve_bench(config, engine: str = "llama.cpp", seed: int = 0, facts: int = 10, threads: int = 2,
                    swap_requests: int = 200, max_tokens: int = 24,
                    say: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    from consumers.serving import ServeProcess, make_engine
    from learner.model.generation import answer
    from learner.online import OnlineLearner
    from memstream.bench.recall import _phase_events

    person = make_person(seed, phases=1, facts_per_phase=facts)
    asked = [(f, q) for f in person.facts for q in f.questions]
    cfg = replace(config, scheduler=replace(config.scheduler, count=10**9, interval_s=None, consolidate_on_drift=False))
    with tempfile.TemporaryDirectory(prefix="memstream-serve-bench-") as state:
        serving = ServeProcess(state, [PROFILE], make_engine(engine, threads), port=0, poll_s=3600, config=cfg)
        with serving:
            say(f"asking {len(asked)} questions of the base through {serving.url}")
            base_recall, _, _, _ = _ask_all(serving.url, asked, max_tokens)
            say("learning the facts (one consolidation)")
            learner = OnlineLearner(PROFILE, cfg, state, auto_consolidate=False)
            learner.learn_many(_phase_events(person, 0, seed))
            run = learner.consolidate("manual")
            say(f"run {run.status}: {run.reason}; switching while requests come")
            with _Flood(serving.url) as flood:
                while len(flood.done) < swap_requests // 4:
                    time.sleep(0.05)
                told = time.perf_counter()
                serving.notify()  # what a model-updated event does
                while serving.models.served[PROFILE].version != run.version:
                    time.sleep(0.02)
                switch_s = time.perf_counter() - told
                while len(flood.done) < swap_requests:
                    time.sleep(0.05)
            served_recall, shown, seconds, tokens = _ask_all(serving.url, asked, max_tokens)
            torch_answers = answer(learner.live, [q for _f, q in asked], max_new_tokens=max_tokens)
            torch_recall = sum(recalled(f, a) for (f, _q), a in zip(asked, torch_answers)) / len(asked)
            adapter = serving.models.served[PROFILE].adapter_gguf
            learner.close()
        direct = None
        if engine == "llama.cpp" and adapter is not None:
            from learner.model.base_gguf import base_gguf

            direct = _direct_tps(base_gguf(cfg.model), adapter, asked, max_tokens, threads)
    latencies = [s for ok, s, _v in flood.done if ok]
    from consumers.serving.served import percentile

    return {"engine": engine, "seed": seed, "facts": facts, "questions": len(asked),
            "run": {"status": run.status, "version": run.version, "seconds": run.duration_s, "steps": run.steps},
            "recall": {"base": base_recall, "served": served_recall, "torch": torch_recall},
            "swap": {"requests": len(flood.done), "failed": sum(not ok for ok, _s, _v in flood.done),
                     "versions_seen": sorted({v for _ok, _s, v in flood.done if v}),
                     "p50_s": percentile(latencies, 50), "p95_s": percentile(latencies, 95), "switch_s": switch_s},
            "throughput": {"served_tps": tokens / seconds, "direct_tps": direct},
            "answers": shown}


def summary_rows(results: dict) -> list[list[Any]]:
    """``[measure, value, baseline, ratio, target]`` rows."""
    recall, swap, speed = results["recall"], results["swap"], results["throughput"]
    direct = speed.get("direct_tps")
    return [["recall through the endpoint, before -> after learning", recall["base"], recall["served"], None, "-"],
            ["recall through the endpoint vs memstream generate (torch), same version", recall["served"],
             recall["torch"], None, "within 0.05"],
            [f"requests during the switch ({swap['requests']} sent), failed", swap["failed"], None, None, "0"],
            ["latency p50 / p95 (s) during the switch", swap["p50_s"], swap["p95_s"], None, "-"],
            ["seconds from the event to the new version served", swap["switch_s"], None, None, "-"],
            ["completion tokens/s through the endpoint vs llama.cpp in process", speed["served_tps"], direct,
             speed["served_tps"] / direct if direct else None, "-"]]
