"""Explanation maps look where the evidence is, and the deletion score can tell."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from visionbench.errors import UserError
from visionbench.evaluate.explain import (
    METHODS,
    ExplainSettings,
    deletion_curve,
    deletion_score,
    explain,
    find_layer,
)


def _squares(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise images; class 1 has a bright 6x6 square somewhere. Returns images, labels and
    the square's mask."""
    images = torch.rand(n, 1, 32, 32, generator=gen) * 0.3
    labels = torch.arange(n) % 2
    masks = torch.zeros(n, 32, 32, dtype=torch.bool)
    corners = torch.randint(2, 24, (n, 2), generator=gen)
    for i in range(n):
        if labels[i]:
            top, left = corners[i].tolist()
            images[i, 0, top : top + 6, left : left + 6] = 1.0
            masks[i, top : top + 6, left : left + 6] = True
    return images, labels, masks


@pytest.fixture(scope="module")
def square_model() -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(16, 2),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        images, labels, _ = _squares(64, gen)
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    images, labels, _ = _squares(200, gen)
    assert (model(images).argmax(1) == labels).float().mean() > 0.95, "the model must learn"
    return model.eval()


def test_gradcam_puts_most_of_its_mass_on_the_square(square_model):
    images, labels, masks = _squares(40, torch.Generator().manual_seed(9))
    positives = labels == 1
    maps = explain(square_model, images[positives], labels[positives], "gradcam",
                   ExplainSettings())
    inside = (maps * masks[positives]).flatten(1).sum(1) / maps.flatten(1).sum(1)
    # The square covers 36 of 1,024 pixels (3.5 %); its neighbourhood is what a 3x3x2 conv
    # stack sees, so count a 2-pixel margin as on target.
    grown = nn.functional.max_pool2d(masks[positives].float()[:, None], 5, 1, 2)[:, 0] > 0
    near = (maps * grown).flatten(1).sum(1) / maps.flatten(1).sum(1)
    assert inside.median() > 0.8 and near.median() > 0.9


@pytest.mark.parametrize("method", sorted(METHODS.names()))
def test_every_method_gives_one_normalised_map_per_image(square_model, method):
    images, labels, _ = _squares(6, torch.Generator().manual_seed(3))
    maps = explain(square_model, images, labels, method,
                   ExplainSettings(steps=8, samples=4, batch_size=4))
    assert maps.shape == (6, 32, 32)
    assert maps.min() >= 0 and torch.allclose(maps.flatten(1).amax(1), torch.ones(6))


def test_guided_backprop_raises_no_warning(square_model):
    import warnings

    images, labels, _ = _squares(4, torch.Generator().manual_seed(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        explain(square_model, images, labels, "guided_backprop", ExplainSettings())


def test_deletion_score_ranks_a_real_map_above_a_random_one(square_model):
    images, labels, _ = _squares(20, torch.Generator().manual_seed(5))
    positives = labels == 1
    x, y = images[positives], labels[positives]
    real = explain(square_model, x, y, "gradcam", ExplainSettings())
    noise = torch.rand(real.shape, generator=torch.Generator().manual_seed(1))
    real_score = deletion_score(deletion_curve(square_model, x, y, real)).mean()
    random_score = deletion_score(deletion_curve(square_model, x, y, noise)).mean()
    assert real_score < random_score - 0.3


def test_layer_lookup():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3))
    assert find_layer(model, None)[0] == "2"
    assert find_layer(model, "0")[0] == "0"
    with pytest.raises(UserError, match="no layer 'nope'"):
        find_layer(model, "nope")
    with pytest.raises(UserError, match="no convolution"):
        find_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), None)


def test_picked_images_mix_correct_and_mistaken_per_class():
    import numpy as np

    from visionbench.evaluate.explain import pick_images

    y = np.array([0, 0, 0, 1, 1, 1])
    prob = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7], [0.1, 0.9], [0.7, 0.3]])
    # Queues: class 0 right [0, 1], class 0 wrong [2], class 1 right [4, 3], class 1 wrong [5].
    assert pick_images(y, prob, 4) == [0, 2, 4, 5]
    assert pick_images(y, prob, 10) == [0, 2, 4, 5, 1, 3]


def test_maps_of_an_upsampling_model_are_drawn_over_the_image_at_its_input_size(tmp_path):
    import numpy as np

    from visionbench.evaluate.model_explanations import explain_images
    from visionbench.rundir.layout import RunFolder
    from visionbench.runtime.pipeline import InputPipeline
    from visionbench.runtime.trained import LoadedModel
    from visionbench.schemas.evaluate import ExplainConfig
    from visionbench.schemas.inputs import InputSpec

    spec = InputSpec(size=(64, 64), channels=1, mean=(0.5,), std=(0.25,))
    pipeline = InputPipeline(spec, torch.device("cpu"), channels_last=False)
    pictures = np.random.default_rng(0).integers(0, 255, (3, 16, 16, 1), dtype=np.uint8)
    seen = pipeline.at_model_size(torch.from_numpy(pictures).permute(0, 3, 1, 2))
    assert seen.shape == (3, 1, 64, 64) and seen.min() >= 0 and seen.max() <= 1
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                           nn.Flatten(), nn.Linear(4, 2)).eval()
    folder = RunFolder(tmp_path).model("up")
    folder.path.mkdir(parents=True)
    found = explain_images(LoadedModel(module, pipeline, torch.device("cpu")), pictures,
                           ["a", "b", "c"], ["1", "2", "3"], None,
                           ExplainConfig(methods=["gradcam", "occlusion"], steps=4, samples=2),
                           folder)
    assert found.methods == ["gradcam", "occlusion"]
    assert folder.picture("explanations").is_file()


def test_a_map_of_another_size_than_its_image_is_refused():
    import numpy as np

    from visionbench.evaluate.explain import explanation_figure

    with pytest.raises(ValueError, match="draw the images at the model's size"):
        explanation_figure(np.zeros((1, 16, 16, 1), np.uint8),
                           {"gradcam": np.zeros((1, 64, 64))}, ["x"], Path("unused.png"))
