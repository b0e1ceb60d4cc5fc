"""What a flag platform should serve for a rollout.

The serving rules, read back and compared, and ring audiences.
"""
