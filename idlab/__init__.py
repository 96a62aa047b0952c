"""idlab — the Intrinsic Dimension Lab.

The contracts (`config`, `metrics`, `statuses`, `presets`, `dataset_files`,
`dataset_download`: pure), the notebook client (`client`) and the `idlab` command
(`launchers`). Importing `idlab` imports nothing else.
"""

__version__ = "0.1.0"
