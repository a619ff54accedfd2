"""Hybrid model: PatchCore for defects never seen plus a supervised head for labelled ones."""
