"""Batched training: K subspace runs trained as one computation on one device.

A sweep is many small problems — one network on one dataset at several d and seeds — and
one of them rarely fills a device. A batch trains K of them in lockstep: every step is one
computation over all K runs,

    Θ_D[r] = θ_0^r + P^r·φ^r(θ_d^r)                                r = 1…K   (`stacked`)
    ℓ_r    = CE(f(x_{β_r}; Θ_D[r]), y_{β_r}) + λ_r·Σ_{t penalised} ‖Θ_D[r, rows_t]‖²
    θ_d^r ← run r's optimizer step on ∇_{θ_d^r} Σ_s ℓ_s

where β_r is run r's own minibatch. The sum couples nothing: ℓ_s does not depend on θ_d^r for
s ≠ r, so ∇_{θ_d^r} Σ_s ℓ_s = ∇_{θ_d^r} ℓ_r, run r's solo gradient.

Independence. Everything random is run r's alone and drawn as its solo run draws it
(`training.train`): θ_0^r, P^r, B^r and θ_d^r by run r's own `SubspaceNetwork`, seeded with
its seed, and its data order by its own generator, so that epoch e of run r visits

    β_r(e, i) = π_r^e[i·b : (i+1)·b],    π_r^e = the e-th randperm(N) of Generator(seed_r),

indices into the one copy of the training set the batch keeps on the device. A run's optimizer
(its learning rate, decay, Adam moments), logging interval, evaluation, early stopping,
divergence handling and cancellation are its own too, and nothing of run r is read by another
run: its result does not depend on its batchmates. It equals its solo result up to the
rounding of batched products (float32 sums in another order): every metric point and final
metric within 1e-6 relative on CPU over the curves of tests/engine/test_batched.py (which
asserts 1e-5). Rounding can still tip a decision that sits on a knife's edge — an early stop on
a metric that moves by 1e-9, a run on the brink of divergence — the same way as a solo run
on another device.

What must be equal (`batch_key`): the training data (dataset, train_size, test_size,
input_scaling: one copy on the device), the architecture (model, and fc_widths for `fc`: one D
and one layout of Θ_D), batch_size (one minibatch shape), weight_decay_scope (one set of
penalised rows), device, and method "subspace" for all. Everything else is per run: seed, d
(hence k), projection, augmentation and their options, P's law and normalisation, θ_d's
initialisation, optimizer, lr, lr_decay, weight_decay, epochs, log_every, early stopping,
on_divergence. Fastfood runs whose k round up to the same power of two L share one transform
(`stacked`); dense and sparse runs each apply their own P.

Lifecycle. A run leaves the batch when it succeeds, is cancelled (its callback returns True),
or diverges under on_divergence "fail"; the others go on with K − 1 rows (the stack is rebuilt
from the runs still training, nothing is recomputed). With "reduce_lr" a diverged run alone
restarts — rebuilt from its seed, lr × 0.1, step counter running on — while the others keep
their places; from then on its epochs need not align with theirs, so a step may hold a run's
short last minibatch (N mod b examples) next to full ones: it is padded to b with example 0
and weighted out,

    ℓ_r = Σ_{j < b_r} ce_rj / b_r.

Points. Each run's callback hears exactly the calls a solo run makes, in the same order: the
lr at the start of every epoch; after every step train_loss/train_acc at the end of each
logging interval and [] otherwise; [] after every evaluation batch; then test_acc, test_loss,
epoch_train_loss, epoch_train_acc. A NaN/inf mean loss is caught at the end of the interval,
before its points are reported. The final metrics and statistics have the solo run's keys.

Evaluation. The runs that end an epoch at the same step are evaluated together: each test
batch x (shared, not copied per run) goes through all of their networks at once,
f(x; Θ_D[r]) for r in that set; for `fc` the first layer is one product of x with the K
weight matrices side by side, x·[W^1_1ᵀ … W^1_Kᵀ].

Cost (bench/sweep.py, one torch thread on the 2-core development machine, 8 December 2026, with
the native fastfood kernel). A batched step does a solo step's arithmetic for every run, and on a
CPU that arithmetic is the time; K runs' tensors also no longer fit the caches one run's do.
li-mnist-fc's 21 runs, one epoch of all 60,000 examples: 36.2 s serial, 41.0 s in batches of 4
(0.88×), 37.4 s in batches of 11. On a CPU a batch saves each run's process start and data load —
short runs gain (docs/benchmarks.md) — and a long run gains nothing; the gain is for devices that
one small run leaves idle. Memory: each run keeps its own network (θ_0, P, B) and the stack a copy
of θ_0 and of fastfood's diagonals — with the step's activations ≈ 20 MB per MNIST-FC fastfood run
on CPU; K dense P take K times one.

CUDA. The same code runs on a CUDA device unchanged (one copy of the data there, every tensor
on it). What each step still does per run is small: φ^r, its padding, its optimizer step, its
interval sums and its callback — about twenty kernels per run. `compile_step` compiles the step
of each composition of the batch (`compiled.py`, recompiled when a run leaves or restarts); a
stacked optimizer over the padded (K, d_max) θ_d would remove the per-run optimizer kernels and
is not here. bench/gpu.sh measures both where a GPU is lent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from idlab import metrics as M
from idlab.config import RunConfig
from worker.subspace.compiled import Objective
from worker.subspace.data import Splits
from worker.subspace.network import build_network
from worker.subspace.stacked import StackedNetworks
from worker.subspace.statistics import compare
from worker.subspace.training import (
    EVAL_BATCH,
    LR_REDUCTION,
    Callback,
    MetricPoint,
    PhaseCallback,
    RunResult,
    _no_improvement,
    make_optimizer,
    model_file,
    projection_blocks,
    resolve_device,
    rff_blocks,
)

#: Told a run's RunResult when it leaves the batch.
ResultCallback = Callable[[RunResult], None]

#: The fields that must be equal for runs to share a batch (fc_widths only for model "fc").
BATCH_FIELDS = ("dataset", "train_size", "test_size", "input_scaling", "model", "fc_widths",
                "batch_size", "weight_decay_scope", "device")


class BatchIncompatible(ValueError):
    """Runs that cannot share a batch: `field` names the run-config field that differs (or must be set)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class BatchSetupError(RuntimeError):
    """Run `index` of the batch could not be built (its cause is chained); no run has started."""

    def __init__(self, index: int, cause: Exception):
        super().__init__(f"run {index} of the batch could not be built: {cause}")
        self.index = index


