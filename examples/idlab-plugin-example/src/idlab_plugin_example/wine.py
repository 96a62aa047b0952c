"""The wine table (worker side): the CSV shipped in this package, verified and split.

data/wine.csv is scikit-learn's copy of the UCI wine data (sklearn/datasets/data/wine_data.csv):
a header line "178,13,class_0,class_1,class_2", then 178 rows of 13 measurements and the
cultivar (0, 1, 2). Its sha256 is checked before it is read, with the lab's own file check
(`idlab.dataset_files.verify_file`). Rows 4, 9, 14, … (every fifth; the rows are sorted by
cultivar, so each class keeps its share) are the test split, the other 143 the training split.
The features are returned as float32 of shape (N, 13, 1, 1): each feature a channel, so the
lab's `standardize` scales each by its own training mean and standard deviation.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from idlab.dataset_files import DataFile, DatasetCorrupt, verify_file

WINE_CSV = DataFile(name="wine.csv", size=11_157, md5="4a4db56405701ab0f3ed0e194e993c0f",
                    sha256="10e8a802908b34f86e5da8ce962f3c806694bc98450a18f61851af59f324bede")
FEATURES, ROWS, TEST_EVERY = 13, 178, 5


def load(data_dir: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_x, train_y, test_x, test_y) of the wine table; data_dir is not needed (the data ship here)."""
    with resources.as_file(resources.files(__package__) / "data" / WINE_CSV.name) as path:
        problem = verify_file(Path(path), WINE_CSV)
        if problem:
            raise DatasetCorrupt(f"{path}: {problem}: reinstall idlab-plugin-example")
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
    if table.shape != (ROWS, FEATURES + 1):
        raise DatasetCorrupt(f"{path}: expected {ROWS} rows of {FEATURES + 1} values, found {table.shape}")
    x = table[:, :FEATURES].astype(np.float32).reshape(ROWS, FEATURES, 1, 1)
    y = table[:, FEATURES].astype(np.int64)
    test = np.arange(ROWS) % TEST_EVERY == TEST_EVERY - 1
    return x[~test], y[~test], x[test], y[test]
