"""Rollouts as code: ``rolloutctl validate``, ``diff`` and ``apply -f DIR`` (docs/gitops.md)."""

from controller.ctl.gitops import restore, running

__all__ = ["restore", "running"]
