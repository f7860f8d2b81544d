"""One model interface for every track (transferability.models): build, save and load,
layers, fine-tuning policies, weight files and input transforms, for every tested architecture.

Models use random weights and small inputs (32 x 32 RGB, 28 x 28 grey for the thesis CNN) with
5 source classes and 3 target classes; nothing is downloaded."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from transferability import models as families
from transferability.artifacts import save_checkpoint
from transferability.models import ModelError, ModelSpec

ARCHS = (*families.TORCHVISION_TESTED, *families.TIMM_TESTED, "thesis_cnn", "vgg_tiny")
CLASSES = 5  # source head
TARGET = 3  # fine-tuning head
SOURCE_SEED = 7  # not 0: model_from_checkpoint and load_model build with seed 0 first
HEAD_SEED = 1
BATCH = 2
LR = 0.1  # the one SGD step of the policy test

# --- the documented layers: outputs at 32 x 32 (thesis CNN: 28 x 28), batch dimension left out ----
#: arch -> the default layers, in order, with their output shapes
DEFAULT_LAYERS = {
    "resnet18": {
        "layer1": (64, 8, 8), "layer2": (128, 4, 4), "layer3": (256, 2, 2),
        "layer4": (512, 1, 1), "penultimate": (512,),
    },
    "resnet50": {
        "layer1": (256, 8, 8), "layer2": (512, 4, 4), "layer3": (1024, 2, 2),
        "layer4": (2048, 1, 1), "penultimate": (2048,),
    },
    "densenet121": {
        "features.denseblock1": (256, 8, 8), "features.denseblock2": (512, 4, 4),
        "features.denseblock3": (1024, 2, 2), "features.denseblock4": (1024, 1, 1),
        "penultimate": (1024,),
    },
    "mobilenet_v2": {  # features trunks: the last block at each spatial resolution
        "features.1": (16, 16, 16), "features.3": (24, 8, 8), "features.6": (32, 4, 4),
        "features.13": (96, 2, 2), "features.18": (1280, 1, 1), "penultimate": (1280,),
    },
    "mobilenet_v3_small": {  # the head receives the classifier's hidden layer
        "features.0": (16, 16, 16), "features.1": (16, 8, 8), "features.3": (24, 4, 4),
        "features.8": (48, 2, 2), "features.12": (576, 1, 1), "penultimate": (1024,),
    },
    "efficientnet_b0": {
        "features.1": (16, 16, 16), "features.2": (24, 8, 8), "features.3": (40, 4, 4),
        "features.5": (112, 2, 2), "features.8": (1280, 1, 1), "penultimate": (1280,),
    },
    "convnext_tiny": {
        "features.1": (96, 8, 8), "features.3": (192, 4, 4), "features.5": (384, 2, 2),
        "features.7": (768, 1, 1), "penultimate": (768,),
    },
    "regnet_y_400mf": {
        "trunk_output.block1": (48, 8, 8), "trunk_output.block2": (104, 4, 4),
        "trunk_output.block3": (208, 2, 2), "trunk_output.block4": (440, 1, 1),
        "penultimate": (440,),
    },
    "vit_b_16": {  # encoder layers at each quarter: class token + 2 x 2 patches of 16 x 16
        "encoder.layers.encoder_layer_2": (5, 768), "encoder.layers.encoder_layer_5": (5, 768),
        "encoder.layers.encoder_layer_8": (5, 768), "encoder.layers.encoder_layer_11": (5, 768),
        "penultimate": (768,),
    },
    "vgg16": {  # the standard variant: 7 x 7 average pooling replicates pool5 into fc6
        "pool1": (64, 16, 16), "pool2": (128, 8, 8), "pool3": (256, 4, 4), "pool4": (512, 2, 2),
        "pool5": (512, 1, 1), "fc6": (4096,), "fc7": (4096,),
    },
    "vgg16_bn": {
        "pool1": (64, 16, 16), "pool2": (128, 8, 8), "pool3": (256, 4, 4), "pool4": (512, 2, 2),
        "pool5": (512, 1, 1), "fc6": (4096,), "fc7": (4096,),
    },
    "vgg19": {
        "pool1": (64, 16, 16), "pool2": (128, 8, 8), "pool3": (256, 4, 4), "pool4": (512, 2, 2),
        "pool5": (512, 1, 1), "fc6": (4096,), "fc7": (4096,),
    },
    "vgg_tiny": {
        "pool1": (8, 16, 16), "pool2": (16, 8, 8), "pool3": (16, 4, 4), "pool4": (32, 2, 2),
        "pool5": (32, 1, 1), "fc6": (64,), "fc7": (64,),
    },
    "thesis_cnn": {
        "input": (1, 28, 28), "conv1": (32, 26, 26), "pool1": (32, 13, 13),
        "conv2": (64, 11, 11), "pool2": (64, 5, 5), "fc1": (128,), "fc2": (CLASSES,),
    },
    # timm: feature_info's stages, the last one at each resolution (forward_intermediates: NCHW
    # maps; a ViT's patch tokens as a 2 x 2 map without the class token), and penultimate
    "timm/resnet18.a1_in1k": {
        "act1": (64, 16, 16), "layer1": (64, 8, 8), "layer2": (128, 4, 4),
        "layer3": (256, 2, 2), "layer4": (512, 1, 1), "penultimate": (512,),
    },
    "timm/convnext_atto.d2_in1k": {
        "stages.0": (40, 8, 8), "stages.1": (80, 4, 4), "stages.2": (160, 2, 2),
        "stages.3": (320, 1, 1), "penultimate": (320,),
    },
    "timm/efficientnet_b0.ra_in1k": {
        "blocks.0": (16, 16, 16), "blocks.1": (24, 8, 8), "blocks.2": (40, 4, 4),
        "blocks.4": (112, 2, 2), "blocks.6": (320, 1, 1), "penultimate": (1280,),
    },
    "timm/deit_tiny_patch16_224.fb_in1k": {  # all blocks at one resolution: each quarter
        "blocks.2": (192, 2, 2), "blocks.5": (192, 2, 2), "blocks.8": (192, 2, 2),
        "blocks.11": (192, 2, 2), "penultimate": (192,),
    },
    "timm/swin_tiny_patch4_window7_224.ms_in1k": {
        "layers.0": (96, 8, 8), "layers.1": (192, 4, 4), "layers.2": (384, 2, 2),
        "layers.3": (768, 1, 1), "penultimate": (768,),
    },
    "timm/regnety_002.pycls_in1k": {
        "stem": (32, 16, 16), "s1": (24, 8, 8), "s2": (56, 4, 4), "s3": (152, 2, 2),
        "s4": (368, 1, 1), "penultimate": (368,),
    },
    "timm/mobilenetv3_small_100.lamb_in1k": {  # the head receives conv_head's 1024 features
        "bn1": (16, 16, 16), "blocks.0": (16, 8, 8), "blocks.1": (24, 4, 4),
        "blocks.3": (48, 2, 2), "blocks.5": (576, 1, 1), "penultimate": (1024,),
    },
    "timm/mobilevit_xxs.cvnets_in1k": {
        "stages.0": (16, 16, 16), "stages.1": (24, 8, 8), "stages.2": (48, 4, 4),
        "stages.3": (64, 2, 2), "final_conv": (320, 1, 1), "penultimate": (320,),
    },
    "timm/coatnet_0_rw_224.sw_in1k": {
        "stem": (64, 16, 16), "stages.0": (96, 8, 8), "stages.1": (192, 4, 4),
        "stages.2": (384, 2, 2), "stages.3": (768, 1, 1), "penultimate": (768,),
    },
}  # fmt: skip
#: arch -> (what the head receives, a raw node or module name, the head's output)
NAMED_LAYERS = {
    "resnet18": {"penultimate": (512,), "layer3.1.conv2": (256, 2, 2), "logits": (CLASSES,)},
    "resnet50": {
        "penultimate": (2048,), "layer2.0.downsample.0": (512, 4, 4), "logits": (CLASSES,),
    },
    "densenet121": {
        "penultimate": (1024,), "features.transition2.conv": (256, 4, 4), "logits": (CLASSES,),
    },
    "mobilenet_v2": {"penultimate": (1280,), "features.17": (320, 1, 1), "logits": (CLASSES,)},
    "mobilenet_v3_small": {
        "penultimate": (1024,), "classifier.0": (1024,), "logits": (CLASSES,),
    },
    "efficientnet_b0": {
        "penultimate": (1280,), "features.0": (32, 16, 16), "logits": (CLASSES,),
    },
    "convnext_tiny": {"penultimate": (768,), "features.0": (96, 8, 8), "logits": (CLASSES,)},
    "regnet_y_400mf": {"penultimate": (440,), "stem": (32, 16, 16), "logits": (CLASSES,)},
    "vit_b_16": {"penultimate": (768,), "encoder.ln": (5, 768), "logits": (CLASSES,)},
    "vgg16": {"penultimate": (4096,), "classifier.0": (4096,), "logits": (CLASSES,)},
    "vgg16_bn": {
        "penultimate": (4096,), "features.1": (64, 32, 32), "fc8": (CLASSES,),
        "logits": (CLASSES,),
    },
    "vgg19": {"penultimate": (4096,), "features.34": (512, 2, 2), "logits": (CLASSES,)},
    "vgg_tiny": {"penultimate": (64,), "features.0": (8, 32, 32), "logits": (CLASSES,)},
    "thesis_cnn": {"fc1": (128,), "conv2": (64, 11, 11), "fc2": (CLASSES,)},
    **{arch: {"penultimate": DEFAULT_LAYERS[arch]["penultimate"], "logits": (CLASSES,)}
       for arch in families.TIMM_TESTED},
}  # fmt: skip
NAMED_LAYERS["timm/deit_tiny_patch16_224.fb_in1k"]["blocks.0"] = (192, 2, 2)
#: arch -> the head module (the last nn.Linear; what linear_probe trains)
HEAD = {
    "resnet18": "fc", "resnet50": "fc", "densenet121": "classifier",
    "mobilenet_v2": "classifier.1", "mobilenet_v3_small": "classifier.3",
    "efficientnet_b0": "classifier.1", "convnext_tiny": "classifier.2", "regnet_y_400mf": "fc",
    "vit_b_16": "heads.head", "vgg16": "classifier.6", "vgg16_bn": "classifier.6",
    "vgg19": "classifier.6", "vgg_tiny": "classifier.6", "thesis_cnn": "fc2",
    "timm/resnet18.a1_in1k": "fc", "timm/convnext_atto.d2_in1k": "head.fc",
    "timm/efficientnet_b0.ra_in1k": "classifier", "timm/deit_tiny_patch16_224.fb_in1k": "head",
    "timm/swin_tiny_patch4_window7_224.ms_in1k": "head.fc",
    "timm/regnety_002.pycls_in1k": "head.fc", "timm/mobilenetv3_small_100.lamb_in1k": "classifier",
    "timm/mobilevit_xxs.cvnets_in1k": "head.fc", "timm/coatnet_0_rw_224.sw_in1k": "head.fc",
}  # fmt: skip
#: arch -> the last conv layer and the BatchNorm directly after it (what last_conv trains besides
#: every nn.Linear); None: the policy refuses (fully-connected layers inside the trunk)
LAST_CONV = {
    "resnet18": ("layer4.1.conv2", "layer4.1.bn2"),
    "resnet50": ("layer4.2.conv3", "layer4.2.bn3"),
    "densenet121": ("features.denseblock4.denselayer16.conv2", "features.norm5"),
    "mobilenet_v2": ("features.18.0", "features.18.1"),
    "mobilenet_v3_small": ("features.12.0", "features.12.1"),
    "efficientnet_b0": ("features.8.0", "features.8.1"),
    "convnext_tiny": None,
    "regnet_y_400mf": ("trunk_output.block4.block4-5.f.c.0", "trunk_output.block4.block4-5.f.c.1"),
    "vit_b_16": None,
    "vgg16": ("features.28",),
    "vgg16_bn": ("features.40", "features.41"),
    "vgg19": ("features.34",),
    "vgg_tiny": ("features.18",),
    "thesis_cnn": ("conv2",),
    "timm/resnet18.a1_in1k": ("layer4.1.conv2", "layer4.1.bn2"),
    # ConvNeXt-atto's MLPs and CoAtNet-rw's 2-d transformer blocks are 1 x 1 convolutions: their
    # trunk has no fully-connected layer, and the last conv layer is the last block's fc2
    "timm/convnext_atto.d2_in1k": ("stages.3.blocks.1.mlp.fc2",),
    "timm/efficientnet_b0.ra_in1k": ("conv_head", "bn2"),
    "timm/deit_tiny_patch16_224.fb_in1k": None,
    "timm/swin_tiny_patch4_window7_224.ms_in1k": None,
    "timm/regnety_002.pycls_in1k": ("s4.b7.conv3.conv", "s4.b7.conv3.bn"),
    "timm/mobilenetv3_small_100.lamb_in1k": ("conv_head",),  # no BatchNorm after it
    "timm/mobilevit_xxs.cvnets_in1k": None,
    "timm/coatnet_0_rw_224.sw_in1k": ("stages.3.blocks.1.mlp.fc2",),
}


def spec_of(arch: str, num_classes: int | None = CLASSES) -> ModelSpec:
    if arch == "thesis_cnn":
        return ModelSpec.create(arch, num_classes)
    return ModelSpec.create(arch, num_classes, image_size=32)  # ViT needs it; others ignore it


def images(arch: str, n: int = BATCH, seed: int = 0) -> torch.Tensor:
    shape = (n, 1, 28, 28) if arch == "thesis_cnn" else (n, 3, 32, 32)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(a: nn.Module | dict, b: nn.Module | dict) -> None:
    sa = a if isinstance(a, dict) else a.state_dict()
    sb = b if isinstance(b, dict) else b.state_dict()
    assert list(sa) == list(sb)
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert different == []


def last_linear(model: nn.Module) -> nn.Module:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a machine shared with other work, two threads that wait for each
    other make these small models several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def calibrated(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with the BatchNorm statistics of a batch of random images, as a
    trained model has them: with the initial statistics, activations of deep random networks in
    eval mode shrink to ~1e-15 (EfficientNet) and a frozen trunk would give its head nothing."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.momentum = 1.0
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)  # dropout, stochastic depth
        model.train()(images(model.spec.arch, 8, seed=5))
    for norm in norms:
        norm.momentum = 0.1
    return model.eval()


@pytest.fixture(scope="module", params=ARCHS)
def arch(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def source(arch) -> nn.Module:
    """The architecture with random weights and a 5-class head, in eval mode (built once)."""
    return calibrated(families.build_model(spec_of(arch), seed=SOURCE_SEED))


@pytest.fixture(scope="module")
def fresh(arch) -> nn.Module:
    """What fine-tuning starts from before the transfer: the target model built with the head
    seed."""
    return families.build_model(spec_of(arch, TARGET), seed=HEAD_SEED)


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub directory, so that nothing real is read from or written to the cache."""
    hub = tmp_path / "hub"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


