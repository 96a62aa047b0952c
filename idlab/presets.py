"""Paper presets: experiment requests with the published settings of the two papers the lab reproduces.

One source for the API (GET /api/config/presets), the UI's preset buttons and the CLI
(`idlab presets`, `idlab train --preset <id>`). Each preset is an experiment request —
{"name", "base", "grid", "seeds", "baseline"}, the body of POST /api/experiments — whose
base holds every setting the paper fixes, named by RunConfig fields, plus what the paper
reported and, in `description`, every point where the lab's config cannot say exactly
what the paper did.

    Li, Farkhoor, Liu & Yosinski (ICLR 2018), "Measuring the intrinsic dimension of objective
    landscapes": linear subspaces, P with unit-norm columns, θ_d = 0; d_int90 against a
    global baseline of 1.0 on MNIST.
    Lam & Lee (2020), "Searching for a more minimal intrinsic subspace": linear vs power vs
    random-Fourier-feature augmentations with an unnormalised dense P ~ N(0, 0.05²), and two
    follow-ups: P trained along with θ_d, and P re-drawn from the trained distributions.

The last preset is a template: its P is sampled from the trained P of an earlier run, so it
needs that run. `fill(preset, run_id, source_config)` names the run in `p_init`
(from_run:<id>) and copies from its config the fields that define the column blocks of P
(the augmentation and its options) and the network, so every block has statistics to be
drawn from — what the run page's follow-up button does for a single run.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from idlab.config import FROM_RUN_PATTERN, RunConfig, validation_context

#: Placeholder of a template's source run inside its request (p_init "from_run:{run_id}").
RUN_ID = "{run_id}"

#: Fields a template copies from its source run: the network and the feature blocks of φ, whose
#: names key the per-block statistics of the source's trained P.
SOURCE_FIELDS = ("dataset", "model", "fc_widths", "augmentation", "power_orders", "power_coefs",
                 "rff_features", "rff_scale", "rff_amplitude", "rff_per_tensor", "rff_centered")


class PresetError(ValueError):
    """A preset cannot be used as asked: `field` names what to fix (a run-config field or `run_id`)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Preset:
    id: str
    label: str                        # the button's text
    paper: str                        # the citation
    title: str                        # one line: the settings
    description: str                  # every setting, and where the lab differs from the paper
    published: dict[str, Any]         # what the paper reports, for comparison with a measurement
    request: dict[str, Any]           # the experiment request (POST /api/experiments)
    parameters: dict[str, str] = field(default_factory=dict)   # template parameters → what to give

    @property
    def is_template(self) -> bool:
        return bool(self.parameters)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "paper": self.paper, "title": self.title,
                "description": self.description, "published": copy.deepcopy(self.published),
                "parameters": [{"name": name, "description": text} for name, text in self.parameters.items()],
                "request": copy.deepcopy(self.request), "run_count": run_count(self.request)}


def run_count(request: dict[str, Any]) -> int:
    """Runs the request queues: grid points × seeds, plus one direct run per seed for an individual baseline.

    (An individual baseline also multiplies by the grid fields direct training depends on; no preset sweeps one.)
    """
    seeds = len(request.get("seeds") or [0])
    members = math.prod(len(values) for values in request.get("grid", {}).values()) * seeds
    return members + (seeds if request.get("baseline") is True else 0)


# ---- Li et al. 2018 ---------------------------------------------------------------------------

LI_CITATION = "Li, Farkhoor, Liu & Yosinski, Measuring the Intrinsic Dimension of Objective Landscapes, ICLR 2018"

