"""Layer names of the architectures, importable without torch (the Snakefile reads them)."""

#: Names of the recorded layers of the thesis CNN, in forward order. ``input`` is the image.
CNN_LAYERS: tuple[str, ...] = ("input", "conv1", "pool1", "conv2", "pool2", "fc1", "fc2")

#: Parameters kept when a pre-trained CNN is fine-tuned (the fc layers are re-initialised).
CNN_TRANSFERRED_PREFIXES: tuple[str, ...] = ("conv1.", "conv2.")