def batch_key(config: RunConfig) -> tuple:
    """What runs must share to be trained together: ((field, value), …) over `BATCH_FIELDS`.

    Runs with equal keys and method "subspace" can share a batch (`compatible`).
    """
    return tuple((name, _frozen(getattr(config, name))) for name in BATCH_FIELDS
                 if name != "fc_widths" or config.model == "fc")


def compatible(configs: Sequence[RunConfig]) -> None:
    """Raise `BatchIncompatible`, naming the field, unless these runs can be trained as one batch."""
    if not configs:
        raise BatchIncompatible("configs", "a batch needs at least one run")
    for index, config in enumerate(configs):
        if config.method != "subspace":
            raise BatchIncompatible("method", f"run {index} has method {config.method!r}: "
                                              "only subspace runs are batched (train direct runs alone)")
    first = dict(batch_key(configs[0]))
    for index, config in enumerate(configs[1:], 1):
        key = dict(batch_key(config))
        for name in BATCH_FIELDS:
            if key.get(name) != first.get(name):
                raise BatchIncompatible(name, f"runs 0 and {index} differ in {name!r} "
                                              f"({getattr(configs[0], name)!r} ≠ {getattr(config, name)!r}): "
                                              f"a batch shares {', '.join(BATCH_FIELDS)}")