# --- every architecture: save/load, layers, policies ----------------------------------------------


def test_checkpoint_round_trip(source, tmp_path):
    path = tmp_path / "final.pt"
    save_checkpoint(path, source.state_dict(), source.spec.meta())
    loaded, meta = families.model_from_checkpoint(path)
    assert loaded.spec == source.spec and meta["arch"] == source.spec.arch
    assert not loaded.training
    assert_same_state(loaded, source)
    x = images(source.spec.arch)
    with torch.no_grad():
        out = loaded(x)
        assert torch.equal(out, source(x))
    assert tuple(out.shape) == (BATCH, CLASSES)


def test_default_and_named_layers_in_one_pass(source):
    arch = source.spec.arch
    defaults, named = DEFAULT_LAYERS[arch], NAMED_LAYERS[arch]
    assert families.default_layers(source) == tuple(defaults)
    names = families.layer_names(source)
    assert set(defaults) | set(named) <= set(names)
    head = families.head_layer(source)
    assert head in named and named[head] == (CLASSES,)
    requested = [*defaults, *(n for n in named if n not in defaults)]
    x = images(arch)
    calls = []
    handle = last_linear(source).register_forward_hook(lambda *args: calls.append("head"))
    try:
        with torch.no_grad():
            out = families.forward_layers(source, x, requested)
            logits = source(x)
    finally:
        handle.remove()
    assert calls == ["head", "head"]  # one pass for all the layers, one for source(x)
    assert list(out) == requested
    shapes = {name: tuple(v.shape) for name, v in out.items()}
    assert shapes == {name: (BATCH, *s) for name, s in {**defaults, **named}.items()}
    assert torch.equal(out[head], logits)
    penultimate = "fc1" if arch == "thesis_cnn" else "penultimate"
    with torch.no_grad():  # the penultimate layer is what the head receives
        torch.testing.assert_close(last_linear(source)(out[penultimate]), logits)
    assert not source.training


