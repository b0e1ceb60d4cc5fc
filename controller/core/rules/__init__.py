"""Audiences and targeting rules.

The rule language, its values and code generation, matching, segments and Unleash
constraints.
"""
