"""Numpy-only analysis the API serves: downsampling curves, summarising experiments (never torch)."""