def test_forward_layers_stops_after_the_last_requested_layer(source):
    first = families.default_layers(source)[0]
    calls = []
    handle = last_linear(source).register_forward_hook(lambda *args: calls.append("head"))
    try:
        with torch.no_grad():
            out = families.forward_layers(source, images(source.spec.arch), [first])
            assert list(out) == [first] and calls == []
            head = families.head_layer(source)
            families.forward_layers(source, images(source.spec.arch), [head, first])
            assert calls == ["head"]
            assert families.forward_layers(source, images(source.spec.arch), []) == {}
    finally:
        handle.remove()


@pytest.mark.parametrize("policy", families.POLICIES)
def test_policy_transfers_and_freezes_what_it_says(source, fresh, policy):
    arch = source.spec.arch
    linears = {n for n, m in fresh.named_modules() if isinstance(m, nn.Linear)}
    if policy in ("thesis_cnn", "last_conv") and LAST_CONV[arch] is None:
        with pytest.raises(ModelError, match=r"fully-connected layers inside its trunk.*full"):
            families.finetune_model(source, TARGET, policy, head_seed=HEAD_SEED)
        return
    model = families.finetune_model(source, TARGET, policy, head_seed=HEAD_SEED)
    assert model.spec == source.spec.with_classes(TARGET)
    assert model.training and source.training is False

    # transferred from the source / fresh from the head seed (the table in policies.py)
    new = linears if policy in ("thesis_cnn", "last_conv") else {HEAD[arch]}
    source_state, fresh_state, before = source.state_dict(), fresh.state_dict(), state_of(model)
    assert list(before) == list(fresh_state)
    is_new = {k: k.rsplit(".", 1)[0] in new for k in before}
    assert any(is_new.values()) and not all(is_new.values())
    wrong = [
        k
        for k, v in before.items()
        if not torch.equal(v, fresh_state[k] if is_new[k] else source_state[k])
    ]
    assert wrong == []
    assert before[HEAD[arch] + ".weight"].shape[0] == TARGET

    # trainable: exactly the policy's parameters
    expected = {
        "thesis_cnn": None,
        "full": None,
        "linear_probe": {HEAD[arch]},
        "last_conv": {*(LAST_CONV[arch] or ()), *linears},
    }[policy]
    params = dict(model.named_parameters())
    wanted = [n for n in params if expected is None or n.rsplit(".", 1)[0] in expected]
    assert families.trainable_names(model) == wanted
    frozen_modules = [
        m
        for m in model.modules()
        if list(m.parameters()) and not any(p.requires_grad for p in m.parameters())
    ]
    assert all(not m.training for m in frozen_modules)

    # one SGD step in train mode (as returned)
    generator = torch.Generator().manual_seed(0)
    x = images(arch, seed=1)
    y = torch.randint(TARGET, (BATCH,), generator=generator)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=LR)
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    after = model.state_dict()
    frozen = [n for n, p in params.items() if not p.requires_grad]
    assert [n for n in frozen if not torch.equal(after[n], before[n])] == []
    assert all(params[n].grad is None for n in frozen)
    frozen_bn = [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.weight.requires_grad
    ]
    stats = [f"{bn}.{s}" for bn in frozen_bn for s in ("running_mean", "running_var")]
    assert [k for k in stats if not torch.equal(after[k], before[k])] == []
    pushed = [  # a gradient that moves some entry well beyond float32 resolution
        n
        for n in wanted
        if params[n].grad is not None and (LR * params[n].grad.abs() > 1e-6 * before[n].abs()).any()
    ]
    assert HEAD[arch] + ".weight" in pushed
    assert [n for n in pushed if torch.equal(after[n], before[n])] == []
    # the source is left as it was
    assert [
        k for k in before if not is_new[k] and not torch.equal(source_state[k], before[k])
    ] == []


