// Presets of the experiment form: values for run-config fields (the fields themselves come from the
// schema). A preset naming a field the schema does not know is reported and that value skipped.

export const PRESETS = [
  {
    id: "li-mnist-fc",
    label: "Li et al. MNIST FC",
    title: "Li et al. (2018): FC 784-200-200-10 on MNIST, linear subspace, unit-column P, θ_d = 0, Adam 1e-3 (0.9, 0.99), batch 128, L2 1e-4; they report d_int90 ≈ 750",
    request: {
      name: "Li et al. MNIST FC",
      base: {
        dataset: "mnist", model: "fc", fc_widths: [200, 200], method: "subspace", projection: "fastfood",
        augmentation: "linear", p_init: "normal", normalize_p: "unit_columns", theta_d_init: "zeros", use_theta0: true,
        optimizer: "adam", lr: 1e-3, adam_betas: [0.9, 0.99], batch_size: 128, weight_decay: 1e-4, input_scaling: "standardize",
      },
      grid: { d: [100, 200, 300, 500, 750, 1000, 1500] },
      seeds: [0, 1, 2],
      baseline: true,
    },
  },
  {
    id: "li-mnist-lenet",
    label: "Li et al. MNIST LeNet",
    title: "Li et al. (2018): LeNet on MNIST, same optimiser; they report d_int90 ≈ 290",
    request: {
      name: "Li et al. MNIST LeNet",
      base: {
        dataset: "mnist", model: "lenet", method: "subspace", projection: "fastfood", augmentation: "linear",
        p_init: "normal", normalize_p: "unit_columns", theta_d_init: "zeros", use_theta0: true,
        optimizer: "adam", lr: 1e-3, adam_betas: [0.9, 0.99], batch_size: 128, weight_decay: 1e-4, input_scaling: "standardize",
      },
      grid: { d: [100, 200, 290, 400, 600] },
      seeds: [0, 1, 2],
      baseline: true,
    },
  },
  {
    id: "lam-lee",
    label: "Lam & Lee: linear vs power vs RFF",
    title: "Lam & Lee (2020): FC on MNIST with a dense P ~ N(0, 0.05²) (not normalised), θ_d ~ N(0, 0.05²), power orders 2, 3 (λ 0.1, 0.01), one RFF B per tensor, raw 0–255 inputs, Adam 1e-3 with decay 0.999, batch 32, L2 1e-3, early stopping (10 epochs on train accuracy)",
    request: {
      name: "Lam & Lee: linear vs power vs RFF",
      base: {
        dataset: "mnist", model: "fc", fc_widths: [200, 200], method: "subspace", projection: "dense",
        normalize_p: "none", p_init: "normal", p_scale: 0.05, theta_d_init: "normal", theta_d_std: 0.05,
        power_orders: [2, 3], power_coefs: [0.1, 0.01], rff_per_tensor: true, input_scaling: "raw",
        optimizer: "adam", lr: 1e-3, lr_decay: 0.999, batch_size: 32, weight_decay: 1e-3,
        early_stopping_patience: 10, early_stopping_metric: "train_acc", epochs: 100,
      },
      grid: { augmentation: ["linear", "power", "rff"], d: [25, 50, 100, 200, 400] },
      seeds: [0, 1, 2],
      baseline: 1.0,
    },
  },
];
