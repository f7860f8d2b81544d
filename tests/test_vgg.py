"""VGG track models (transferability.vgg): key layout, weight loading, layers, freezing."""

import pytest
import torch
import torchvision

from transferability.vgg import (
    ARCHITECTURES,
    VGG_LAYERS,
    build_vgg,
    forward_layers,
    input_size,
    layer_names,
    load_weights,
    trainable_names,
    transfer_vgg,
)


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    """torchvision's vgg16 (random weights) and its state dict saved as a .pt file."""
    torch.manual_seed(0)
    reference = torchvision.models.vgg16().eval()
    path = tmp_path_factory.mktemp("weights") / "vgg16.pt"
    torch.save(reference.state_dict(), path)
    return reference, path


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub directory, so that nothing real is read from or written to the cache."""
    hub = tmp_path / "hub"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


def tiny(num_classes=10, seed=0):
    return build_vgg("vgg_tiny", num_classes, seed=seed)


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


# --- torchvision key layout --------------------------------------------------------------------


def test_vgg16_file_from_torchvision_loads_and_forward_agrees(vgg16_file):
    reference, path = vgg16_file
    model = build_vgg("vgg16", seed=1).eval()
    load_weights(model, path)
    assert_same_state(model, reference)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out = forward_layers(model, x, ["fc8"])["fc8"]
        expected = reference(x)
    assert out.abs().max() > 1e-2  # not trivially small logits
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert input_size(model) == 224 and layer_names(model) == VGG_LAYERS


def test_vgg16_weights_serve_as_features_only_encoder(vgg16_file):
    reference, path = vgg16_file
    encoder = build_vgg("vgg16_features", seed=1)
    assert encoder.classifier is None and encoder.num_classes is None
    load_weights(encoder, path)  # classifier.* entries of the file are ignored
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in encoder.state_dict().items())
    assert layer_names(encoder) == VGG_LAYERS[:5]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(encoder(x), reference.features(x))
        with pytest.raises(ValueError, match=r"unknown layer.*fc6.*valid layers.*pool5"):
            forward_layers(encoder, x, ["fc6"])


@pytest.mark.parametrize("arch", ["vgg16_bn", "vgg19"])
def test_torchvision_state_dicts_load_both_ways(arch):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, arch)().eval()
    model = build_vgg(arch, seed=1).eval()
    assert [(k, v.shape) for k, v in model.state_dict().items()] == [
        (k, v.shape) for k, v in reference.state_dict().items()
    ]
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 32, 32)  # small input: the 7x7 average pooling replicates pool5
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)
    reference.load_state_dict(build_vgg(arch, seed=2).state_dict(), strict=True)


def test_build_rejects_unknown_arch_and_bad_num_classes():
    with pytest.raises(ValueError, match=r"unknown VGG architecture 'vgg11'.*vgg_tiny"):
        build_vgg("vgg11")
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1, got 0"):
        build_vgg("vgg_tiny", 0)
    assert set(ARCHITECTURES) == {"vgg16", "vgg16_bn", "vgg19", "vgg16_features", "vgg_tiny"}


# --- seeded initialisation ---------------------------------------------------------------------


def test_seeded_build_is_deterministic_and_keeps_global_rng():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a, b, c = tiny(seed=5), tiny(seed=5), tiny(seed=6)
    assert torch.equal(torch.rand(3), before)  # global RNG untouched
    assert_same_state(a, b)
    assert not torch.equal(a.features[0].weight, c.features[0].weight)
    assert not torch.equal(a.classifier[6].weight, c.classifier[6].weight)
    assert (a.classifier[0].bias == 0).all() and a.classifier[0].weight.std() < 0.02
    # seed=None draws from the global RNG
    torch.manual_seed(7)
    d = build_vgg("vgg_tiny", 10)
    torch.manual_seed(7)
    assert_same_state(d, build_vgg("vgg_tiny", 10))


# --- layers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "widths", "hidden"),
    [("vgg_tiny", (8, 16, 16, 32, 32), 64), ("vgg19", (64, 128, 256, 512, 512), 512)],
)
def test_forward_layers_shapes_and_values(arch, widths, hidden):
    model = build_vgg(arch, 7, cifar=True, seed=0).eval()
    assert model.cifar and input_size(model) == 32
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        out = forward_layers(model, x, VGG_LAYERS)
        logits = model(x)
        pools = [i for i, m in enumerate(model.features) if isinstance(m, torch.nn.MaxPool2d)]
        pool2 = model.features[: pools[1] + 1](x)  # manual pass up to the second pooling
    assert list(out) == list(VGG_LAYERS)
    shapes = [(3, w, 32 >> (k + 1), 32 >> (k + 1)) for k, w in enumerate(widths)]
    shapes += [(3, hidden), (3, hidden), (3, 7)]
    assert [tuple(v.shape) for v in out.values()] == shapes
    assert torch.equal(out["fc8"], logits)
    assert torch.equal(out["pool2"], pool2)
    assert (out["fc6"] >= 0).all() and (out["fc7"] >= 0).all()


def test_forward_layers_returns_requested_only_and_stops_early():
    model = tiny().eval()
    x = torch.randn(2, 3, 32, 32)
    calls = []
    model.classifier.register_forward_hook(lambda *args: calls.append("classifier"))
    with torch.no_grad():
        out = forward_layers(model, x, ["pool3", "pool1"])
        assert list(out) == ["pool3", "pool1"]
        assert calls == []  # the pass ended at pool3
        assert set(forward_layers(model, x, ["fc7"])) == {"fc7"}
        assert forward_layers(model, x, []) == {}
    with pytest.raises(ValueError, match=r"unknown layer\(s\) \['conv1'\].*'pool1'.*'fc8'"):
        forward_layers(model, x, ["pool1", "conv1"])
    with pytest.raises(ValueError, match=r"expects 32x32 inputs"):
        model(torch.randn(1, 3, 64, 64))


# --- load_weights ------------------------------------------------------------------------------


def test_load_weights_accepts_checkpoint_dicts(tmp_path):
    source, model = tiny(seed=1), tiny(seed=2)
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": source.state_dict(), "meta": {"arch": "vgg_tiny"}}, path)
    load_weights(model, path)
    assert_same_state(model, source)


def test_load_weights_remaps_prefixes_and_drops_keys(tmp_path):
    source, model = tiny(seed=1), tiny(seed=2)
    convs = [i for i, m in enumerate(source.features) if isinstance(m, torch.nn.Conv2d)]
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
    torch.save(renamed, tmp_path / "converted.pt")
    remap = {f"encoder.{n}.": f"features.{i}." for n, i in zip(names, convs, strict=True)}
    remap |= {"module.head.": "classifier.", "encoder.extra.": "", "module.head.6.weight_orig": ""}
    load_weights(model, tmp_path / "converted.pt", remap=remap)
    assert_same_state(model, source)

    with pytest.raises(ValueError, match=r"renamed onto the same key.*-> features\.0\.weight"):
        load_weights(
            model, tmp_path / "converted.pt", remap=remap | {"encoder.conv2_1.": "features.0."}
        )


def test_load_weights_lists_all_problems(tmp_path):
    model = tiny(10)
    state = tiny(5).state_dict()  # classifier.6 sized for 5 classes
    del state["features.0.bias"]
    state["features.99.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(ValueError) as info:
        load_weights(model, path)
    message = str(info.value)
    assert str(path) in message
    assert "missing keys (in model, not in file): features.0.bias" in message
    assert "unexpected keys (in file, not in model): features.99.weight" in message
    assert "classifier.6.weight: (5, 64) in file, (10, 64) in model" in message
    assert "classifier.6.bias: (5,) in file, (10,) in model" in message
    assert torch.equal(model.state_dict()["features.0.weight"], tiny(10).features[0].weight)


def test_load_weights_refuses_pickled_code_without_running_it(tmp_path):
    marker = tmp_path / "code_ran"

    class Payload:
        def __reduce__(self):
            return eval, (f"open({str(marker)!r}, 'w').close()",)

    path = tmp_path / "evil.pt"
    torch.save({"features.0.weight": Payload()}, path)
    with pytest.raises(ValueError, match=rf"cannot read weights file {path}"):
        load_weights(tiny(), path)
    assert not marker.exists()


def test_load_weights_missing_or_junk_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_weights(tiny(), tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pt"):
        load_weights(tiny(), tmp_path / "junk.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="list.pt holds a list, expected a state dict"):
        load_weights(tiny(), tmp_path / "list.pt")


def test_torchvision_weight_name_needs_cache_or_permission(hub_dir, monkeypatch):
    name = "VGG16_Weights.IMAGENET1K_V1"
    cached = hub_dir / "checkpoints" / "vgg16-397923af.pth"

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_network)
    with pytest.raises(FileNotFoundError, match=rf"{name}.*{cached}"):
        load_weights(tiny(), name)
    with pytest.raises(ValueError, match="unknown torchvision weight"):
        load_weights(tiny(), "VGG16_Weights.NO_SUCH_WEIGHTS")

    # A cached file is used without downloading (a tiny state dict under vgg16's file name).
    source = tiny(seed=3)
    cached.parent.mkdir(parents=True)
    torch.save(source.state_dict(), cached)
    model = tiny(seed=4)
    load_weights(model, name)
    assert_same_state(model, source)

    # allow_download asks torchvision for the file, loading it with weights_only=True.
    cached.unlink()
    requests = []

    def fake_download(url, *args, **kwargs):
        requests.append((url, kwargs))
        return source.state_dict()

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", fake_download)
    model = tiny(seed=4)
    load_weights(model, name, allow_download=True)
    assert_same_state(model, source)
    assert requests[0][0].endswith("vgg16-397923af.pth") and requests[0][1]["weights_only"]


# --- fine-tuning -------------------------------------------------------------------------------


def one_sgd_step(model, num_classes):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 32, 32, generator=generator)
    y = torch.randint(num_classes, (16,), generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()


def test_transfer_trains_only_last_conv_and_classifier():
    source = build_vgg("vgg_tiny", 10, seed=1)
    source_state = {k: v.clone() for k, v in source.state_dict().items()}
    model = transfer_vgg(source, 4, head_seed=9)
    assert (model.arch, model.num_classes, model.cifar) == ("vgg_tiny", 4, True)
    assert all(
        torch.equal(v, model.state_dict()[k]) for k, v in source_state.items() if "features" in k
    )
    assert not torch.equal(model.classifier[0].weight, source.classifier[0].weight)
    assert_same_state(transfer_vgg(source, 4, head_seed=9), model)  # head depends on the seed only
    expected = ["features.18.weight", "features.18.bias"]
    expected += [f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")]
    assert trainable_names(model) == expected

    before = {k: v.clone() for k, v in model.state_dict().items()}
    one_sgd_step(model, 4)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == expected
    assert all(torch.equal(v, source_state[k]) for k, v in source.state_dict().items())


def test_transfer_bn_keeps_frozen_batchnorm_statistics():
    source = build_vgg("vgg16_bn", 10, cifar=True, seed=1)
    model = transfer_vgg(source, 3, head_seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    one_sgd_step(model, 3)
    changed = {
        k.rsplit(".", 1)[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])
    }
    # the last conv (features.40) and its BatchNorm (features.41, statistics included) train
    assert changed == {"features.40", "features.41", "classifier.0", "classifier.3", "classifier.6"}
    assert model.features[41].training and not model.features[38].training
    model.eval().train()
    assert not model.features[1].training


def test_transfer_from_features_only_gets_full_classifier():
    encoder = build_vgg("vgg16_features", seed=1)
    model = transfer_vgg(encoder, 21, head_seed=0)
    assert (model.arch, model.num_classes, model.cifar) == ("vgg16", 21, False)
    assert model.classifier[0].in_features == 512 * 7 * 7
    assert model.classifier[6].out_features == 21
    assert torch.equal(model.features[28].weight, encoder.features[28].weight)
    assert trainable_names(model)[:2] == ["features.28.weight", "features.28.bias"]
    assert len(trainable_names(model)) == 8
