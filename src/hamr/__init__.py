"""HAMR: Hardness-Aware Meta-Resample for class-imbalanced NLP."""
