"""Each knob declared once (training.config): parsed from `--set` text, checked, explained."""

from __future__ import annotations

import pytest

from training.config import TrainConfig, knob_help, knobs
from training.errors import TrainingError


def test_set_text_is_parsed_into_the_nested_config() -> None:
    config = TrainConfig.from_knobs({"layers": "[8,11,15]", "coreset": "0.05", "epochs": "3",
                                     "defect_split": "[0.6,0.1,0.3]", "resize": "letterbox",
                                     "max_minutes": "2", "score_top": 0})
    assert config.layers == (8, 11, 15) and config.coreset.fraction == 0.05
    assert config.classifier.max_epochs == 3 and config.classifier.max_minutes == 2.0
    assert config.split.classifier_defect_split == (0.6, 0.1, 0.3)
    assert config.resize == "letterbox" and config.patchcore.score_top_fraction == 0.0


@pytest.mark.parametrize(("values", "message"), [
    ({"image_size": "abc"}, "image_size=abc: expected an integer"),
    ({"image_size": "8"}, "must be at least 32"),
    ({"resize": "fill"}, "choose one of stretch, letterbox, center_crop"),
    ({"layers": "8"}, "expected a list of integers"),
    ({"coreset_size": "1"}, "unknown knob 'coreset_size'"),
    ({"defect_split": "[0.5,0.5,0.5]"}, "summing to 1"),
])
def test_bad_values_are_one_line_errors(values: dict[str, str], message: str) -> None:
    with pytest.raises(TrainingError, match=message) as info:
        TrainConfig.from_knobs(values)
    assert "\n" not in str(info.value)


def test_every_knob_has_help_and_defaults_are_reproducible() -> None:
    lines = knob_help()
    assert len(lines) == len(knobs()) and all(": " in line for line in lines)
    # The default stopping rule is epochs and patience: no wall-clock budget.
    assert TrainConfig().classifier.max_minutes is None


def test_tiled_models_score_their_top_tenth_unless_told_otherwise() -> None:
    """Whole frames score the whole map's mean (the tail study); a tile is mostly normal
    surface around a small defect, so a tiled model keeps the top-10% score by default."""
    assert TrainConfig.from_knobs({}).patchcore.score_top_fraction == 1.0
    assert TrainConfig.from_knobs({"tile": 448}).patchcore.score_top_fraction == 0.1
    told = TrainConfig.from_knobs({"tile": "448", "score_top": "1"})
    assert told.patchcore.score_top_fraction == 1.0
