"""The rollout report: model, cells, stages, moves, rendering, narrative, diagnosis."""
