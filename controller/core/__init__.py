"""The pure core: contracts, domain types, decoding, folding and bucketing.

Nothing in this package performs I/O or imports an I/O library; the
import-linter contracts in ``pyproject.toml`` enforce that.
"""
