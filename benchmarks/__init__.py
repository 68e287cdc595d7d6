"""Benchmarks of panelglm against scikit-learn, glum and statsmodels (not shipped)."""