#: Li et al.: P with unit-norm columns, θ_d = 0 (so θ_D starts at θ_0), Adam 1e-3 with β = (0.9, 0.99),
#: batch 128, L2 1e-4 on θ_D; 100 epochs as in the authors' released MNIST sweep scripts.
LI_BASE: dict[str, Any] = {
    "dataset": "mnist", "method": "subspace", "projection": "fastfood", "augmentation": "linear",
    "p_init": "normal", "p_scale": 1.0, "normalize_p": "unit_columns", "train_p": False,
    "theta_d_init": "zeros", "use_theta0": True,
    "optimizer": "adam", "lr": 1e-3, "adam_betas": [0.9, 0.99], "lr_decay": 1.0, "batch_size": 128,
    "weight_decay": 1e-4, "epochs": 100, "early_stopping_patience": None,
    # The reference code's own settings (Keras 2.1.5): he_normal kernels truncated at 2σ without variance
    # correction, zero biases, L2 on the kernels only, pixels in [0, 1]; a sparse P per weight tensor.
    "theta0_init": "he_truncated", "bias_init": "zeros", "weight_decay_scope": "kernels",
    "input_scaling": "unit", "sparse_scope": "per_tensor",
}

LI_DIFFERENCES = (
    "As in the authors' code: Keras 2.1.5's he_normal kernels (a normal truncated at 2σ without variance "
    "correction, std ≈ 0.88·√(2/fan_in)), zero biases, L2 on the kernels only, pixels in [0, 1], and a sparse "
    "P drawn per weight tensor with density 1/√D_t. Where the lab differs: P is computed by fastfood as "
    "stacked Walsh–Hadamard blocks of size ~k with unit-norm columns (their fastfood transform spans the "
    "whole padded D); θ_0 and P come from the lab's generator, not TensorFlow's; the authors read MNIST from "
    "prepared HDF5 files whose scaling their code does not record ([0, 1] is taken here). d_int90 is read "
    "against the global baseline 1.0 (threshold 0.9), as the paper's MNIST numbers are."
)

#: Li et al.'s MNIST FC curve: test accuracy against d, as plotted in their paper (the arrays of their
#: plotting notebook, copied into Lam & Lee's repository, experiments/plot_li_vs_local.py, under
#: "Li et. al (2018) 784-200-200"; direct training 0.9799 there).
LI_FC_CURVE = {100: 0.6124, 200: 0.7551, 300: 0.8189, 500: 0.8693, 750: 0.9001, 1000: 0.9163, 1500: 0.9302}

LI_FC = Preset(
    id="li-mnist-fc",
    label="Li et al. MNIST FC",
    paper=LI_CITATION,
    title=("Li et al. (2018): FC 784-200-200-10 on MNIST, linear subspace, unit-column P, θ_d = 0, "
           "Adam 1e-3 (0.9, 0.99), batch 128, L2 1e-4, 100 epochs, global baseline 1.0; they report d_int90 ≈ 750"),
    description=("MNIST, fully connected 784-200-200-10 (D = 199,210), θ_D = θ_0 + P·θ_d with a random P whose "
                 "columns have unit norm and θ_d = 0 at the start; Adam, lr 1e-3, β = (0.9, 0.99), minibatch 128, "
                 "L2 penalty 1e-4·‖θ_D‖², 100 epochs; d swept around the reported d_int90 ≈ 750, three seeds. "
                 + LI_DIFFERENCES),
    published={"d_int90": 750, "baseline": 1.0, "direct_accuracy": 0.9799,
               "curve": {"d": list(LI_FC_CURVE), "test_acc": list(LI_FC_CURVE.values())},
               "note": "d_int90 of MNIST FC 784-200-200-10 against the global baseline; the curve is test "
                       "accuracy against d from the arrays of the authors' plotting notebook"},
    request={
        "name": "Li et al. MNIST FC",
        "base": {**LI_BASE, "model": "fc", "fc_widths": [200, 200]},
        "grid": {"d": [100, 200, 300, 500, 750, 1000, 1500]},
        "seeds": [0, 1, 2],
        "baseline": 1.0,
    },
)

