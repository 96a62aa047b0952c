"""The subspace-training engine: θ_D = θ_0 + P·φ(θ_d).

One module per concept: `projection` (P), `augmentation` (φ), `model`, `data`,
`training` (the loop), `batched` (K runs trained as one computation, on
`stacked`: the K networks' Θ_D), `statistics` (what a run keeps of P and θ_d) and
`intrinsic_dimension` (d_int90; numpy only). This package imports nothing at
import time, so the backend can use `intrinsic_dimension` without torch.
"""
