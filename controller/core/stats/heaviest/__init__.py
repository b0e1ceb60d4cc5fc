"""Each unit's own counts, exact, and what the gate does with the heaviest: pure."""