LI_LENET = Preset(
    id="li-mnist-lenet",
    label="Li et al. MNIST LeNet",
    paper=LI_CITATION,
    title=("Li et al. (2018): LeNet on MNIST, the same subspace and optimiser (unit-column P, θ_d = 0, "
           "Adam 1e-3 (0.9, 0.99), batch 128, L2 1e-4, 100 epochs), global baseline 1.0; they report d_int90 ≈ 290"),
    description=("MNIST, LeNet 6c5-pool-16c5-pool-120-84-10 (D = 44,426), the same subspace and training as the "
                 "FC preset (Li et al. used fastfood for LeNet); d swept around the reported d_int90 ≈ 290, "
                 "three seeds. " + LI_DIFFERENCES),
    published={"d_int90": 290, "baseline": 1.0, "note": "d_int90 of MNIST LeNet against the global baseline"},
    request={
        "name": "Li et al. MNIST LeNet",
        "base": {**LI_BASE, "model": "lenet"},
        "grid": {"d": [100, 200, 250, 290, 350, 400, 600]},
        "seeds": [0, 1, 2],
        "baseline": 1.0,
    },
)


# ---- Lam & Lee 2020 ---------------------------------------------------------------------------

LAM_LEE_CITATION = "Lam & Lee, Searching for a more minimal intrinsic subspace, 2020"

#: Lam & Lee's MNIST FC: a dense P ~ N(0, 0.05²) left unnormalised, θ_d ~ N(0, 0.05²), power λ = 0.1, 0.01
#: for θ², θ³, RFF with m = d//2 and one B ~ N(0, 1) per weight tensor, raw 0–255 pixels, Adam 1e-3
#: decayed ×0.999 per epoch, batch 32, L2 1e-3, early stopping on training accuracy (patience 10), ≤ 100 epochs.
LAM_LEE_BASE: dict[str, Any] = {
    "dataset": "mnist", "model": "fc", "fc_widths": [200, 200], "method": "subspace",
    "projection": "dense", "p_init": "normal", "p_scale": 0.05, "normalize_p": "none", "train_p": False,
    "theta_d_init": "normal", "theta_d_std": 0.05, "use_theta0": True,
    "power_orders": [2, 3], "power_coefs": [0.1, 0.01],
    "rff_features": None, "rff_scale": 1.0, "rff_amplitude": 1.0, "rff_per_tensor": True,
    "optimizer": "adam", "lr": 1e-3, "adam_betas": [0.9, 0.999], "lr_decay": 0.999, "batch_size": 32,
    "weight_decay": 1e-3, "epochs": 100, "early_stopping_patience": 10, "early_stopping_metric": "train_acc",
    "input_scaling": "raw", "theta0_init": "he_normal", "bias_init": "he_normal", "weight_decay_scope": "all",
    "rff_centered": False,
}

LAM_LEE_SETTINGS = (
    "MNIST, FC 784-200-200-10, θ_D = θ_0 + P·φ(θ_d) with a dense P ~ N(0, 0.05²) (not normalised) and "
    "θ_d ~ N(0, 0.05²); power φ = [θ, 0.1·θ², 0.01·θ³]; RFF φ = [θ, cos(Bθ), sin(Bθ)] with m = d//2 "
    "features and one B ~ N(0, 1) per weight tensor; raw 0–255 pixels; Adam, lr 1e-3 multiplied by 0.999 "
    "every epoch, minibatch 32, L2 penalty 1e-3·‖θ_D‖², at most 100 epochs with early stopping once the "
    "training accuracy has not improved for 10 epochs. "
)

LAM_LEE_DIFFERENCES = (
    "As in their code: He-normal biases as well as kernels, and the uncentred RFF features a·cos(Bθ) (so "
    "θ_D already leaves θ_0 at θ_d = 0; the run records that offset). Where the lab differs: their Keras code "
    "uses Adam's library defaults, β = (0.9, 0.999) as here but ε = 1e-7 where PyTorch's is 1e-8 (the config "
    "has no ε field); their Keras scheduler applies the first ×0.999 before epoch 1, the lab after it (every "
    "epoch's lr is 0.1 % higher here); TensorFlow 2's he_normal is a normal truncated at 2σ and rescaled to "
    "the He std, the lab's an untruncated normal of the same std; d_int90 is read against the global "
    "baseline 1.0. "
)

