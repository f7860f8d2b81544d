"""Layer names of the architectures, importable without torch (the Snakefile reads them)."""

#: Names of the recorded layers of the thesis CNN, in forward order. ``input`` is the image.
CNN_LAYERS: tuple[str, ...] = ("input", "conv1", "pool1", "conv2", "pool2", "fc1", "fc2")

#: Fine-tuning policies (:mod:`transferability.models.policies` defines them).
POLICIES: tuple[str, ...] = ("thesis_cnn", "last_conv", "linear_probe", "full")

#: Architectures the test suite builds one by one (any torchvision classification name works;
#: this list lets a configuration be checked without importing torch).
TESTED_ARCHITECTURES: tuple[str, ...] = (
    "thesis_cnn", "resnet18", "resnet50", "densenet121", "mobilenet_v2", "mobilenet_v3_small",
    "efficientnet_b0", "convnext_tiny", "regnet_y_400mf", "vit_b_16", "vgg16", "vgg16_bn",
    "vgg19", "vgg_tiny", "vgg16_features",
)  # fmt: skip
