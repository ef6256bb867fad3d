"""The model a profile learns into: the base (a packaged chat model, any local Hugging Face causal
LM, or the byte model), its tokenizer and LoRA wiring, the adapted model, how memories become
training examples and losses, generation, and export for inference servers."""
