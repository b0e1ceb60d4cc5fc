"""What a rollout is.

The plan and its parts, plan lint, the health policy, windows, the rollout record and
the advice it keeps.
"""