def train_batch(configs: Sequence[RunConfig], splits: Splits, callbacks: Sequence[Callback | None] | None = None,
                from_run_stats: Sequence[dict | None] | None = None,
                on_phase: Sequence[PhaseCallback | None] | None = None,
                on_result: Sequence[ResultCallback | None] | None = None,
                forward: str = "auto", compile_step: str = "never") -> list[RunResult]:
    """Train K compatible runs as one computation; returns each run's RunResult, in order.

    callbacks, from_run_stats, on_phase: one per run (or None), each exactly what `training.train`
    takes for that run. on_result: one per run (or None), called with the run's RunResult as soon as
    it leaves the batch (succeeded, cancelled, diverged), while the others train on — a worker records
    a run's end when it happens, not when its slowest batchmate ends. forward: how the K networks are
    evaluated — "explicit" batched products (fc), "vmap" over functional_call (any model), "auto"
    (explicit for fc). compile_step: `compiled.MODES`, for the step of each composition of the batch (a run
    leaving it makes a new one). Raises `BatchIncompatible` or `BatchSetupError` before anything trains.
    """
    configs = list(configs)
    compatible(configs)
    K = len(configs)
    callbacks, from_run_stats, on_phase, on_result = (
        _per_run(values, K, name) for values, name in
        ((callbacks, "callbacks"), (from_run_stats, "from_run_stats"), (on_phase, "on_phase"),
         (on_result, "on_result")))
    device = resolve_device(configs[0].device)
    train_x, train_y, test_x, test_y = (t.to(device) for t in (splits.train_x, splits.train_y,
                                                                splits.test_x, splits.test_y))
    n, b = len(train_x), configs[0].batch_size
    started = time.perf_counter()
    runs = []
    for index in range(K):
        run = _Run(configs[index], callbacks[index], on_phase[index], from_run_stats[index], device,
                   steps_per_epoch=math.ceil(n / b), started=started, on_result=on_result[index])
        try:
            run.attempt()
        except Exception as error:
            raise BatchSetupError(index, error) from error
        runs.append(run)

    stack = None
    while True:
        for run in _training(runs):
            if run.position is None:
                run.begin_epoch(n, device)       # may be cancelled by its lr point
        active = _training(runs)
        if not active:
            break
        if stack is None or {id(run.network) for run in active} != {id(network) for network in stack.networks}:
            stack = StackedNetworks([run.network for run in active], active[0].config, forward)
            members = [active[i] for i in stack.order]             # row i of Θ_D is members[i]
            decays = [run.config.weight_decay for run in members]
            weight_decay = torch.tensor(decays, device=device) if any(decays) else None
            objective = Objective(stack_objective(stack, weight_decay), compile_step, device,
                                  steps=max(run.steps_left() for run in members))
        losses, hits, seen = _step(objective, members, train_x, train_y, b)
        for i, run in enumerate(members):
            run.record_step(losses[i], hits[i], seen[i])
        ending = [i for i, run in enumerate(members) if run.status is None and run.position == run.steps_per_epoch]
        if ending:
            _evaluate(stack, [members[i] for i in ending], ending, test_x, test_y)
    return [run.outcome for run in runs]


# ---- one step, one evaluation, for all runs at once ------------------------------------------


def stack_objective(stack: StackedNetworks, weight_decay: Tensor | None) -> Callable:
    """(x, y, mask, sizes) ↦ (Σ_r ℓ_r, the K cross-entropies, the K runs' logits) — what `compiled.Objective`
    may compile; mask and sizes weight out the padding of short minibatches (None: none)."""
    def objective(x: Tensor, y: Tensor, mask: Tensor | None, sizes: Tensor | None):
        theta_D = stack.theta_D()                                      # (K, D)
        logits = stack.logits(theta_D, x)                              # (K, b, classes)
        ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
        loss = ce.mean(1) if mask is None else (ce * mask).sum(1) / sizes
        total = loss if weight_decay is None else loss + weight_decay * stack.squared_norm(theta_D)
        return total.sum(), loss, logits

    return objective


def _step(objective: Callable, runs: list[_Run], train_x: Tensor, train_y: Tensor,
          b: int) -> tuple[Tensor, Tensor, list[int]]:
    """One optimizer step of every run on its own minibatch; returns the K cross-entropies, hits and sizes.

        ℓ_r = CE(f(x_{β_r}; Θ_D[r]), y_{β_r}) + λ_r·‖Θ_D[r]‖²_penalised;   backward of Σ_r ℓ_r
    """
    indices = [run.minibatch(b) for run in runs]
    seen = [len(index) for index in indices]
    mask = None
    if min(seen) < max(seen):   # a restarted run's short last minibatch next to full ones: pad, weight out
        width = max(seen)
        indices = [F.pad(index, (0, width - len(index))) for index in indices]
        mask = torch.arange(width, device=train_x.device) < torch.tensor(seen, device=train_x.device).unsqueeze(1)
    index = torch.stack(indices)                                   # (K, b)
    x, y = train_x[index], train_y[index]                          # (K, b, C, H, W), (K, b)
    for run in runs:
        run.optimizer.zero_grad(set_to_none=True)
    sizes = None if mask is None else torch.tensor(seen, device=train_x.device)
    total, loss, logits = objective(x, y, mask, sizes)
    total.backward()
    for run in runs:
        run.optimizer.step()
    hits = logits.detach().argmax(-1) == y
    if mask is not None:
        hits &= mask
    return loss.detach(), hits.sum(1), seen


