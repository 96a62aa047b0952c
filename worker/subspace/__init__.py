"""The subspace-training engine: θ_D = θ_0 + P·φ(θ_d).

One module per concept: `projection` (P), `augmentation` (φ), `model`, `data`,
`training` (the loop), `batched` (K runs trained as one computation, on
`stacked`: the K networks' Θ_D) and `statistics` (what a run keeps of P and θ_d).
The engine imports the contracts only (`idlab.config`, `idlab.metrics`, the dataset
files): no database, queue or HTTP; the worker adapts it to the lab. d_int90, which
needs no torch, is the domain's (`backend.domain.analysis.intrinsic_dimension`).
"""
