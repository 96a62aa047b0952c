"""What the lab reads without torch: the descriptions the entry points name.

    residual_cnn   a residual CNN for images (CIFAR-10: D = 28,554 weights)
    wine           the UCI wine table: 13 features, 3 cultivars, 143 training and 35 test rows

Nothing here imports torch or numpy: the lab's API validates runs with these descriptions.
"""

from __future__ import annotations

from idlab.plugins import DatasetPlugin, ModelPlugin

#: Channels of the two stages; the second stage works at half the resolution.
WIDTHS = (16, 32)
KERNEL = 3
#: The smallest image the network takes: the stride-2 convolution needs something to halve.
MIN_SIDE = 4


def half(side: int) -> int:
    """The side after a 3×3 convolution with stride 2 and padding 1."""
    return (side - 1) // 2 + 1


def residual_cnn_shapes(input_shape: tuple[int, int, int], classes: int) -> list[tuple[str, tuple[int, ...]]]:
    """The parameters of `residual_cnn.ResidualCNN`, in its named_parameters() order."""
    channels, height, width = input_shape
    if min(height, width) < MIN_SIDE:
        raise ValueError(f"residual_cnn needs images of at least {MIN_SIDE}×{MIN_SIDE} pixels, got inputs of "
                         f"shape {channels}×{height}×{width}: use model 'fc' for tabular data")
    c1, c2 = WIDTHS
    k = KERNEL

    def conv(name: str, n_in: int, n_out: int) -> list[tuple[str, tuple[int, ...]]]:
        return [(f"{name}.weight", (n_out, n_in, k, k)), (f"{name}.bias", (n_out,))]

    return [*conv("stem", channels, c1), *conv("block1.conv1", c1, c1), *conv("block1.conv2", c1, c1),
            *conv("down", c1, c2), *conv("block2.conv1", c2, c2), *conv("block2.conv2", c2, c2),
            ("head.weight", (classes, c2)), ("head.bias", (classes,))]


def residual_cnn_activations(input_shape: tuple[int, int, int], classes: int) -> int:
    """Values one example leaves in memory: the input, each convolution's output and ReLU, each sum, the head."""
    channels, height, width = input_shape
    c1, c2 = WIDTHS
    full, low = height * width, half(height) * half(width)
    # stem (conv, relu); block (conv, relu, conv, sum, relu) per stage; down (conv, relu); pool; logits
    return channels * full + 7 * c1 * full + 7 * c2 * low + c2 + classes


residual_cnn = ModelPlugin(
    description=("Residual CNN: conv 16@3×3, a residual block of two 3×3 convolutions, a stride-2 conv to 32 "
                 "channels, another residual block, global average pooling, a linear head (no normalisation)."),
    parameter_shapes=residual_cnn_shapes,
    activations_per_example=residual_cnn_activations,
    build="idlab_plugin_example.residual_cnn:ResidualCNN",
)

wine = DatasetPlugin(
    description=("UCI wine: 13 chemical measurements of 178 Italian wines from 3 cultivars (CC BY 4.0); "
                 "every fifth row is the test split."),
    input_shape=(13, 1, 1),
    classes=3,
    train_size=143,
    test_size=35,
    pixels=False,
    load="idlab_plugin_example.wine:load",
)
