"""The pure core: events, aggregates, plans, verdicts and the rollout state machine, no I/O.

Nothing in this package performs I/O or imports an I/O library; the
import-linter contracts in ``pyproject.toml`` enforce that.
"""
