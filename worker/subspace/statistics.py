"""What a run keeps of P and θ_d: per-block summaries and histograms on shared bins.

P ∈ R^{D×k} is split into the column blocks of φ (RunConfig.feature_blocks():
"linear", "power_2", "cos", "sin", "rff_linear", …); θ_d is the single block
"theta_d". For each block we keep, before and after training,

    n, mean μ = (1/n) Σ x_i, std σ = √((1/n) Σ (x_i − μ)²), min, max, abs_mean = (1/n) Σ |x_i|

and a histogram on bins shared by both, so the two can be overlaid. σ is the
population standard deviation of the entries: the scale with which a later run
(p_init = from_run:<id>) re-draws that block (Lam & Lee 2020 re-initialised P
with the per-block standard deviations of trained P); `sampling_stats` reads it.

Bins. With lo, hi the 0.1 and 99.9 percentiles of all values of a block
(initial and trained together) and w = (hi − lo) / bins,

    edges_i = lo + i·w,   bin(x) = clamp(⌊(x − lo) / w⌋, 0, bins − 1),

so values beyond the robust range are counted in the first or last bin and the
counts sum to n (NaNs, which belong to no bin, are not counted).

Tensors can be huge (a dense P may hold 2·10⁸ entries): everything is computed
in torch on the tensor's own device, by one-pass reductions, histograms of
bounded chunks and order statistics of a random subsample of at most 10⁶
values — never a copy to numpy, never a sort of the whole tensor.
All outputs are plain ints, floats and lists (json.dumps-able; a non-finite
statistic is None).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from idlab.metrics import json_safe

LOW_PERCENTILE, HIGH_PERCENTILE = 0.1, 99.9
MAX_PERCENTILE_SAMPLE = 1_000_000
CHUNK_ELEMENTS = 1 << 20
SUBSAMPLE_SEED = 0


def summary(values: Tensor) -> dict:
    """{"n", "mean", "std", "min", "max", "abs_mean"} of all entries (std with 1/n; None when n = 0)."""
    values = _as_float(values)
    n = values.numel()
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None, "abs_mean": None}
    variance, mean = torch.var_mean(values, correction=0)
    lowest, highest = torch.aminmax(values)
    abs_mean = torch.linalg.vector_norm(values, ord=1) / n  # Σ|x_i| / n without materialising |x|
    return {
        "n": n,
        "mean": _plain(mean),
        "std": _plain(variance.sqrt()),
        "min": _plain(lowest),
        "max": _plain(highest),
        "abs_mean": _plain(abs_mean),
    }


def histogram(values: Tensor, edges: Tensor) -> list[int]:
    """Counts of values in the bins [edges_i, edges_{i+1}) (the last one closed), out-of-range values clamped.

    A value below edges_0 counts in the first bin and one above edges_{-1} in the last,
    so the counts sum to the number of non-NaN values.
    """
    edges = edges.detach().to(device="cpu", dtype=torch.float64)
    bins = len(edges) - 1
    lo, hi = float(edges[0]), float(edges[-1])
    widths = torch.full((bins,), (hi - lo) / bins, dtype=torch.float64)
    equal_width = torch.allclose(edges.diff(), widths, rtol=1e-9, atol=0)
    counts = torch.zeros(bins, dtype=torch.int64)
    for chunk in _chunks(_as_float(values)):
        if equal_width and chunk.device.type == "cpu":  # the fastest CPU kernel; ignores NaN
            chunk_counts = torch.histc(chunk.clamp(lo, hi), bins=bins, min=lo, max=hi)
        else:  # index + bincount: deterministic on GPUs, and exact for uneven edges
            chunk_counts = torch.bincount(_bin_index(chunk, edges, equal_width), minlength=bins)
        counts += chunk_counts.to(device="cpu", dtype=torch.int64)
    return counts.tolist()


def shared_edges(*tensors: Tensor, bins: int = 50) -> Tensor:
    """bins + 1 equal-width edges over [lo, hi] = the 0.1 and 99.9 percentiles of the union of the tensors.

    The percentiles are order statistics of the finite values — of a uniform random
    subsample of at most 10⁶ values (fixed seed) when the tensors are larger. A
    degenerate range (lo = hi, e.g. θ_d = 0) is widened to lo ± ½·max(|lo|, 1).
    """
    if bins < 1:
        raise ValueError(f"bins must be ≥ 1, got {bins}")
    sample = _percentile_sample([_as_float(t) for t in tensors])
    if sample.numel() == 0:
        lo = hi = 0.0
    else:
        lo, hi = (_order_statistic(sample, p) for p in (LOW_PERCENTILE, HIGH_PERCENTILE))
    if not hi > lo:
        half_width = 0.5 * max(abs(lo), 1.0)
        lo, hi = lo - half_width, lo + half_width
    return torch.linspace(lo, hi, bins + 1, dtype=torch.float64)


def compare(blocks_initial: dict[str, Tensor], blocks_trained: dict[str, Tensor] | None, bins: int = 50) -> dict:
    """Per block: shared edges and the counts and summary before and after training.

    {block: {"edges": [...], "initial": {"counts": [...], **summary},
             "trained": {"counts": [...], **summary} or None}}
    """
    if blocks_trained is not None and set(blocks_trained) != set(blocks_initial):
        raise ValueError(f"initial and trained blocks differ: {sorted(blocks_initial)} vs {sorted(blocks_trained)}")
    compared = {}
    for block, initial in blocks_initial.items():
        trained = blocks_trained[block] if blocks_trained is not None else None
        edges = shared_edges(*([initial] if trained is None else [initial, trained]), bins=bins)
        compared[block] = {
            "edges": edges.tolist(),
            "initial": _described(initial, edges),
            "trained": _described(trained, edges) if trained is not None else None,
        }
    return compared


def sampling_stats(compared: dict) -> dict[str, dict[str, float]]:
    """{block: {"mean", "std"}} to re-draw each block from: the trained statistics, else the initial ones.

    Accepts the output of `compare`, also after a JSON round trip.
    """
    stats = {}
    for block, entry in compared.items():
        source = entry.get("trained") or entry["initial"]
        if source["mean"] is None or source["std"] is None:
            raise ValueError(f"block {block!r} has no finite mean and std to sample from (empty or diverged)")
        stats[block] = {"mean": float(source["mean"]), "std": float(source["std"])}
    return stats


def column_blocks(p: Tensor, feature_blocks: Iterable[tuple[str, int]]) -> dict[str, Tensor]:
    """P's entries per feature block: columns [offset, offset + width) of the D×k matrix, in φ's order.

    Dense P gives column views (no copy); a sparse COO P gives the values of its
    non-zeros in those columns (the entries p_init draws).
    """
    names, widths = zip(*feature_blocks, strict=True)
    if sum(widths) != p.shape[1]:
        raise ValueError(f"feature blocks cover {sum(widths)} columns but P has k = {p.shape[1]}")
    if not p.is_sparse:
        return dict(zip(names, p.split(list(widths), dim=1), strict=True))
    p = p.coalesce()
    columns, entries = p.indices()[1], p.values()
    starts = torch.tensor([0, *widths], device=columns.device).cumsum(0)
    block_of_entry = torch.bucketize(columns, starts[1:-1], right=True)
    return {name: entries[block_of_entry == i] for i, name in enumerate(names)}


# ---- helpers --------------------------------------------------------------------------------


def _described(values: Tensor, edges: Tensor) -> dict:
    return {"counts": histogram(values, edges), **summary(values)}


def _as_float(values: Tensor) -> Tensor:
    """The entries, detached, as float32 or float64 (a copy only for other dtypes); of a sparse tensor, its
    non-zeros."""
    values = values.detach()
    if values.is_sparse:
        values = values.coalesce().values()
    return values if values.dtype in (torch.float32, torch.float64) else values.float()


def _chunks(values: Tensor) -> Iterable[Tensor]:
    """The values as flat chunks of about CHUNK_ELEMENTS, split along dim 0 (a copy of one chunk at most)."""
    if values.dim() == 0:
        values = values.reshape(1)
    row_size = values[0].numel() if values.shape[0] > 0 else 1
    rows_per_chunk = max(1, CHUNK_ELEMENTS // max(1, row_size))
    for rows in values.split(rows_per_chunk, dim=0):
        yield rows.reshape(-1)


def _bin_index(chunk: Tensor, edges: Tensor, equal_width: bool) -> Tensor:
    """bin(x) for the non-NaN values of a chunk, clamped to [0, bins − 1]."""
    chunk = chunk[~chunk.isnan()]
    bins = len(edges) - 1
    if equal_width:
        lo, hi = float(edges[0]), float(edges[-1])
        return ((chunk - lo) * (bins / (hi - lo))).clamp_(0, bins - 1).to(torch.int64)
    return torch.bucketize(chunk.double(), edges[1:-1].to(chunk.device), right=True)


def _percentile_sample(tensors: list[Tensor]) -> Tensor:
    """The finite values (flat, on the CPU) — a uniform random subsample of about MAX_PERCENTILE_SAMPLE when more."""
    tensors = [t.reshape(1) if t.dim() == 0 else t for t in tensors if t.numel() > 0]
    total = sum(t.numel() for t in tensors)
    generator = torch.Generator().manual_seed(SUBSAMPLE_SEED)
    parts = [torch.empty(0, dtype=torch.float64)]
    for t in tensors:
        if total <= MAX_PERCENTILE_SAMPLE:
            part = t.reshape(-1)
        else:
            flat_index = torch.randint(0, t.numel(), (math.ceil(MAX_PERCENTILE_SAMPLE * t.numel() / total),),
                                       generator=generator)
            if t.is_contiguous():
                part = t.reshape(-1)[flat_index.to(t.device)]
            else:  # index the strided view directly: no flattening copy
                part = t[tuple(i.to(t.device) for i in torch.unravel_index(flat_index, t.shape))]
        parts.append(part.to("cpu", torch.float64))
    sample = torch.cat(parts)
    return sample if bool(torch.isfinite(sample).all()) else sample[torch.isfinite(sample)]


def _order_statistic(sample: Tensor, percentile: float) -> float:
    """The p-th percentile as the ⌈p/100 · n⌉-th smallest value (a selection, not a sort)."""
    rank = min(sample.numel(), max(1, math.ceil(percentile / 100 * sample.numel())))
    return float(torch.kthvalue(sample, rank).values)


def _plain(value: Tensor) -> float | None:
    return json_safe(float(value))