@torch.no_grad()
def _evaluate(stack: StackedNetworks, runs: list[_Run], rows: list[int], test_x: Tensor, test_y: Tensor) -> None:
    """Mean cross-entropy and accuracy on the test set of the runs `runs` (rows `rows` of the stack), together.

    After every test batch each run is asked whether to stop, as a solo run is; a cancelled run
    leaves the evaluation at once.
    """
    for run in runs:
        run.on_phase(M.EVALUATING)
    theta_D = stack.theta_D()[rows]                                # (E, D)
    loss_sum = torch.zeros(len(runs), device=test_x.device)
    correct = torch.zeros(len(runs), device=test_x.device, dtype=torch.long)
    for start in range(0, len(test_x), EVAL_BATCH):
        x, target = test_x[start:start + EVAL_BATCH], test_y[start:start + EVAL_BATCH]
        logits = stack.logits(theta_D, x, shared=True)             # (E, B, classes)
        loss_sum += F.cross_entropy(logits.flatten(0, 1), target.repeat(len(runs)),
                                    reduction="none").view(len(runs), -1).sum(1)
        correct += (logits.argmax(-1) == target).sum(1)
        go_on = [not run.callback([]) for run in runs]
        if not all(go_on):
            for run, keep in zip(runs, go_on, strict=True):
                if not keep:
                    run.finish("cancelled")
            keep = torch.tensor(go_on, device=test_x.device)
            runs = [run for run, kept in zip(runs, go_on, strict=True) if kept]
            theta_D, loss_sum, correct = theta_D[keep], loss_sum[keep], correct[keep]
            if not runs:
                return
    for r, run in enumerate(runs):
        run.end_epoch(loss_sum[r].item() / len(test_x), correct[r].item() / len(test_x))


# ---- one run's state ------------------------------------------------------------------------


