"""Settings of the registry (``[registry]``)."""

from __future__ import annotations

from dataclasses import dataclass

from learner.fields import require, setting

__all__ = ["RegistryConfig"]


@dataclass
class RegistryConfig:
    """The ``[registry]`` section: how many versions stay on disk.

    >>> RegistryConfig().keep_versions
    4
    >>> RegistryConfig(keep_versions=0)
    Traceback (most recent call last):
    ...
    learner.fields.ConfigError: registry.keep_versions = 0: must be at least 1
    """

    keep_versions: int = setting("Versions kept on disk per profile (older ones pruned, history kept).", 4)
    gguf_lora: bool = setting("Write each LoRA version's adapter also as a GGUF adapter (adapter.gguf) that "
                              "llama.cpp and Ollama apply over the base's GGUF (Llama-family bases).", True)
    gguf: str = setting("Write each version also merged as one GGUF file (model.gguf): off, f16 or q8_0.", "off")

    def __post_init__(self) -> None:
        require(self.keep_versions >= 1, "registry.keep_versions", self.keep_versions, "must be at least 1")
        require(self.gguf in ("off", "f16", "q8_0"), "registry.gguf", self.gguf, "must be off, f16 or q8_0")
