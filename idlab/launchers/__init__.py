"""The `idlab` command and the processes it starts: `cli` (train, presets, …), `serve` (the
embedded lab), `worker_command`, `data_command`, `supervised`. The top layer: it may import
every other part of the lab.
"""
