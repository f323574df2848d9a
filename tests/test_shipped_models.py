"""The models we ship: every card loads, every weights file matches its card, the evidential
policy admits exactly the fidelity models that can be projected and the classical operations,
and refuses the generative one and the x1 learned restoration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forensic_vsr.models.registry import registry, resolve
from forensic_vsr.recipe import Recipe, decide_recipe

MODELS = Path(__file__).resolve().parent.parent / "models"


def test_every_card_loads_and_its_weights_match() -> None:
    cards = registry([])
    expected = {
        "bicubic", "lanczos", "fidelity-sr-x2", "fidelity-sr-x4", "fidelity-restore", "perceptual-sr-x4",
        "mfsr-x2", "deblur", "deinterlace", "stabilise", "integrate",
    }  # fmt: skip
    assert expected <= set(cards)
    for card_id in expected:
        model = resolve(card_id, None)
        assert model.weights_verified in (True, None), card_id  # None: no weights (classical)


@pytest.mark.parametrize(
    ("model_id", "scale", "allowed"),
    [
        ("fidelity-sr-x2", 2, True),
        ("fidelity-sr-x4", 4, True),
        ("mfsr-x2", 2, True),
        ("deblur", 1, True),
        ("deinterlace", 1, True),
        ("stabilise", 1, True),
        ("integrate", 1, True),
        ("perceptual-sr-x4", 4, False),
        ("fidelity-restore", 1, False),
    ],
)
def test_evidential_policy_on_the_shipped_models(model_id: str, scale: int, allowed: bool) -> None:
    _model, decision = decide_recipe(Recipe("evidential", model_id, scale))
    assert decision.allowed is allowed, [f"{r.rule}: {r.reason}" for r in decision.failures]
    if model_id == "perceptual-sr-x4":
        assert {r.rule for r in decision.failures} == {"allowed_model_classes"}
    _model, investigative = decide_recipe(Recipe("investigative", model_id, scale))
    assert investigative.allowed


def test_generative_model_starts_from_the_shipped_fidelity_weights() -> None:
    card = json.loads((MODELS / "perceptual-sr-x4.json").read_text())
    x4 = json.loads((MODELS / "fidelity-sr-x4.json").read_text())
    assert card["class"] == "generative"
    assert card["training"]["init"]["sha256"] == x4["weights"]["sha256"]
    assert "adversarial" in card["training"]["loss"]
