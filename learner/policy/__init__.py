"""The learner's decisions: when a consolidation runs (the scheduler), which memories are worth
learning (the quality gate) and whether a trained version is kept (the evaluation gate)."""
