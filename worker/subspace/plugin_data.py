"""A dataset a plugin registers (idlab.plugins.DatasetPlugin): its loader's arrays, held to its description.

The loader, named by the plugin's `load` ("module:function"), returns four numpy arrays

    train_x (N_train, C, H, W), train_y (N_train,), test_x (N_test, C, H, W), test_y (N_test,)

and they are checked against what the API validated runs with: the input shape (C, H, W), the split
sizes, labels in 0 … classes − 1, and the value type — uint8 for pixels (0 … 255), float32 for
real-valued features (finite). A mismatch is a `DatasetCorrupt` naming the plugin and what differs,
never a run trained on data of another shape than its D and memory were checked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from idlab import plugins
from idlab.dataset_files import DatasetCorrupt

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def read_plugin_dataset(name: str, root: Path | None) -> Arrays:
    """The four arrays of the registered dataset `name`, loaded by its plugin and checked."""
    plugin = plugins.dataset_plugin(name)
    if plugin is None:
        raise ValueError(f"unknown dataset {name!r}: neither built in nor registered by a plugin")
    arrays = plugins.load_target(plugin.load)(root)
    if not (isinstance(arrays, (tuple, list)) and len(arrays) == 4):
        raise DatasetCorrupt(f"dataset plugin {name!r}: {plugin.load} must return (train_x, train_y, test_x, "
                             f"test_y), got a {type(arrays).__name__}")
    train_x, train_y, test_x, test_y = (np.asarray(a) for a in arrays)
    sizes = {"train": plugin.train_size, "test": plugin.test_size}
    checked = []
    for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        checked += [_inputs(name, split, x, plugin, sizes[split]), _labels(name, split, y, plugin.classes, len(x))]
    for array in checked:
        array.setflags(write=False)
    return tuple(checked)  # type: ignore[return-value]


def _inputs(name: str, split: str, x: np.ndarray, plugin: plugins.DatasetPlugin, size: int) -> np.ndarray:
    expected = (size, *plugin.input_shape)
    if x.shape != expected:
        raise DatasetCorrupt(f"dataset plugin {name!r}: {split}_x has shape {x.shape}, its description "
                             f"says {expected} (split size, then input_shape)")
    if plugin.pixels:
        if x.dtype != np.uint8:
            raise DatasetCorrupt(f"dataset plugin {name!r}: {split}_x is {x.dtype}; pixel data is uint8 "
                                 "(or describe the dataset with pixels=False)")
        return x
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DatasetCorrupt(f"dataset plugin {name!r}: {split}_x holds NaN or infinite values")
    return x


def _labels(name: str, split: str, y: np.ndarray, classes: int, size: int) -> np.ndarray:
    if y.shape != (size,) or not np.issubdtype(y.dtype, np.integer):
        raise DatasetCorrupt(f"dataset plugin {name!r}: {split}_y must be {size} integer labels, "
                             f"got {y.dtype} of shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= classes):
        raise DatasetCorrupt(f"dataset plugin {name!r}: {split}_y holds labels outside 0…{classes - 1}")
    return y.astype(np.int64)