#: d from 100 to 800 (Lam & Lee swept 100 … 1000): with power terms k = 3d, and a dense P at d = 900
#: (199,210 × 2,700 floats, 2,052 MiB) no longer fits the default budget of 2,048 MiB.
LAM_LEE_D = [100, 200, 300, 400, 500, 600, 700, 800]
BUDGET_NOTE = ("d stops at 800: Lam & Lee went to 1000, but with power terms (k = 3d) a dense P at d = 900 needs "
               "2,052 MiB, over the default budget IDLAB_DENSE_P_BUDGET_MB = 2048; raise it to add 900 and 1000.")

LAM_LEE = Preset(
    id="lam-lee",
    label="Lam & Lee: linear vs power vs RFF",
    paper=LAM_LEE_CITATION,
    title=("Lam & Lee (2020): FC on MNIST with a dense P ~ N(0, 0.05²) (not normalised), θ_d ~ N(0, 0.05²), "
           "power orders 2, 3 (λ 0.1, 0.01), RFF m = d//2 with one B per tensor, raw 0–255 inputs, Adam 1e-3 "
           "decayed ×0.999 per epoch, batch 32, L2 1e-3, early stopping (10 epochs on train accuracy), ≤ 100 epochs"),
    description=LAM_LEE_SETTINGS + "Linear, power and RFF augmentations at each d, three seeds. "
    + LAM_LEE_DIFFERENCES + BUDGET_NOTE,
    published={"finding": "RFF reaches a given accuracy at a smaller d than linear; power terms do not help",
               "note": "their report shows the accuracies as plots only; the lab records no number read from them"},
    request={
        "name": "Lam & Lee: linear vs power vs RFF",
        "base": {**LAM_LEE_BASE, "augmentation": "linear"},
        "grid": {"augmentation": ["linear", "power", "rff"], "d": LAM_LEE_D},
        "seeds": [0, 1, 2],
        "baseline": 1.0,
    },
)

LAM_LEE_TRAINED_P = Preset(
    id="lam-lee-trained-p",
    label="Lam & Lee: trained P",
    paper=LAM_LEE_CITATION,
    title=("Lam & Lee (2020) follow-up: the same runs with P trained along with θ_d (dense P) and unit power "
           "coefficients, to compare the distributions of P before and after training"),
    description=(LAM_LEE_SETTINGS + "P is trained too (train_p; only a dense P can be), with the power "
                 "coefficients λ_2 = λ_3 = 1 of their trainable-P runs (a trained P learns the scale of each "
                 "block itself), so each run records the "
                 "histograms and per-block statistics of P before and after training — the source of the "
                 "'P from trained distributions' preset. A diagnostic, not a compression: D·k more weights are "
                 "trained. One seed. " + LAM_LEE_DIFFERENCES
                 + "d stops at 200: a trained dense P costs four times its size (value, gradient, two Adam "
                 "moments), and with power terms (k = 3d) d = 300 would need 2,736 MiB, over the default budget "
                 "IDLAB_DENSE_P_BUDGET_MB = 2048."),
    published={"note": "a diagnostic of the trained distributions of P: the lab records no published number for it"},
    request={
        "name": "Lam & Lee: trained P",
        "base": {**LAM_LEE_BASE, "augmentation": "linear", "train_p": True, "power_coefs": [1.0, 1.0]},
        "grid": {"augmentation": ["linear", "power", "rff"], "d": [50, 100, 200]},
        "seeds": [0],
        "baseline": 1.0,
    },
)

LAM_LEE_P_FROM_TRAINED = Preset(
    id="lam-lee-p-from-trained",
    label="Lam & Lee: P from trained distributions",
    paper=LAM_LEE_CITATION,
    title=("Lam & Lee (2020) follow-up: P drawn, per column block, from the statistics of an earlier run's "
           "trained P (p_init from_run:<id>) and kept fixed; needs that run"),
    description=(LAM_LEE_SETTINGS + "Each column block of P (linear, power_2, cos, …) is drawn from N(0, σ_b²), "
                 "σ_b the standard deviation of that block of the source run's trained P, as Lam & Lee re-drew it "
                 "(from_run_mean 'trained' keeps the trained means too), and not normalised so those statistics "
                 "are kept; P is fixed again (train_p off). A template: give the id of a succeeded run with trained "
                 "P (e.g. of the 'trained P' preset); the augmentation, its options and the network are taken from "
                 "that run, so every block has statistics. " + LAM_LEE_DIFFERENCES + BUDGET_NOTE),
    published={"note": "the lab records no published number for this follow-up"},
    request={
        "name": "Lam & Lee: P from trained distributions",
        "base": {**LAM_LEE_BASE, "augmentation": "power", "p_init": f"from_run:{RUN_ID}", "from_run_mean": "zero"},
        "grid": {"d": LAM_LEE_D},
        "seeds": [0, 1, 2],
        "baseline": 1.0,
    },
    parameters={"run_id": "the id of a succeeded run with trained P (train_p), "
                          "whose per-block statistics P is drawn from"},
)

