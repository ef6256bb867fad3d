"""A consolidation run: its plan and result, the flat training loop, EWC as a loss term, rehearsal
of the base model's own text, and the trainer that keeps one base loaded for every profile."""
