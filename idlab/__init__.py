"""idlab — the Intrinsic Dimension Lab."""

__version__ = "0.1.0"
