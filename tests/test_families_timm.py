"""timm as a model family (``arch: timm/<name>``), beyond the battery every architecture goes
through in test_families.py (build, checkpoint round trip, layers in one pass with their
shapes, each policy's trainable set): safetensors files, the pretrained weights of the local
Hugging Face cache (never the network), the data config, and bad input. Random weights only."""

from __future__ import annotations

import huggingface_hub
import pytest
import timm
import torch
from safetensors.torch import save_file
from test_families import assert_same_state, spec_of

from transferability import models as families
from transferability.data.folders import build_transform
from transferability.models import ModelError, ModelSpec
from transferability.models.timm_family import _hooked_forward

RESNET = "timm/resnet18.a1_in1k"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline: nothing real is read, written or fetched."""
    cache = tmp_path / "hf"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    return cache


def fill_cache(cache, repo: str, state: dict) -> None:
    """The layout ``hf download`` leaves: refs/main names a snapshot holding the file."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0" * 40)
    save_file({k: v.contiguous() for k, v in state.items()}, snapshot / "model.safetensors")


@pytest.mark.parametrize("arch", families.TIMM_TESTED)
def test_safetensors_round_trip(arch, tmp_path):
    """A model saved as .safetensors loads back bit for bit, its head size read from the file."""
    source = families.build_model(spec_of(arch, 7), seed=3)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, path)
    spec = ModelSpec.create(arch, image_size=32)
    assert families.head_classes(spec, path) == 7
    loaded = families.load_model(spec, path)
    assert loaded.spec == source.spec
    assert_same_state(loaded, source)
    encoder = families.load_model(spec, path, encoder=True)  # the file's head is ignored
    assert families.head_layer(encoder) is None and "logits" not in families.layer_names(encoder)


def test_safetensors_for_torchvision_and_bad_files(tmp_path):
    source = families.build_model(spec_of("resnet18"), seed=2)
    path = tmp_path / "r18.safetensors"
    save_file(source.state_dict(), path)
    assert_same_state(families.load_model(ModelSpec.create("resnet18"), path), source)
    with pytest.raises(ModelError, match=r"do not fit a timm/resnet50\.a1_in1k") as info:
        families.load_model(ModelSpec.create("timm/resnet50.a1_in1k"), path)
    message = str(info.value)
    assert str(path) in message and "layer1.0.conv3.weight" in message  # missing keys named
    assert "(64, 64, 3, 3) in file, (64, 64, 1, 1) in model" in message
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match=r"cannot read safetensors file .*junk\.safetensors"):
        families.load_model(ModelSpec.create("resnet18"), tmp_path / "junk.safetensors")


def test_pretrained_weights_come_from_the_local_hf_cache(hf_cache):
    spec = ModelSpec.create(RESNET)
    repo = "timm/resnet18.a1_in1k"
    folder = hf_cache / "models--timm--resnet18.a1_in1k"
    with pytest.raises(FileNotFoundError) as info:
        families.load_model(spec, "pretrained")
    message = str(info.value)
    assert str(folder) in message and f"hf download {repo} model.safetensors" in message
    assert "allow_download: true" in message
    source = families.build_model(ModelSpec.create(RESNET, 1000), seed=5)
    fill_cache(hf_cache, repo, source.state_dict())
    loaded = families.load_model(spec, "pretrained")
    assert loaded.spec.num_classes == 1000
    assert_same_state(loaded, source)


def test_pretrained_download_only_when_allowed(hf_cache, monkeypatch, tmp_path):
    source = families.build_model(ModelSpec.create(RESNET, 1000), seed=6)
    calls = []

    def fake_download(repo, filename):
        calls.append((repo, filename))
        path = tmp_path / "fetched.safetensors"
        save_file(source.state_dict(), path)
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert_same_state(
        families.load_model(ModelSpec.create(RESNET), "pretrained", allow_download=True), source
    )
    assert calls == [("timm/resnet18.a1_in1k", "model.safetensors")]


