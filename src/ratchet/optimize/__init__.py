"""Optimization: optimizer plug-ins, paired statistics on held-out data, and one optimization run."""
