"""The study layer: profiles, the experiments (one function per table), their
results, claims, plots and tables."""