PRESETS: tuple[Preset, ...] = (LI_FC, LI_LENET, LAM_LEE, LAM_LEE_TRAINED_P, LAM_LEE_P_FROM_TRAINED)


def get(preset_id: str) -> Preset:
    """The preset of that id; PresetError naming the ids there are otherwise."""
    for preset in PRESETS:
        if preset.id == preset_id:
            return preset
    raise PresetError("preset", f"unknown preset {preset_id!r}: use one of {', '.join(p.id for p in PRESETS)}")


def fill(preset: Preset, run_id: str | int | None = None,
         source_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The preset's experiment request, ready to submit; a template gets its source run filled in.

    For a template, `run_id` names the run whose trained P the new P is sampled from and
    `source_config` is that run's config: it must have trained P, and its network and
    augmentation fields (SOURCE_FIELDS) are copied so the column blocks match.
    """
    request = copy.deepcopy(preset.request)
    if not preset.is_template:
        if run_id is not None:
            raise PresetError("run_id", f"preset {preset.id!r} is not a template: it takes no run id")
        return request
    if run_id is None or str(run_id) == "":
        raise PresetError("run_id", f"preset {preset.id!r} samples P from an earlier run's trained P: "
                                    "give the id of a succeeded run with train_p")
    p_init = request["base"]["p_init"].replace(RUN_ID, str(run_id))
    if not FROM_RUN_PATTERN.match(p_init):
        raise PresetError("run_id", f"{run_id!r} is not a run id (letters, digits, '-' or '_', at most 64)")
    if source_config is None:
        raise PresetError("run_id", f"the config of run {run_id} is needed to match its column blocks")
    try:
        source = RunConfig.model_validate(source_config, context=validation_context(dense_budget_mb=math.inf))
    except ValidationError as invalid:
        raise PresetError("run_id", f"the config of run {run_id} is not a valid run config: {invalid}") from None
    if source.method != "subspace" or not source.train_p:
        raise PresetError("run_id", f"run {run_id} did not train P (train_p is off), so it has no trained "
                                    "distribution to sample from: pick a run of the 'trained P' preset")
    request["base"].update({name: _plain(getattr(source, name)) for name in SOURCE_FIELDS}, p_init=p_init)
    request["name"] = f"{request['name']} of run {run_id}"
    return request


def single_run(request: dict[str, Any], chosen: dict[str, Any],
               optional: frozenset[str] = frozenset()) -> dict[str, Any]:
    """One run of an experiment request: its base, overridden by `chosen`, which must pick every swept field.

    The seed is the request's first unless chosen. Fields in `optional` (those a direct-training
    run ignores) may stay unpicked. Raises PresetError for the first swept field left open.
    """
    raw = {**request["base"], **chosen}
    for name, values in request.get("grid", {}).items():
        if name in chosen:
            continue
        if name in optional:
            raw.pop(name, None)
            continue
        shown = ", ".join(str(v) for v in values)
        raise PresetError(name, f"the preset sweeps {name} over [{shown}]: pick one value with "
                                f"--{name} (e.g. --{name} {values[len(values) // 2]})")
    if "seed" not in chosen and request.get("seeds"):
        raw["seed"] = request["seeds"][0]
    return raw


def _plain(value: Any) -> Any:
    """A config value as JSON holds it (tuples become lists)."""
    return list(value) if isinstance(value, tuple) else value
