"""The defect classifier: `model` holds the graph (the math), `fit` the fine-tuning and the
fit step."""
