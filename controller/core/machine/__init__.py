"""The rollout state machine.

Transitions, operator commands, scheduling, health, watching, waiting, opinions and the
gate.
"""
