"""Models: shared heads, the textual classifier (and, in later issues, vision, VisE and the ensemble)."""