def test_policy_head_depends_on_the_head_seed(source, fresh):
    """The policy test checks that the head equals that of a model built with the head seed;
    another head seed gives another head (and the same transferred weights)."""
    other = families.finetune_model(source, TARGET, "linear_probe", head_seed=HEAD_SEED + 1)
    head = HEAD[source.spec.arch]
    state, fresh_state, source_state = other.state_dict(), fresh.state_dict(), source.state_dict()
    if source.spec.arch == "vit_b_16":  # torchvision initialises ViT's head with zeros
        assert not state[head + ".weight"].any() and not fresh_state[head + ".weight"].any()
    else:
        assert not torch.equal(state[head + ".weight"], fresh_state[head + ".weight"])
    body = [k for k in state if not k.startswith(head + ".")]
    assert [k for k in body if not torch.equal(state[k], source_state[k])] == []


@pytest.mark.parametrize("arch", families.TORCHVISION_TESTED)
def test_torchvision_weight_file_loads_strictly(arch, tmp_path):
    image_size = {"image_size": 32} if arch.startswith("vit") else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        reference = torchvision.models.get_model(
            arch, weights=None, num_classes=CLASSES, **image_size
        ).eval()
    path = tmp_path / f"{arch}.pth"
    torch.save(reference.state_dict(), path)
    model = families.load_model(ModelSpec.create(arch, image_size=32), path).eval()
    assert model.spec.num_classes == CLASSES  # from the file, not the spec's 1000
    assert_same_state(model, reference)
    reference.load_state_dict(model.state_dict(), strict=True)  # and back
    x = images(arch)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


