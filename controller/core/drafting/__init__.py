"""Drafting plans and rules: templates, ring and rule forms, and the lint of a drafted rule."""
