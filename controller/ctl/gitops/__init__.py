"""Rollouts as code: ``rolloutctl validate``, ``diff`` and ``apply -f DIR`` (docs/gitops.md)."""

from controller.ctl.gitops import arguments, restore, running

__all__ = ["arguments", "restore", "running"]