# --- seeded builds --------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["vgg_tiny", "thesis_cnn", "resnet18"])
def test_seeded_build_is_deterministic_and_keeps_global_rng(arch):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, b = families.build_model(spec_of(arch), 5), families.build_model(spec_of(arch), 5)
    c = families.build_model(spec_of(arch), 6)
    d, e = families.build_model(spec_of(arch)), families.build_model(spec_of(arch))  # random
    assert torch.equal(torch.rand(3), expected)  # global RNG untouched
    assert_same_state(a, b)
    assert not torch.equal(last_linear(a).weight, last_linear(c).weight)
    assert not torch.equal(last_linear(d).weight, last_linear(e).weight)


def test_vgg_init_is_torchvision_scheme():
    model = families.build_model(spec_of("vgg_tiny"), 0)
    assert (model.classifier[0].bias == 0).all() and model.classifier[0].weight.std() < 0.02
    assert (model.features[0].bias == 0).all()


# --- layers: values and VGG variants --------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "widths", "hidden"),
    [("vgg_tiny", (8, 16, 16, 32, 32), 64), ("vgg19", (64, 128, 256, 512, 512), 512)],
    ids=["vgg_tiny", "vgg19-cifar"],
)
def test_vgg_cifar_layers_shapes_and_values(arch, widths, hidden):
    model = families.build_model(ModelSpec.create(arch, 7, cifar=True), seed=0).eval()
    assert families.input_spec(model.spec).crop == 32
    layers = [*(f"pool{i}" for i in range(1, 6)), "fc6", "fc7", "fc8"]
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        out = families.forward_layers(model, x, layers)
        logits = model(x)
        pools = [i for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
        pool2 = model.features[: pools[1] + 1](x)  # manual pass up to the second pooling
    shapes = [(3, w, 32 >> (k + 1), 32 >> (k + 1)) for k, w in enumerate(widths)]
    assert [tuple(v.shape) for v in out.values()] == [*shapes, (3, hidden), (3, hidden), (3, 7)]
    assert torch.equal(out["fc8"], logits) and torch.equal(out["pool2"], pool2)
    assert (out["fc6"] >= 0).all() and (out["fc7"] >= 0).all()  # after the ReLUs


def test_thesis_cnn_layers_match_the_model():
    model = families.build_model(spec_of("thesis_cnn"), seed=0).eval()
    x = images("thesis_cnn", 3)
    with torch.no_grad():
        out = families.forward_layers(model, x, list(families.layer_names(model)))
        conv1 = torch.relu(model.conv1(x))
        pool2 = model.pool(torch.relu(model.conv2(model.pool(conv1))))
        logits = model(x)  # forward(): the same network written out once more
    assert torch.equal(out["conv1"], conv1) and torch.equal(out["pool2"], pool2)
    assert torch.equal(out["fc2"], logits) and torch.equal(out["input"], x)
    assert families.head_layer(model) == "fc2"
    assert families.input_spec(model.spec).channels == 1


def test_forward_layers_keeps_train_mode_of_frozen_modules():
    """Tracing and running the layers must not switch frozen sub-modules back to train mode."""
    source = families.build_model(spec_of("mobilenet_v2"), seed=0)
    model = families.finetune_model(source, TARGET, "linear_probe", head_seed=1)
    modes = [m.training for m in model.modules()]
    before = state_of(model)
    families.layer_names(model)
    families.default_layers(model)  # probes the feature resolutions
    with torch.no_grad():
        out = families.forward_layers(model, images("mobilenet_v2"), ["features.3", "logits"])
    assert [m.training for m in model.modules()] == modes
    assert not model.features.training and model.training
    assert_same_state(model, before)  # no BatchNorm statistics moved
    assert tuple(out["logits"].shape) == (BATCH, TARGET)


# --- encoders -------------------------------------------------------------------------------------


def test_encoder_only_from_full_weights(tmp_path):
    full = families.build_model(spec_of("resnet18"), seed=2).eval()
    path = tmp_path / "resnet18.pt"
    torch.save(full.state_dict(), path)
    assert families.head_classes(spec_of("resnet18"), path) == CLASSES
    encoder = families.load_model(spec_of("resnet18"), path, encoder=True).eval()
    assert encoder.spec.num_classes is None and families.head_layer(encoder) is None
    assert "logits" not in families.layer_names(encoder)
    assert families.default_layers(encoder)[-1] == "penultimate"
    encoder_file = tmp_path / "encoder.pt"
    torch.save(encoder.state_dict(), encoder_file)
    assert families.head_classes(spec_of("resnet18"), encoder_file) is None
    assert families.load_model(spec_of("resnet18"), encoder_file).spec.num_classes is None
    x = images("resnet18")
    with torch.no_grad():
        features = encoder(x)
        expected = families.forward_layers(full, x, ["penultimate"])["penultimate"]
        assert torch.equal(features, expected)
        with pytest.raises(ModelError, match=r"unknown layer.*logits.*valid layers.*penultimate"):
            families.forward_layers(encoder, x, ["logits"])


def test_vgg16_features_encoder_from_torchvision_vgg16(tmp_path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        reference = torchvision.models.vgg16().eval()
    path = tmp_path / "vgg16.pth"
    torch.save(reference.state_dict(), path)
    spec = ModelSpec.create("vgg16_features")
    assert (spec.arch, spec.num_classes) == ("vgg16", None)
    encoder = families.load_model(spec, path)  # an encoder spec: classifier.* entries ignored
    assert isinstance(encoder.classifier, nn.Identity) and encoder.spec == spec
    assert_same_state(families.load_model(ModelSpec.create("vgg16"), path, encoder=True), encoder)
    reference_state = reference.state_dict()
    assert all(torch.equal(v, reference_state[k]) for k, v in encoder.state_dict().items())
    assert families.default_layers(encoder) == tuple(f"pool{i}" for i in range(1, 6))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(
            families.forward_layers(encoder, x, ["pool5"])["pool5"], reference.features(x)
        )
        with pytest.raises(ModelError, match=r"unknown layer.*fc6.*valid layers.*pool5"):
            families.forward_layers(encoder, x, ["fc6"])

    # fine-tuning an encoder gives it the full architecture's classifier
    model = families.finetune_model(encoder, 21, "last_conv", head_seed=0)
    assert model.spec == ModelSpec("vgg16", 21)
    assert model.classifier[0].in_features == 512 * 7 * 7
    assert model.classifier[6].out_features == 21
    assert torch.equal(model.features[28].weight, encoder.features[28].weight)
    assert families.trainable_names(model)[:2] == ["features.28.weight", "features.28.bias"]
    assert len(families.trainable_names(model)) == 8


# --- weight files ---------------------------------------------------------------------------------


def tiny(num_classes=10, seed=0):
    return families.build_model(ModelSpec.create("vgg_tiny", num_classes), seed=seed)


def test_load_accepts_checkpoint_dicts(tmp_path):
    source = tiny(seed=1)
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": source.state_dict(), "meta": {"arch": "vgg_tiny"}}, path)
    assert_same_state(families.load_model(ModelSpec.create("vgg_tiny"), path), source)


def test_load_remaps_prefixes_and_drops_keys(tmp_path):
    source = tiny(seed=1)
    convs = [i for i, m in enumerate(source.features) if isinstance(m, nn.Conv2d)]
    names = ["conv1_1", "conv2_1", "conv3_1", "conv3_2", "conv4_1", "conv4_2", "conv5_1", "conv5_2"]
    renamed = {}
    for key, value in source.state_dict().items():
        part, index, rest = key.split(".")
        if part == "features":
            key = f"encoder.{names[convs.index(int(index))]}.{rest}"
        else:
            key = f"module.head.{index}.{rest}"
        renamed[key] = value
    renamed["encoder.extra.scale"] = torch.ones(3)
    renamed["module.head.6.weight_orig"] = torch.ones(1)
    path = tmp_path / "converted.pt"
    torch.save(renamed, path)
    remap = {f"encoder.{n}.": f"features.{i}." for n, i in zip(names, convs, strict=True)}
    remap |= {"module.head.": "classifier.", "encoder.extra.": "", "module.head.6.weight_orig": ""}
    spec = ModelSpec.create("vgg_tiny")
    assert families.head_classes(spec, path, remap=remap) == 10
    assert_same_state(families.load_model(spec, path, remap=remap), source)

    with pytest.raises(ModelError, match=r"renamed onto the same key.*-> features\.0\.weight"):
        families.load_model(spec, path, remap=remap | {"encoder.conv2_1.": "features.0."})
    with pytest.raises(ModelError, match=r"\(file keys after remap\)"):
        families.load_model(spec, path, remap={"module.head.": "classifier."})


def test_load_lists_all_problems(tmp_path):
    model = tiny(10)
    state = tiny(5).state_dict()  # classifier.6 sized for 5 classes
    del state["features.0.bias"]
    state["features.99.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(ModelError) as info:
        families.family_of(model).load_weights(model, str(path))
    message = str(info.value)
    assert str(path) in message and "vgg_tiny with 10 classes" in message
    assert "missing keys (in model, not in file): features.0.bias" in message
    assert "unexpected keys (in file, not in model): features.99.weight" in message
    assert "classifier.6.weight: (5, 64) in file, (10, 64) in model" in message
    assert "classifier.6.bias: (5,) in file, (10,) in model" in message
    assert_same_state(model, tiny(10))  # nothing loaded


def test_load_weight_file_of_another_architecture(tmp_path):
    path = tmp_path / "resnet18.pt"
    torch.save(families.build_model(spec_of("resnet18"), seed=0).state_dict(), path)
    with pytest.raises(ModelError) as info:
        families.load_model(ModelSpec.create("resnet50"), path)
    message = str(info.value)
    assert f"weights file {path} do not fit a resnet50 with {CLASSES} classes" in message
    assert "missing keys (in model, not in file): layer1.0.bn3.bias" in message
    assert "shape mismatches: " in message
    assert "layer1.0.conv1.weight: (64, 64, 3, 3) in file, (64, 64, 1, 1) in model" in message
    assert "fc.weight: (5, 512) in file, (5, 2048) in model" in message
    assert "more (" in message  # long lists are cut, with the count


def test_load_refuses_pickled_code_without_running_it(tmp_path):
    marker = tmp_path / "code_ran"

    class Payload:
        def __reduce__(self):
            return eval, (f"open({str(marker)!r}, 'w').close()",)

    path = tmp_path / "evil.pt"
    torch.save({"features.0.weight": Payload()}, path)
    with pytest.raises(ModelError, match=rf"cannot read weights file {path} safely"):
        families.load_model(ModelSpec.create("vgg_tiny"), path)
    with pytest.raises(ValueError, match=rf"cannot read checkpoint {path}"):
        families.model_from_checkpoint(path)
    assert not marker.exists()


def test_load_missing_or_junk_file(tmp_path):
    spec = ModelSpec.create("vgg_tiny")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        families.load_model(spec, tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="junk.pt"):
        families.load_model(spec, tmp_path / "junk.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(ModelError, match="list.pt holds a list, expected a state dict"):
        families.load_model(spec, tmp_path / "list.pt")
    torch.save({"a": torch.zeros(1), "b": 3}, tmp_path / "mixed.pt")
    with pytest.raises(ModelError, match=r"mixed.pt is not a state dict: entries b are not"):
        families.load_model(spec, tmp_path / "mixed.pt")


def test_torchvision_weight_name_needs_cache_or_permission(hub_dir, monkeypatch):
    name = "ResNet18_Weights.IMAGENET1K_V1"
    cached = hub_dir / "checkpoints" / "resnet18-f37072fd.pth"
    spec = ModelSpec.create("resnet18")

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_network)
    with pytest.raises(FileNotFoundError, match=rf"{name} is not in the torch hub cache.*{cached}"):
        families.load_model(spec, name)
    with pytest.raises(ModelError, match="unknown torchvision weight"):
        families.load_model(spec, "ResNet18_Weights.NO_SUCH_WEIGHTS")

    # a cached file is used without downloading (random weights under resnet18's file name)
    source = families.build_model(spec_of("resnet18"), seed=3)
    cached.parent.mkdir(parents=True)
    torch.save(source.state_dict(), cached)
    assert_same_state(families.load_model(spec, name), source)

    # allow_download asks torchvision for the file, loading it with weights_only=True
    cached.unlink()
    requests = []

    def fake_download(url, *args, **kwargs):
        requests.append((url, kwargs))
        return source.state_dict()

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", fake_download)
    assert_same_state(families.load_model(spec, name, allow_download=True), source)
    assert requests[0][0].endswith("resnet18-f37072fd.pth") and requests[0][1]["weights_only"]


# --- bad names ------------------------------------------------------------------------------------


def test_unknown_architecture_lists_known_ones():
    with pytest.raises(ModelError, match=r"unknown architecture 'resnet9'; known: .*'resnet18'"):
        families.build_model(ModelSpec.create("resnet9"))
    listed = {a for a in ARCHS if not a.startswith("timm/")}  # timm's: timm.list_models()
    assert {"thesis_cnn", "vgg_tiny", "vgg16_features", *listed} <= set(families.architectures())


def test_bad_specs():
    with pytest.raises(ModelError, match="num_classes must be an integer >= 1 or None, got 0"):
        ModelSpec.create("vgg_tiny", 0)
    with pytest.raises(ModelError, match="image_size must be an integer >= 8"):
        ModelSpec.create("vit_b_16", image_size=4)
    with pytest.raises(ModelError, match="cifar is a VGG variant"):
        families.build_model(ModelSpec.create("resnet18", cifar=True))
    with pytest.raises(ModelError, match="always has a classifier"):
        families.build_model(ModelSpec.create("thesis_cnn", None))


def test_unknown_layer_lists_valid_ones():
    model = families.build_model(spec_of("resnet18"), seed=0)
    x = images("resnet18")
    with pytest.raises(ModelError, match=r"unknown layer\(s\) \['fc7'\].*valid.*'penultimate'"):
        families.forward_layers(model, x, ["layer1", "fc7"])
    with pytest.raises(TypeError, match="sequence of layer names"):
        families.forward_layers(model, x, "layer1")
    cnn = families.build_model(spec_of("thesis_cnn"), seed=0)
    with pytest.raises(ModelError, match=r"unknown layer\(s\) \['logits'\].*'fc2'"):
        families.forward_layers(cnn, images("thesis_cnn"), ["logits"])


def test_unknown_policy_lists_known_ones():
    source = tiny(seed=0)
    with pytest.raises(ModelError, match=r"unknown fine-tuning policy 'frozen'.*'linear_probe'"):
        families.finetune_model(source, TARGET, "frozen", head_seed=0)


# --- input transforms -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "weights", "expected"),
    [
        (ModelSpec.create("resnet50"), "ResNet50_Weights.IMAGENET1K_V2", (224, 232)),
        (ModelSpec.create("resnet50"), "ResNet50_Weights.IMAGENET1K_V1", (224, 256)),
        (ModelSpec.create("vit_b_16"), "ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1", (384, 384)),
        (ModelSpec.create("resnet18", image_size=64), None, (64, 64)),
        (ModelSpec.create("resnet18"), None, (224, 256)),
        (ModelSpec.create("vgg19", cifar=True), None, (32, 32)),
        (ModelSpec.create("vgg_tiny"), None, (32, 32)),
    ],
    ids=["weights-v2", "weights-v1", "vit-swag", "image-size", "default", "cifar", "vgg-tiny"],
)
def test_input_spec(spec, weights, expected, hub_dir):
    got = families.input_spec(spec, weights)
    assert (got.crop, got.resize) == expected
    assert got.mean == families.IMAGENET_MEAN and got.std == families.IMAGENET_STD
    assert got.channels == 3
    assert not hub_dir.exists()  # nothing downloaded or cached


def test_input_spec_thesis_cnn():
    from transferability.training.loop import PIXEL_MEAN, PIXEL_STD

    got = families.input_spec(ModelSpec.create("thesis_cnn", 10))
    assert (got.crop, got.resize, got.channels) == (28, 28, 1)
    assert (got.mean, got.std) == ((PIXEL_MEAN,), (PIXEL_STD,))
