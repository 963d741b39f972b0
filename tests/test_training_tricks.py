"""EMA of weights, Mixup/CutMix, focal loss and the automatic augmentation policies."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
import torchvision.transforms.v2.functional as TF  # noqa: N812 - the usual name

from test_train import MLP, _same, _trainer, _weights, tiny_config
from visionbench.models.outputs import OUTPUTS
from visionbench.orchestrate import run_config
from visionbench.schemas.train import AutoAugmentConfig, MixConfig
from visionbench.train.autoaugment import OPERATIONS, auto_augment
from visionbench.train.callbacks import Callback
from visionbench.train.loop import Trainer
from visionbench.train.lr_find import steepest, sweep_rates
from visionbench.train.mix import BatchMixer


class StepRecorder(Callback):
    """The trained (not averaged) weights after every optimizer step."""

    name = "step_recorder"

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_batch_end(self, trainer: Trainer, batch: int, batches: int) -> None:
        self.steps.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})


def test_ema_weights_are_the_exponential_average_of_the_steps_and_are_saved(tmp_path):
    decay = 0.8
    cfg = tiny_config(tmp_path, {"m": MLP}, epochs=2,
                      ema={"decay": decay, "warmup": False})
    recorder = StepRecorder()
    trainer = _trainer(cfg, "m", [recorder])
    trainer.fit()
    # timm's convention: the first update copies the weights, later ones average.
    expected = {k: v.clone().float() for k, v in recorder.steps[0].items()}
    for weights in recorder.steps[1:]:
        for key, value in weights.items():
            expected[key] = decay * expected[key] + (1 - decay) * value.float()
    averaged = trainer.ema.module.state_dict()
    for key, value in expected.items():
        if value.is_floating_point():
            torch.testing.assert_close(averaged[key].float(), value, rtol=1e-5, atol=1e-6)
    trained = trainer.model.state_dict()
    assert any(not torch.equal(averaged[k], trained[k]) for k in trained), \
        "the average equals the last weights: nothing was averaged"
    assert trainer.evaluated_model is trainer.ema.module

    result = run_config(cfg, report=lambda _: None)
    saved = _weights(result.folder, "m")
    plain = run_config(tiny_config(tmp_path / "plain", {"m": MLP}, epochs=2),
                       report=lambda _: None)
    assert not _same(saved, _weights(plain.folder, "m"))
    assert _same(saved, {k: v.contiguous() for k, v in averaged.items()})


def test_ema_warmup_follows_timms_schedule():
    cfg_decay = 0.999
    from timm.utils import ModelEmaV3

    ema = ModelEmaV3(torch.nn.Linear(2, 2), decay=cfg_decay, use_warmup=True,
                     warmup_gamma=1.0, warmup_power=0.75)
    assert ema.get_decay(1) == 0.0
    assert ema.get_decay(11) == pytest.approx(1 - 11 ** -0.75)
    assert ema.get_decay(10**9) == cfg_decay


def test_mixup_blends_images_and_targets_that_sum_to_one():
    images = torch.rand(6, 3, 8, 8)
    targets = torch.tensor([0, 1, 2, 0, 1, 2])
    mixer = BatchMixer(MixConfig(alpha=0.4), None, classes=3)
    mixed, soft = mixer(images, targets, torch.Generator().manual_seed(3))
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(6))
    lam = float(soft[0, 0])  # image 0 is class 0, its partner (image 5) class 2
    assert 0 < lam < 1
    torch.testing.assert_close(mixed, images * lam + images.flip(0) * (1 - lam))
    expected = F.one_hot(targets, 3).float() * lam + F.one_hot(targets.flip(0), 3).float() * (
        1 - lam)
    torch.testing.assert_close(soft, expected)


def test_cutmix_pastes_a_box_and_weights_the_labels_by_its_area():
    images = torch.zeros(2, 1, 10, 10)
    images[1] = 1.0
    targets = torch.tensor([0, 1])
    mixer = BatchMixer(None, MixConfig(alpha=1.0), classes=2)
    for seed in range(20):
        mixed, soft = mixer(images, targets, torch.Generator().manual_seed(seed))
        pasted = float(mixed[0].mean())  # image 0 got a box of image 1's ones
        torch.testing.assert_close(soft[0], torch.tensor([1 - pasted, pasted]))
        torch.testing.assert_close(soft.sum(dim=1), torch.ones(2))


def test_mixing_with_probability_below_one_leaves_some_batches_alone():
    images, targets = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 0, 1])
    mixer = BatchMixer(MixConfig(alpha=1.0, prob=0.5), MixConfig(alpha=1.0, prob=0.5), 2)
    untouched = 0
    for seed in range(40):
        mixed, soft = mixer(images, targets, torch.Generator().manual_seed(seed))
        untouched += torch.equal(mixed, images) and torch.equal(soft, F.one_hot(targets, 2).float())
    assert 5 < untouched < 35


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_focal_loss_by_hand_and_zero_gamma_is_cross_entropy(smoothing):
    softmax = OUTPUTS.get("softmax")
    logits = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0])
    weights = torch.tensor([1.0, 2.0, 0.5])
    assert torch.equal(softmax.loss(logits, targets, weights, smoothing, 0.0),
                       F.cross_entropy(logits, targets, weight=weights,
                                       label_smoothing=smoothing))
    gamma = 2.0
    p = logits.softmax(1)
    goal = F.one_hot(targets, 3).float() * (1 - smoothing) + smoothing / 3
    each = -(goal * (1 - p) ** gamma * p.log()).sum(1)
    expected = (each * weights[targets]).sum() / weights[targets].sum()
    torch.testing.assert_close(softmax.loss(logits, targets, weights, smoothing, gamma), expected)
    # The focal term down-weights what the model already gets right.
    assert softmax.loss(logits, targets, None, smoothing, gamma) < softmax.loss(
        logits, targets, None, smoothing, 0.0)


def test_sigmoid_focal_loss_by_hand_and_soft_targets():
    sigmoid = OUTPUTS.get("sigmoid")
    logits = torch.randn(6, 1, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 1, 1, 0, 1, 0])
    p = torch.sigmoid(logits.squeeze(1))
    y = targets.float()
    gamma = 1.5
    expected = -(y * (1 - p) ** gamma * p.log() + (1 - y) * p ** gamma * (1 - p).log()).mean()
    torch.testing.assert_close(sigmoid.loss(logits, targets, None, 0.0, gamma), expected)
    soft = torch.stack([1 - y * 0.7, y * 0.7], dim=1)
    torch.testing.assert_close(
        sigmoid.loss(logits, soft, None, 0.0),
        F.binary_cross_entropy_with_logits(logits.squeeze(1), y * 0.7))


def test_soft_targets_give_the_expected_cross_entropy():
    softmax = OUTPUTS.get("softmax")
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.5, 0.5], [1.0, 0, 0], [0.2, 0.2, 0.6]])
    expected = -(soft * logits.log_softmax(1)).sum(1).mean()
    torch.testing.assert_close(softmax.loss(logits, soft, None, 0.0), expected)
    torch.testing.assert_close(softmax.loss(logits, soft, None, 0.0, 1e-9), expected,
                               rtol=1e-5, atol=1e-6)


def _uint8_batch() -> torch.Tensor:
    gen = torch.Generator().manual_seed(5)
    images = torch.randint(40, 200, (4, 3, 12, 10), generator=gen, dtype=torch.uint8)
    images[0] = 90  # a flat image: equalize and autocontrast leave it alone
    return images


@pytest.mark.parametrize(("name", "strength", "reference"), [
    ("posterize", 1.0, lambda x: TF.posterize(x, 4)),
    ("posterize", 0.5, lambda x: TF.posterize(x, 6)),
    ("solarize", 0.25, lambda x: TF.solarize(x, 191.25)),
    ("autocontrast", 0.0, TF.autocontrast),
    ("equalize", 0.0, TF.equalize),
])
def test_pixel_operations_match_torchvision(name, strength, reference):
    images = _uint8_batch()
    ours = OPERATIONS.get(name)(images.float() / 255, torch.full((4,), strength), "border")
    expected = reference(images).float() / 255
    torch.testing.assert_close(ours, expected, atol=1 / 255 + 1e-6, rtol=0)


@pytest.mark.parametrize("name", ["brightness", "color", "contrast", "sharpness", "shear_x",
                                  "shear_y", "translate_x", "translate_y", "rotate"])
def test_operations_at_zero_magnitude_change_nothing(name):
    images = torch.rand(3, 3, 9, 13, generator=torch.Generator().manual_seed(0))
    out = OPERATIONS.get(name)(images, torch.zeros(3), "border")
    torch.testing.assert_close(out, images, atol=1e-5, rtol=0)


def test_enhancements_match_torchvision():
    images = _uint8_batch().float() / 255
    half = torch.full((4,), 0.5)
    factor = 1 + 0.5 * 0.9
    torch.testing.assert_close(OPERATIONS.get("brightness")(images, half, "border").clamp(0, 1),
                               TF.adjust_brightness(images, factor))
    torch.testing.assert_close(OPERATIONS.get("color")(images, half, "border").clamp(0, 1),
                               TF.adjust_saturation(images, factor), atol=2e-3, rtol=0)


def test_rotation_turns_a_square_image_by_the_angle():
    image = torch.zeros(1, 1, 21, 21)
    image[..., 10, 14:20] = 1.0  # a bar pointing right of the centre
    turned = OPERATIONS.get("rotate")(image, torch.tensor([1.0]), "zeros")
    rows, cols = torch.nonzero(turned[0, 0] > 0.5, as_tuple=True)
    angle = math.degrees(math.atan2(float((rows - 10).float().mean()),
                                    float((cols - 10).float().mean())))
    assert abs(abs(angle) - 30) < 4


@pytest.mark.parametrize("policy", ["trivial", "rand"])
def test_policies_give_each_image_its_own_operations(policy):
    images = torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    cfg = AutoAugmentConfig(policy=policy, ops=2, magnitude=15)
    out = auto_augment(images, cfg, torch.Generator().manual_seed(2), "border")
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    changed = (out - images).abs().flatten(1).amax(1) > 1e-4
    # Most images changed; with one operation of 14, a few drew the identity.
    assert changed.float().mean() > 0.6
    if policy == "trivial":
        assert not changed.all()
    again = auto_augment(images, cfg, torch.Generator().manual_seed(2), "border")
    assert torch.equal(out, again)


@pytest.mark.slow
def test_lr_finder_suggests_a_rate_inside_the_sweep_on_a_toy_problem(tmp_path, capsys):
    from visionbench.cli import main

    config = tmp_path / "toy.yaml"
    config.write_text(f"""
