"""Rollouts as code: ``rolloutctl validate``, ``diff`` and ``apply -f DIR`` (docs/gitops.md)."""
