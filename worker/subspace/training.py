"""The training loop: minibatch descent on θ_d (or θ_D), evaluation, divergence and stopping.

Per step, with B a minibatch of the training set:

    θ_D  = θ_0 + P·φ(θ_d)                        (computed once per step, not per example)
    loss = CE(f(x_B; θ_D), y_B) + weight_decay · Σ_t ‖θ_D[rows_t]‖²
                                                 (t over every tensor, or the kernels only:
                                                  weight_decay_scope)
    θ_d ← optimizer step on ∇_{θ_d} loss          (and P with train_p, B with train_rff_b)

After every epoch the learning rate is multiplied by `lr_decay` and the network is
evaluated on the test set. A NaN/inf loss is detected at the end of the logging
interval it occurs in; the run then fails, or with `on_divergence = reduce_lr`
restarts from the same θ_0, P and θ_d with lr × 0.1 (at most `max_lr_reductions`
times). The step counter keeps running across restarts, so the diverged attempt
stays visible in the logged curves.

The engine knows nothing of the service: it reports metric points to a callback,
which returns True to ask the run to stop (a cancel). The callback is called after
every step (with no points between logging steps) and between evaluation batches,
so a run stops within one step of being asked, whatever `log_every`; an optional
`on_phase` hears when the run starts training or evaluating (`idlab.metrics.PHASES`).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from idlab import metrics as M
from idlab.config import RunConfig
from worker.subspace.compiled import Objective
from worker.subspace.data import Splits
from worker.subspace.network import SubspaceNetwork, build_network
from worker.subspace.statistics import compare

LR_REDUCTION = 0.1
EVAL_BATCH = 2048
FASTFOOD_SAMPLED_COLUMNS = 16


@dataclass(frozen=True)
class MetricPoint:
    step: int
    epoch: int
    key: str
    value: float


#: Receives new metric points (possibly none) and returns True to stop the run.
Callback = Callable[[list[MetricPoint]], bool | None]
#: Told the phase the run enters (`idlab.metrics.TRAINING`, `EVALUATING`).
PhaseCallback = Callable[[str], None]


@dataclass
class RunResult:
    status: str                        # "succeeded" | "cancelled" | "diverged"
    metrics: dict[str, float]
    statistics: dict = field(default_factory=dict)
    error: str | None = None
    model: bytes | None = None         # a succeeded subspace run's model file (`export`), when it fits one


class Diverged(RuntimeError):
    def __init__(self, step: int, loss: float):
        super().__init__(f"loss became {loss} at step {step}")
        self.step = step


class Cancelled(Exception):
    def __init__(self, step: int):
        self.step = step


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for, but CUDA is not available on this machine")
    return torch.device(name)


def make_optimizer(config: RunConfig, params: list[Tensor], lr: float) -> torch.optim.Optimizer:
    """The run's optimizer over `params`, fused where torch has a fused kernel for them.

    Fused Adam and SGD update every tensor in one kernel instead of a chain of for-each
    operations: the same update within float rounding, and on the development CPU 2.2× faster
    for the 199,210 weights of direct MNIST-FC training (97 against 220 µs) and 1.4× for a
    θ_d of 300 (21 against 30 µs). Where torch has none (another device, an older torch),
    the for-each implementation.
    """
    if config.optimizer == "adam":
        make = functools.partial(torch.optim.Adam, params, lr=lr, betas=tuple(config.adam_betas))
    else:
        make = functools.partial(torch.optim.SGD, params, lr=lr, momentum=config.momentum)
    if all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params):
        try:
            return make(fused=True)
        except (RuntimeError, TypeError, ValueError):   # no fused kernel in this torch for these tensors
            pass
    return make()


@torch.no_grad()
def evaluate(network, x: Tensor, y: Tensor, check_stop: Callable[[], bool] | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of the network at its current θ_D over (x, y)."""
    theta_D = network.theta_D()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for start in range(0, len(x), EVAL_BATCH):
        logits = network(x[start:start + EVAL_BATCH], theta_D)
        target = y[start:start + EVAL_BATCH]
        loss_sum += F.cross_entropy(logits, target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
        if check_stop is not None and check_stop():
            raise Cancelled(-1)
    return loss_sum.item() / len(x), correct.item() / len(x)


def projection_blocks(network, config: RunConfig) -> dict[str, Tensor]:
    """The entries of P per feature block (linear, power_2, cos, …).

    Dense and sparse P report their stored values; fastfood never stores P, so a few
    columns of each block are materialised (P·e_j) as a sample of its entries.
    """
    if not isinstance(network, SubspaceNetwork):
        return {}
    blocks, start = {}, 0
    for name, width in config.feature_blocks():
        columns = slice(start, start + width)
        entries = network.P.column_entries(columns)
        if entries is None:
            picks = range(start, start + width, max(1, width // FASTFOOD_SAMPLED_COLUMNS))
            with torch.no_grad():
                entries = torch.cat([network.P(_basis(config.k, j, network.theta_0.device)) for j in picks])
        blocks[name] = entries.detach().float().cpu().clone()
        start += width
    return blocks


def _basis(k: int, j: int, device) -> Tensor:
    e = torch.zeros(k, device=device)
    e[j] = 1.0
    return e


def train(config: RunConfig, splits: Splits, callback: Callback | None = None,
          from_run_stats: dict[str, dict] | None = None, on_phase: PhaseCallback | None = None,
          compile_step: str = "never") -> RunResult:
    """Train one run to completion, cancellation or divergence; compile_step: `compiled.MODES`."""
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    data = [t.to(device) for t in (splits.train_x, splits.train_y, splits.test_x, splits.test_y)]
    started = time.perf_counter()
    lr, reductions, step = config.lr, 0, 0
    callback = callback or (lambda points: False)
    on_phase = on_phase or (lambda phase: None)
    while True:
        network = build_network(config, from_run_stats).to(device)
        P_initial = projection_blocks(network, config)
        subspace = isinstance(network, SubspaceNetwork)
        theta_d_initial = network.theta_d.detach().cpu().clone() if subspace else None
        B_initial = rff_blocks(network) if subspace else {}
        offset_at_zero = network.offset_at_zero() if subspace else 0.0
        try:
            final, step = _fit(network, config, data, lr, step, callback, on_phase, compile_step)
            status, error = "succeeded", None
            break
        except Cancelled as stop:
            final, status, error = {}, "cancelled", None
            step = max(step, stop.step)
            break
        except Diverged as diverged:
            step = diverged.step
            if config.on_divergence == "reduce_lr" and reductions < config.max_lr_reductions:
                reductions += 1
                lr *= LR_REDUCTION
                continue
            final, status = {}, "diverged"
            error = f"{diverged}; " + (f"gave up after {reductions} learning-rate reductions"
                                       if config.on_divergence == "reduce_lr" else "on_divergence is 'fail'")
            break

    sizes = {"D": config.D, "d": config.D if config.method == "direct" else config.d,
             "k": config.D if config.method == "direct" else config.k}
    metrics = {**final, **sizes, "seconds": time.perf_counter() - started, "steps": step,
               "lr": lr, "lr_reductions": reductions, M.OFFSET_AT_ZERO: offset_at_zero}
    statistics = {}
    if subspace and status != "diverged":
        P_trained = projection_blocks(network, config) if config.train_p else None
        statistics = {
            "P": compare(P_initial, P_trained),
            "theta_d": compare({"theta_d": theta_d_initial}, {"theta_d": network.theta_d.detach().cpu()}),
        }
        if B_initial:
            statistics["B"] = compare(B_initial, rff_blocks(network) if config.train_rff_b else None)
    model = model_file(config, network, metrics, from_run_stats) if subspace and status == "succeeded" else None
    return RunResult(status, metrics, statistics, error, model)


def model_file(config: RunConfig, network: SubspaceNetwork, metrics: dict, from_run_stats: dict | None) -> bytes | None:
    """The run's model file (`export`): config, seed and trained tensors; None when they are too large for one.

    Its size, θ_D's and their ratio join the run's final metrics (`metrics` is updated).
    """
    from worker.subspace import export  # it evaluates with this module's `evaluate`

    try:
        model = export.export_bytes(config, network, metrics, from_run_stats)
    except export.ModelFileError:
        return None
    metrics.update(export.sizes(config, len(model)))
    return model


def rff_blocks(network: SubspaceNetwork) -> dict[str, Tensor]:
    """The entries of the RFF matrices B (one block "B"), or {} without RFF features."""
    B = network.phi.B
    return {"B": B.detach().float().cpu().clone()} if B.numel() else {}


def step_objective(network, weight_decay: float) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]:
    """(x, y) ↦ (objective, cross-entropy, logits) of one step — what `compiled.Objective` may compile.

        θ_D = θ_0 + P·φ(θ_d);  loss = CE(f(x; θ_D), y);  objective = loss + weight_decay·Σ_t ‖θ_D[rows_t]‖²
    """
    def objective(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        parts, squared_norm = network.point(penalty=bool(weight_decay))
        logits = network.call(x, parts)
        loss = F.cross_entropy(logits, y)
        return (loss + weight_decay * squared_norm if weight_decay else loss), loss, logits

    return objective


def training_step(network, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, weight_decay: float,
                  objective: Callable | None = None) -> tuple[Tensor, Tensor]:
    """One step on the minibatch (x, y), minimising `step_objective` (or `objective`, e.g. compiled); returns
    the (detached) cross-entropy and logits."""
    total, loss, logits = (objective or step_objective(network, weight_decay))(x, y)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    return loss.detach(), logits.detach()


def _fit(network, config: RunConfig, data: list[Tensor], lr: float, step: int,
         callback: Callback, on_phase: PhaseCallback, compile_step: str = "never") -> tuple[dict[str, float], int]:
    """Epochs of minibatch training; returns the final metrics and the last step."""
    train_x, train_y, test_x, test_y = data
    params = [p for p in network.parameters() if p.requires_grad]
    optimizer = make_optimizer(config, params, lr)
    order = torch.Generator().manual_seed(config.seed)
    n = len(train_x)
    steps_per_epoch = math.ceil(n / config.batch_size)
    objective = Objective(step_objective(network, config.weight_decay), compile_step, train_x.device,
                          steps=config.epochs * steps_per_epoch)
    best = {"value": None, "epoch": 0}
    best_test_acc = 0.0
    final: dict[str, float] = {}

    for epoch in range(1, config.epochs + 1):
        on_phase(M.TRAINING)
        if callback([MetricPoint(step, epoch, M.LR, optimizer.param_groups[0]["lr"])]):
            raise Cancelled(step)
        step, epoch_loss, epoch_correct = _train_epoch(network, optimizer, config, train_x, train_y, order, epoch,
                                                       step, callback, objective)
        on_phase(M.EVALUATING)
        try:
            test_loss, test_acc = evaluate(network, test_x, test_y, check_stop=lambda: bool(callback([])))
        except Cancelled:
            raise Cancelled(step) from None   # evaluate knows no step: the run stopped after this one
        best_test_acc = max(best_test_acc, test_acc)
        final = {M.TEST_ACC: test_acc, M.TEST_LOSS: test_loss,
                 M.TRAIN_LOSS: epoch_loss / steps_per_epoch, M.TRAIN_ACC: epoch_correct / n,
                 "best_test_acc": best_test_acc, "epochs": epoch}
        if callback(_epoch_points(step, epoch, final)):
            raise Cancelled(step)
        for group in optimizer.param_groups:
            group["lr"] *= config.lr_decay
        if config.early_stopping_patience and _no_improvement(best, final, epoch, config):
            break
    return final, step


def _train_epoch(network, optimizer: torch.optim.Optimizer, config: RunConfig, train_x: Tensor, train_y: Tensor,
                 order: torch.Generator, epoch: int, step: int, callback: Callback,
                 objective: Callable | None = None) -> tuple[int, float, float]:
    """One pass over the training set in the order `order` draws, logging every `log_every` steps and at the
    epoch's end; returns the last step, the epoch's summed loss (over steps) and its correct predictions."""
    device = train_x.device
    n, batch = len(train_x), config.batch_size
    steps_per_epoch = math.ceil(n / batch)
    permutation = torch.randperm(n, generator=order).to(device)
    # Summed on the device and read once per logged interval: no host synchronisation every step.
    interval_loss = torch.zeros((), device=device)
    interval_correct = torch.zeros((), device=device, dtype=torch.long)
    interval_steps = interval_seen = 0
    epoch_loss = epoch_correct = 0.0
    # Every minibatch gathered into one buffer: a fresh tensor each step would be fresh pages each step
    # (0.13 against 0.05 ms for an MNIST batch of 128 on the development CPU). A step is done with x
    # when it returns.
    x_buffer = train_x.new_empty((batch, *train_x.shape[1:]))
    for i in range(steps_per_epoch):
        batch_index = permutation[i * batch:(i + 1) * batch]
        x = torch.index_select(train_x, 0, batch_index, out=x_buffer[:len(batch_index)])
        y = train_y[batch_index]
        loss, logits = training_step(network, optimizer, x, y, config.weight_decay, objective)
        step += 1
        interval_loss += loss
        interval_correct += (logits.argmax(1) == y).sum()
        interval_steps += 1
        interval_seen += len(y)
        if step % config.log_every == 0 or i == steps_per_epoch - 1:
            mean_loss = interval_loss.item() / interval_steps
            if not math.isfinite(mean_loss):
                raise Diverged(step, mean_loss)
            accuracy = interval_correct.item() / interval_seen
            epoch_loss += mean_loss * interval_steps
            epoch_correct += accuracy * interval_seen
            if callback([MetricPoint(step, epoch, M.TRAIN_LOSS, mean_loss),
                         MetricPoint(step, epoch, M.TRAIN_ACC, accuracy)]):
                raise Cancelled(step)
            interval_loss.zero_()
            interval_correct.zero_()
            interval_steps = interval_seen = 0
        elif callback([]):               # no points to log: only ask whether to stop
            raise Cancelled(step)
    return step, epoch_loss, epoch_correct


def _epoch_points(step: int, epoch: int, final: dict[str, float]) -> list[MetricPoint]:
    """The points an epoch's end logs: test accuracy and loss, and the epoch's training loss and accuracy."""
    return [MetricPoint(step, epoch, key, final[key]) for key in (M.TEST_ACC, M.TEST_LOSS)] + [
        MetricPoint(step, epoch, M.EPOCH_TRAIN_LOSS, final[M.TRAIN_LOSS]),
        MetricPoint(step, epoch, M.EPOCH_TRAIN_ACC, final[M.TRAIN_ACC])]


def _no_improvement(best: dict, final: dict[str, float], epoch: int, config: RunConfig) -> bool:
    """Early stopping: True once `early_stopping_metric` has not improved for `patience` epochs."""
    key = config.early_stopping_metric
    value = final[key]
    better = (lambda a, b: a < b) if key.endswith("loss") else (lambda a, b: a > b)
    if best["value"] is None or better(value, best["value"]):
        best["value"], best["epoch"] = value, epoch
    return epoch - best["epoch"] >= config.early_stopping_patience
