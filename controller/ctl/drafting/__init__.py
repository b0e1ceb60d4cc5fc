"""Drafting with the model: plans, targeting rules and rings, each checked before it is shown."""