data: {{source: digits, split: {{val: 0.2, test: 0.2}}}}
models:
  mlp: {{preset: mlp}}
  staged:
    preset: mlp
    stages: [{{name: warm, epochs: 1, freeze: none}}]
train: {{epochs: 1, progress: quiet}}
output: {{dir: {tmp_path / 'out'}}}
""")
    assert main(["lr-find", str(config), "--model", "mlp", "--steps", "120",
                 "--start", "1e-5", "--end", "10"]) == 0
    out = capsys.readouterr().out
    record = json.loads((tmp_path / "out" / "toy" / "lr-find" / "mlp.json").read_text())
    suggestion = record["suggestion"]
    assert 1e-5 < suggestion < 10
    # The loss falls around the suggestion and is lower after it than at the start.
    rates, smoothed = record["rates"], record["smoothed"]
    at = rates.index(suggestion)
    assert smoothed[at + 1] < smoothed[at] < smoothed[0]
    assert min(smoothed) < 0.7 * smoothed[0]
    assert record["stopped_early"], "Adam at a rate of 10 should have diverged"
    assert f"--set models.mlp.train.optimizer.lr={suggestion:.2g}" in out
    assert (tmp_path / "out" / "toy" / "lr-find" / "mlp.png").stat().st_size > 10_000
    assert main(["lr-find", str(config), "--model", "staged", "--steps", "20"]) == 0
    assert "models.staged.stages[0].optimizer.lr" in capsys.readouterr().out
    assert main(["lr-find", str(config), "--model", "nope"]) == 2
    assert "not a model of this config" in capsys.readouterr().err


def test_steepest_descent_of_a_known_curve():
    rates = sweep_rates(1e-4, 1.0, 9)
    # Falls fastest between 1e-2 and 1e-1.5, bottoms at 1e-0.5, then rises.
    smoothed = [2.0, 2.0, 1.9, 1.8, 1.0, 0.8, 0.7, 0.9, 3.0]
    assert steepest(rates, smoothed) == pytest.approx(rates[4])
    assert steepest(rates, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]) is None
