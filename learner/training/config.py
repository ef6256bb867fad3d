"""Settings of a consolidation run and its evaluation gate (``[train]``) and of EWC (``[ewc]``)."""

from __future__ import annotations

from dataclasses import dataclass

from learner.fields import require, setting

__all__ = ["OBJECTIVES", "TrainConfig", "EWCConfig"]

#: What a LoRA run trains question examples on (:mod:`learner.training.distill`).
OBJECTIVES = ("ce", "distill", "ce+distill")
#: What ``train.end_scale`` shrinks: the whole adapter, or only what the run changed in it.
END_SCALE_OF = ("adapter", "run")


@dataclass
class TrainConfig:
    """The ``[train]`` section: a run's schedule, batches, replay share and the evaluation gate.

    >>> TrainConfig().epochs, TrainConfig().views, TrainConfig(lr=1e-3).lr
    (5, 3, 0.001)
    >>> TrainConfig(replay_ratio=1.0)
    Traceback (most recent call last):
    ...
    learner.fields.ConfigError: train.replay_ratio = 1.0: must be in [0, 1)
    """

    epochs: int = setting("Passes over each consolidation batch (LoRA runs).", 5)
    views: int = setting("Training views per memory about the user (LoRA runs): rewordings and answers to "
                         "questions about it, made from its text (0 = the memories as they are).", 3)
    linked_views: int = setting("Per conversation turn that answers a question with one fact, up to this many "
                                "other memories of the run that name what it told, each after its answer as another "
                                "answer to its question (LoRA runs; 0 = none).", 0)
    objective: str = setting("What question examples train on: ce (their answer's tokens), distill (the base's "
                             "answer distribution with the memory in its context) or ce+distill.", "ce")
    contrast: float = setting("Weight of the unlikelihood of a wrong answer: each question example, each time it is "
                              "drawn, is paired with a wrong answer made from the run's memories (another fact's "
                              "value in its answer's words, or another memory's statement), and the token where "
                              "that leaves the right answer is made unlikely (LoRA runs; 0 = off).", 0.0)
    rest_below: float = setting("An example of a new memory (the memory or one of its views) whose loss fell below "
                                "this many nats per labelled token sits out the run's later epochs, which keep "
                                "their share of the learning-rate schedule (0: every example every epoch).", 0.0)
    end_scale: float = setting("The adapter, once a LoRA run has trained it, times this before it is evaluated and "
                               "kept: a shrink towards the base (1: as trained).", 1.0)
    end_scale_of: str = setting("What train.end_scale shrinks: the whole adapter, towards the base (adapter), or only "
                                "what this run changed in it, towards its parent version (run).", "adapter")
    batch_size: int = setting("Sequences per optimizer step.", 8)
    pack: bool = setting("Lay a step's sequences end to end instead of padding them to the longest (the same "
                         "loss, no padding computed), where the model keeps packed sequences apart (checked "
                         "once per base; the distill objectives always pad). Off: on a CPU its masked attention "
                         "cost more than the padding it saves.", False)
    split_cost: int = setting("A step's batch is computed in parts of close lengths, each padded to its own longest "
                              "(the same loss and step), where that saves more padded tokens than this many per "
                              "part added: one more forward and backward call's cost, in tokens. -1: 120 on a CPU, "
                              "one call on a GPU (padding costs it little there); 0: one call.", -1)
    lr: float = setting("Peak learning rate of LoRA runs.", 1.5e-3)
    min_lr_ratio: float = setting("Final learning rate as a fraction of the peak (cosine decay).", 0.1)
    warmup_frac: float = setting("Fraction of steps spent in linear warmup.", 0.1)
    max_steps: int = setting("Cap on optimizer steps per consolidation (0 = no cap); a run it cuts short says "
                             "how many epochs it ran (its metrics' capped).", 400)
    weight_decay: float = setting("AdamW weight decay.", 0.0)
    grad_clip: float = setting("Gradient norm clipping (0 = off).", 1.0)
    replay_ratio: float = setting("Fraction of each batch drawn from the replay buffer (0-1).", 0.4)
    probe_size: int = setting("Held-out replay events in the evaluation gate's probe set.", 48)
    gate_tolerance: float = setting("Accept a LoRA version whose probe loss (old memories) rose by at most this "
                                  "fraction.", 0.05)
    gate_max_forgetting: float = setting("... or, when its new memories' loss fell by train.gate_gain_ratio times as "
                                       "many nats as the probe loss rose, by at most this share of what the probe "
                                       "had learned (its loss without the adapter minus its loss before the run).",
                                       0.25)
    gate_gain_ratio: float = setting("How many nats learned on the new memories pay for one nat lost on the probe.",
                                   5.0)
    gate_base_tolerance: float = setting("Reject a LoRA version whose loss on the base model's own held-out text rose by "
                                       "more than this fraction (it would lose what the base could do).", 0.25)
    base_probe_size: int = setting("Base-rehearsal samples held out as that probe.", 16)
    retry_replay_ratio: float = setting("A rejected run's new events get one more run, with this replay fraction ...",
                                      0.6)
    retry_lr_scale: float = setting("... and the learning rate times this.", 0.5)
    eval_max_tokens: int = setting("Tokens per evaluation batch (bounds the memory of the gate's evaluations).", 4096)
    autocast: bool = setting("Run forward passes under bf16 autocast on CUDA, and on a CPU whose base weights are bf16.",
                             True)
    foundation_epochs: int = setting("Passes over the data in the byte model's first, full-parameter run.", 20)
    foundation_lr: float = setting("Peak learning rate of the byte model's foundation run.", 4e-3)
    foundation_min_events: int = setting("Automatic triggers wait for this many events before the byte model's "
                                       "foundation run.", 100)
    seed: int = setting("Seed for batching, probe selection and dropout.", 0)

    def __post_init__(self) -> None:
        require(0 <= self.replay_ratio < 1, "train.replay_ratio", self.replay_ratio, "must be in [0, 1)")
        require(0 <= self.retry_replay_ratio < 1, "train.retry_replay_ratio", self.retry_replay_ratio,
               "must be in [0, 1)")
        require(0 < self.retry_lr_scale <= 1, "train.retry_lr_scale", self.retry_lr_scale, "must be in (0, 1]")
        require(0 < self.end_scale <= 1, "train.end_scale", self.end_scale, "must be in (0, 1]")
        require(self.end_scale_of in END_SCALE_OF, "train.end_scale_of", self.end_scale_of,
                f"must be one of {', '.join(END_SCALE_OF)}")
        require(0 <= self.warmup_frac < 1, "train.warmup_frac", self.warmup_frac, "must be in [0, 1)")
        require(self.objective in OBJECTIVES, "train.objective", self.objective,
               f"must be one of {', '.join(OBJECTIVES)}")
        require(self.views >= 0, "train.views", self.views, "must be >= 0")
        require(self.linked_views >= 0, "train.linked_views", self.linked_views, "must be >= 0")
        require(self.epochs >= 1, "train.epochs", self.epochs, "must be at least 1")
        require(self.contrast >= 0, "train.contrast", self.contrast, "must not be negative")
        require(self.rest_below >= 0, "train.rest_below", self.rest_below, "must not be negative")
        require(self.batch_size >= 1, "train.batch_size", self.batch_size, "must be at least 1")
        require(self.split_cost >= -1, "train.split_cost", self.split_cost, "must be -1 (auto) or more")
        require(self.lr > 0, "train.lr", self.lr, "must be positive")
        require(self.gate_tolerance >= 0, "train.gate_tolerance", self.gate_tolerance, "must be >= 0")
        require(self.gate_max_forgetting >= 0, "train.gate_max_forgetting", self.gate_max_forgetting, "must be >= 0")
        require(self.gate_gain_ratio > 0, "train.gate_gain_ratio", self.gate_gain_ratio, "must be positive")
        require(self.gate_base_tolerance >= 0, "train.gate_base_tolerance", self.gate_base_tolerance, "must be >= 0")
        require(self.base_probe_size >= 1, "train.base_probe_size", self.base_probe_size, "must be at least 1")
        require(self.eval_max_tokens >= 64, "train.eval_max_tokens", self.eval_max_tokens, "must be at least 64")
        require(self.probe_size >= 1, "train.probe_size", self.probe_size, "must be at least 1")
        require(self.foundation_min_events >= 1, "train.foundation_min_events", self.foundation_min_events,
               "must be at least 1")


@dataclass
class EWCConfig:
    """The ``[ewc]`` section: the penalty's strength and the Fisher's decay and sample size.

    >>> EWCConfig().lam, EWCConfig(gamma=1.0).gamma
    (1000.0, 1.0)
    >>> EWCConfig(gamma=2)
    Traceback (most recent call last):
    ...
    learner.fields.ConfigError: ewc.gamma = 2: must be in [0, 1]
    """

    enabled: bool = setting("Add the EWC penalty to LoRA runs.", True)
    lam: float = setting("EWC strength λ (Fisher normalised to mean 1, penalty averaged over parameters).", 1000.0)
    gamma: float = setting("Decay of the accumulated Fisher: F <- gamma*F + F_new.", 0.9)
    fisher_samples: int = setting("Examples used for the per-example Fisher after each run.", 64)

    def __post_init__(self) -> None:
        require(self.lam >= 0, "ewc.lam", self.lam, "must be >= 0")
        require(0 <= self.gamma <= 1, "ewc.gamma", self.gamma, "must be in [0, 1]")
        require(self.fisher_samples >= 1, "ewc.fisher_samples", self.fisher_samples, "must be at least 1")
