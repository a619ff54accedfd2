"""PatchCore: `model` holds the graph (the math), `fit` the memory bank and the fit step."""
