"""Operating rollouts: signed commands, status reads, segments and app keys."""