class _Run:
    """What `training.train` and `_fit` keep for one run, advanced one step at a time by the batch."""

    def __init__(self, config: RunConfig, callback: Callback | None, on_phase: PhaseCallback | None,
                 from_run_stats: dict | None, device: torch.device, steps_per_epoch: int, started: float,
                 on_result: ResultCallback | None = None):
        self.config, self.from_run_stats, self.device = config, from_run_stats, device
        self.callback = callback or (lambda points: False)
        self.on_phase = on_phase or (lambda phase: None)
        self.on_result = on_result or (lambda result: None)
        self.outcome: RunResult | None = None
        self.steps_per_epoch, self.started = steps_per_epoch, started
        self.lr, self.reductions, self.step = config.lr, 0, 0
        self.status: str | None = None        # None while training; then succeeded | cancelled | diverged
        self.error: str | None = None
        self.final: dict[str, float] = {}
        self.seconds = 0.0

    def attempt(self) -> None:
        """Build the run from its seed (θ_0, P, B, θ_d, data order) and start at epoch 0: train()'s loop body."""
        config = self.config
        torch.manual_seed(config.seed)
        self.network = build_network(config, self.from_run_stats).to(self.device)
        # P is fixed unless trained: its statistics are taken at the end, so that K runs do not each hold
        # a sample of P (16 columns of every block: 16·D floats per block for fastfood) while they train.
        self.P_initial = projection_blocks(self.network, config) if config.train_p else None
        self.theta_d_initial = self.network.theta_d.detach().cpu().clone()
        self.B_initial = rff_blocks(self.network)
        self.offset_at_zero = self.network.offset_at_zero()
        self.optimizer = make_optimizer(config, [p for p in self.network.parameters() if p.requires_grad], self.lr)
        self.order = torch.Generator().manual_seed(config.seed)
        self.epoch, self.position = 0, None
        self.best = {"value": None, "epoch": 0}
        self.best_test_acc = 0.0
        self.final = {}

    def begin_epoch(self, n: int, device: torch.device) -> None:
        self.epoch += 1
        self.on_phase(M.TRAINING)
        if self.callback([MetricPoint(self.step, self.epoch, M.LR, self.optimizer.param_groups[0]["lr"])]):
            return self.finish("cancelled")
        self.permutation = torch.randperm(n, generator=self.order).to(device)
        self.position = 0
        self.interval_loss = torch.zeros((), device=device)
        self.interval_correct = torch.zeros((), device=device, dtype=torch.long)
        self.interval_steps = self.interval_seen = 0
        self.epoch_loss = self.epoch_correct = 0.0

    def steps_left(self) -> int:
        """Steps to the end of the run's last epoch (fewer if it stops early)."""
        return (self.config.epochs - self.epoch) * self.steps_per_epoch + self.steps_per_epoch - (self.position or 0)

    def minibatch(self, b: int) -> Tensor:
        return self.permutation[self.position * b:(self.position + 1) * b]

    def record_step(self, loss: Tensor, correct: Tensor, seen: int) -> None:
        """After the step: accumulate; at the end of a logging interval check the loss and report."""
        self.step += 1
        self.interval_loss += loss
        self.interval_correct += correct
        self.interval_steps += 1
        self.interval_seen += seen
        last = self.position == self.steps_per_epoch - 1
        self.position += 1
        if self.step % self.config.log_every == 0 or last:
            mean_loss = self.interval_loss.item() / self.interval_steps
            if not math.isfinite(mean_loss):
                return self.diverge(mean_loss)
            accuracy = self.interval_correct.item() / self.interval_seen
            self.epoch_loss += mean_loss * self.interval_steps
            self.epoch_correct += accuracy * self.interval_seen
            points = [MetricPoint(self.step, self.epoch, M.TRAIN_LOSS, mean_loss),
                      MetricPoint(self.step, self.epoch, M.TRAIN_ACC, accuracy)]
            self.interval_loss.zero_()
            self.interval_correct.zero_()
            self.interval_steps = self.interval_seen = 0
            if self.callback(points):
                return self.finish("cancelled")
        elif self.callback([]):
            return self.finish("cancelled")

    def diverge(self, loss: float) -> None:
        """A NaN/inf mean loss: restart alone with lr × 0.1 (reduce_lr, within the limit), else end diverged."""
        config = self.config
        if config.on_divergence == "reduce_lr" and self.reductions < config.max_lr_reductions:
            self.reductions += 1
            self.lr *= LR_REDUCTION
            return self.attempt()
        error = f"loss became {loss} at step {self.step}; " + (
            f"gave up after {self.reductions} learning-rate reductions"
            if config.on_divergence == "reduce_lr" else "on_divergence is 'fail'")
        self.finish("diverged", error)

    def end_epoch(self, test_loss: float, test_acc: float) -> None:
        """The epoch's test metrics and points, the lr decay, early stopping, and the end of the last epoch."""
        config, n_steps = self.config, self.steps_per_epoch
        self.best_test_acc = max(self.best_test_acc, test_acc)
        final = {M.TEST_ACC: test_acc, M.TEST_LOSS: test_loss,
                 M.TRAIN_LOSS: self.epoch_loss / n_steps, M.TRAIN_ACC: self.epoch_correct / len(self.permutation),
                 "best_test_acc": self.best_test_acc, "epochs": self.epoch}
        self.final = final
        points = [MetricPoint(self.step, self.epoch, key, final[key]) for key in (M.TEST_ACC, M.TEST_LOSS)] + [
                  MetricPoint(self.step, self.epoch, M.EPOCH_TRAIN_LOSS, final[M.TRAIN_LOSS]),
                  MetricPoint(self.step, self.epoch, M.EPOCH_TRAIN_ACC, final[M.TRAIN_ACC])]
        if self.callback(points):
            return self.finish("cancelled")
        for group in self.optimizer.param_groups:
            group["lr"] *= config.lr_decay
        stalled = config.early_stopping_patience and _no_improvement(self.best, final, self.epoch, config)
        if stalled or self.epoch == config.epochs:
            return self.finish("succeeded")
        self.position = None

    def finish(self, status: str, error: str | None = None) -> None:
        self.status, self.error = status, error
        if status != "succeeded":
            self.final = {}
        self.seconds = time.perf_counter() - self.started
        self.outcome = self.result()
        self.on_result(self.outcome)

    def result(self) -> RunResult:
        """The solo run's RunResult: final metrics, sizes and cost; P, θ_d (and B) statistics unless diverged."""
        config, network = self.config, self.network
        metrics = {**self.final, "D": config.D, "d": config.d, "k": config.k, "seconds": self.seconds,
                   "steps": self.step, "lr": self.lr, "lr_reductions": self.reductions,
                   M.OFFSET_AT_ZERO: self.offset_at_zero}
        statistics = {}
        if self.status != "diverged":
            P_initial = self.P_initial if config.train_p else projection_blocks(network, config)
            statistics = {
                "P": compare(P_initial, projection_blocks(network, config) if config.train_p else None),
                "theta_d": compare({"theta_d": self.theta_d_initial}, {"theta_d": network.theta_d.detach().cpu()}),
            }
            if self.B_initial:
                statistics["B"] = compare(self.B_initial, rff_blocks(network) if config.train_rff_b else None)
        model = model_file(config, network, metrics, self.from_run_stats) if self.status == "succeeded" else None
        return RunResult(self.status, metrics, statistics, self.error, model)


def _training(runs: list[_Run]) -> list[_Run]:
    return [run for run in runs if run.status is None]


def _per_run(values: Sequence | None, K: int, name: str) -> list:
    if values is None:
        return [None] * K
    values = list(values)
    if len(values) != K:
        raise ValueError(f"{name}: one per run, got {len(values)} for {K} runs")
    return values


def _frozen(value):
    return tuple(value) if isinstance(value, list) else value
