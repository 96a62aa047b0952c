"""The metric keys a run logs: one list shared by the engine, the database, the API and the UI.

Series (x = global training step):
    train_loss, train_acc   mean over the minibatches of the last logging interval
    lr                      the learning rate, logged when it changes
    epoch_train_loss/acc    mean over the minibatches of one epoch, at its last step
    test_loss, test_acc     on the (full, unless test_size) test set, after every epoch

Final metrics (one value per run) add the sizes and the cost of the run.
"""

import math
from typing import Any

TRAIN_LOSS = "train_loss"
TRAIN_ACC = "train_acc"
LR = "lr"
EPOCH_TRAIN_LOSS = "epoch_train_loss"
EPOCH_TRAIN_ACC = "epoch_train_acc"
TEST_LOSS = "test_loss"
TEST_ACC = "test_acc"

SERIES = (TRAIN_LOSS, TRAIN_ACC, LR, EPOCH_TRAIN_LOSS, EPOCH_TRAIN_ACC, TEST_LOSS, TEST_ACC)

#: ‖θ_D(θ_d = 0) − θ_0‖: how far the subspace's origin lies from θ_0 (uncentred RFF features move it).
OFFSET_AT_ZERO = "offset_at_zero"

#: A succeeded subspace run's model file (config, seed, trained tensors) in bytes, against θ_D's (D float32s),
#: and their ratio: the description length d_int90 bounds.
MODEL_BYTES = "model_bytes"
NETWORK_BYTES = "network_bytes"
COMPRESSION = "compression"

FINAL = (TEST_ACC, TEST_LOSS, TRAIN_ACC, TRAIN_LOSS, "best_test_acc", "D", "k", "d",
         "seconds", "epochs", "steps", "lr", "lr_reductions", OFFSET_AT_ZERO, MODEL_BYTES, NETWORK_BYTES, COMPRESSION)

# What a running run is doing, reported in its progress as "phase" (next to its latest step).
# fetching a missing dataset; progress["download"] = {"done": bytes, "total": bytes or None}
DOWNLOADING = "downloading"
PREPARING = "preparing"    # loading the data, building the network and P
TRAINING = "training"      # the minibatch steps of an epoch
EVALUATING = "evaluating"  # the test set, after every epoch
PHASES = (DOWNLOADING, PREPARING, TRAINING, EVALUATING)
DOWNLOAD = "download"      # the progress key of a download


def json_safe(value: Any) -> Any:
    """`value` with every NaN and ±inf replaced by None, in dicts, lists and tuples too: strict JSON has no
    such numbers, so JSON columns (Postgres) refuse them and browsers cannot parse them. A diverged run
    reports such values in its progress, final metrics and statistics."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value