@pytest.mark.parametrize(
    ("arch", "crop", "resize", "mean", "std"),
    [  # timm's pretrained configs: crop_pct 0.95 → 235, 0.875 → 256; MobileViT takes [0, 1]
        (RESNET, 224, 235, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ("timm/convnext_atto.d2_in1k", 224, 256, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ("timm/mobilevit_xxs.cvnets_in1k", 256, 284, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
        ("timm/coatnet_0_rw_224.sw_in1k", 224, 235, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ],
)
def test_input_spec_is_the_models_own_data_config(arch, crop, resize, mean, std):
    got = families.input_spec(ModelSpec.create(arch))
    assert (got.crop, got.resize, got.mean, got.std) == (crop, resize, mean, std)
    assert got.interpolation == "bicubic"
    model = timm.create_model(arch.removeprefix("timm/"), pretrained=False)
    data = timm.data.resolve_data_config({}, model=model)  # timm's own reading of the model
    assert data["input_size"] == (3, crop, crop)
    assert (tuple(data["mean"]), tuple(data["std"])) == (mean, std)
    assert resize == int(crop / data["crop_pct"])
    # image_size replaces the sizes, never the statistics
    small = families.input_spec(ModelSpec.create(arch, image_size=32))
    assert (small.crop, small.resize, small.mean, small.std) == (32, 32, mean, std)


def test_the_transform_uses_the_models_statistics_and_interpolation():
    inputs = families.input_spec(ModelSpec.create("timm/mobilevit_xxs.cvnets_in1k"))
    transform = build_transform(False, resize=40, crop=32, inputs=inputs)
    resize, normalise = transform.transforms[1], transform.transforms[-1]
    assert resize.interpolation.value == "bicubic"
    assert tuple(normalise.mean) == (0.0, 0.0, 0.0) and tuple(normalise.std) == (1.0, 1.0, 1.0)
    from PIL import Image

    white = Image.new("RGB", (50, 60), (255, 255, 255))
    assert torch.allclose(transform(white), torch.ones(3, 32, 32))  # [0, 1]: no normalisation
    default = build_transform(False, resize=40, crop=32)  # torchvision's: ImageNet, bilinear
    assert default.transforms[1].interpolation.value == "bilinear"
    assert not torch.allclose(default(white), torch.ones(3, 32, 32))


def test_fixed_input_size_models_say_so():
    assert families.input_spec(ModelSpec.create("timm/deit_tiny_patch16_224.fb_in1k")).fixed_size
    assert not families.input_spec(ModelSpec.create(RESNET)).fixed_size


def test_hooks_give_the_same_stages_as_forward_intermediates():
    """The path for models without forward_intermediates reads the same modules (a CNN's stage
    outputs are the same tensors either way) and stops after the last requested one."""
    model = families.build_model(spec_of(RESNET), seed=1).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        direct = families.forward_layers(model, x, ["layer2", "layer3"])
        final, hooked = _hooked_forward(model, x, ["layer2", "layer3"], stop=True)
        assert final is None  # stopped before the end
        assert list(hooked) == ["layer2", "layer3"]
        for name in hooked:
            assert torch.equal(hooked[name], direct[name])
        final, _ = _hooked_forward(model, x, ["layer1"], stop=False)
        assert torch.equal(final, model.forward_features(x))


def test_unknown_timm_model_lists_close_names():
    with pytest.raises(ModelError, match=r"unknown timm model 'timm/resnet5O'.*timm/resnet50"):
        families.build_model(ModelSpec.create("timm/resnet5O"))
    with pytest.raises(ModelError, match=r"unknown timm model 'timm/'"):
        families.family_of("timm/")


def test_bad_timm_specs():
    with pytest.raises(ModelError, match="cifar is a VGG variant"):
        families.build_model(ModelSpec.create(RESNET, cifar=True))
    with pytest.raises(ModelError, match="several classifier heads"):
        families.build_model(ModelSpec.create("timm/levit_128s.fb_dist_in1k", 5))


def test_seeded_build_is_deterministic_and_keeps_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = families.build_model(spec_of("timm/deit_tiny_patch16_224.fb_in1k"), seed=4)
    after = torch.rand(1)
    b = families.build_model(spec_of("timm/deit_tiny_patch16_224.fb_in1k"), seed=4)
    c = families.build_model(spec_of("timm/deit_tiny_patch16_224.fb_in1k"), seed=5)
    assert torch.equal(before, after)
    assert_same_state(a, b)
    assert not torch.equal(
        a.state_dict()["blocks.0.attn.qkv.weight"], c.state_dict()["blocks.0.attn.qkv.weight"]
    )


def test_model_inputs_fill_what_the_config_leaves_open():
    """The image jobs' transform (models.model_inputs): the configured sizes where
    given, else the model's own; the model's statistics and interpolation always."""
    from transferability.models import model_inputs

    spec = ModelSpec.create("timm/coatnet_0_rw_224.sw_in1k", 10)
    own = model_inputs(spec)
    assert (own.resize, own.crop, own.mean, own.interpolation) == (235, 224, (0.5,) * 3, "bicubic")
    sized = model_inputs(spec, 40, 32)
    assert (sized.resize, sized.crop, sized.mean) == (40, 32, (0.5,) * 3)
    assert model_inputs(spec, crop=32).resize == 32  # a crop of its own: no larger resize
    torchvision = model_inputs(ModelSpec.create("resnet18", 10), 36, 32)
    assert (torchvision.interpolation, torchvision.std) == ("bilinear", (0.229, 0.224, 0.225))
