"""Typed records round-trip: Recipe, RecipeFacts and StepRecord each have one `to_json` and one
`from_json`, and what a bundle records reads back into the same value (property tests, and the
records of a real bundle and of the golden format-1 bundle)."""

from __future__ import annotations

import base64
import json
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forensic_vsr.audit.records import step_annotations
from forensic_vsr.audit.step_record import FrameRange, StepRecord
from forensic_vsr.models.registry import resolve
from forensic_vsr.policy import MODES, RecipeFacts
from forensic_vsr.recipe import Recipe, decide_recipe, recipe_facts

MAIN = [("lanczos", 2), ("bicubic", 3), ("fidelity-sr-x2", 2), ("fidelity-sr-x4", 4), ("mfsr-x2", 2), ("deblur", 1), ("integrate", 1)]
PRE = ["deblur", "stabilise", "fidelity-restore"]
names = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF, blacklist_characters="\x7f"), min_size=1, max_size=12)
paths = st.builds(lambda parts: Path("/", *parts), st.lists(st.text("abcxyz-_.0123", min_size=1, max_size=8), min_size=1, max_size=3))


@st.composite
def recipes(draw: st.DrawFn) -> Recipe:
    model, scale = draw(st.sampled_from(MAIN))
    start = draw(st.integers(0, 1000))
    pre_ops = tuple(draw(st.lists(st.sampled_from(PRE), max_size=2, unique=True))) if scale > 1 else ()
    return Recipe(
        mode=draw(st.sampled_from(MODES)),
        model=model,
        scale=scale,
        frames=draw(st.none() | st.just((start, -1)) | st.integers(start + 1, 5000).map(lambda b: (start, b))),
        device=draw(st.sampled_from(["cpu", "cuda", "auto"])),
        accept_decode_errors=draw(st.booleans()),
        precision=draw(st.sampled_from(["fp32", "fp16", "bf16"])),
        policy=draw(st.none() | paths),
        override_policy=draw(st.none() | names),
        models_dirs=() if pre_ops else tuple(draw(st.lists(paths, max_size=2))),  # pre-operations resolve in them
        maps=draw(st.booleans()),
        stills=tuple(draw(st.lists(st.integers(0, 999), max_size=3))),
        report=draw(st.booleans()),
        tile=draw(st.none() | st.sampled_from([0, 128, 256])),
        batch=draw(st.none() | st.integers(1, 16)),
        psf=draw(st.none() | st.sampled_from(["motion:7,30", "defocus:2.5"])) if model == "deblur" else None,
        roi=draw(st.none() | st.tuples(st.integers(0, 99), st.integers(0, 99), st.integers(16, 99), st.integers(16, 99)))
        if model == "deblur"
        else None,
        deinterlace=draw(st.sampled_from(["fields", "blend"])),
        registration=draw(st.sampled_from(["static", "whole"])),
        pre_ops=pre_ops,
    )


@settings(max_examples=60, deadline=None)
@given(recipes())
def test_recipe_round_trips_through_its_record(recipe: Recipe) -> None:
    model = resolve(recipe.model, None, [])
    recorded = recipe.to_json(model)
    assert Recipe.from_json(json.loads(json.dumps(recorded))) == recipe
    assert Recipe.from_json(recorded).to_json(model) == recorded


@st.composite
def facts(draw: st.DrawFn) -> RecipeFacts:
    opt = lambda s: st.none() | s  # noqa: E731
    return RecipeFacts(
        mode=draw(st.sampled_from(MODES)),
        operations=tuple(draw(st.lists(st.sampled_from(["upscale", "deblur", "integrate"]), min_size=1, max_size=2))),
        model_id=draw(names),
        model_class=draw(st.sampled_from(["classical", "fidelity", "generative", "unvetted"])),
        neural=draw(st.booleans()),
        weights_verified=draw(opt(st.booleans())),
        card_scales=draw(opt(st.lists(st.integers(1, 8), min_size=1, max_size=3).map(tuple))),
        card_deterministic=draw(opt(st.booleans())),
        card_precisions=draw(opt(st.lists(st.sampled_from(["fp32", "fp16", "bf16"]), min_size=1, max_size=3).map(tuple))),
        scale=draw(st.integers(1, 8)),
        device=draw(st.sampled_from(["cpu", "cuda"])),
        precision=draw(st.sampled_from(["fp32", "fp16"])),
        data_consistency_available=draw(st.booleans()),
        maps=draw(st.booleans()),
        report=draw(st.booleans()),
    )


@settings(max_examples=80, deadline=None)
@given(facts())
def test_recipe_facts_round_trip(f: RecipeFacts) -> None:
    assert RecipeFacts.from_json(json.loads(json.dumps(f.to_json()))) == f


def test_recipe_facts_of_a_shipped_model_round_trip_and_unknown_facts_are_refused() -> None:
    recipe = Recipe("evidential", "fidelity-sr-x2", 2)
    model, _decision = decide_recipe(recipe)
    f = recipe_facts(recipe, model)
    assert RecipeFacts.from_json(f.to_json()) == f
    assert f.to_json()["card_scales"] == [2]
    with pytest.raises(ValueError, match="unknown recipe facts: colour"):
        RecipeFacts.from_json({**f.to_json(), "colour": "red"})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-9, 9) | st.text(max_size=4), lambda c: st.lists(c, max_size=3), max_leaves=6
)
objects = st.dictionaries(st.text("abcdef", min_size=1, max_size=4), json_values, max_size=3)


@st.composite
def steps(draw: st.DrawFn) -> StepRecord:
    start = draw(st.integers(0, 100))
    maybe = st.none() | objects
    return StepRecord(
        frames=FrameRange(start, start + draw(st.integers(1, 50)), draw(st.integers(1, 100))),
        frames_per_input=draw(st.integers(1, 2)),
        pix_fmt_in=draw(st.sampled_from(["yuv420p", "gray", "rgb24"])),
        pix_fmt_out=draw(st.sampled_from(["yuv420p", "gray", "bgr0"])),
        width_out=draw(st.integers(1, 9000)),
        height_out=draw(st.integers(1, 9000)),
        chroma_siting_assumed=draw(st.sampled_from(["left", "center"])),
        luma=draw(st.none() | names),
        planes_classical=draw(names),
        label=draw(st.none() | names),
        data_consistency=draw(maybe),
        lossless_round_trip=draw(objects),
        runner=draw(maybe),
        multiframe=draw(maybe),
        deblur=draw(maybe),
        deinterlace=draw(maybe),
        temporal=draw(maybe),
        pre_operations=tuple(draw(st.lists(objects, max_size=2))),
        temporal_consistency=draw(maybe),
        maps=draw(maybe),
        devices=tuple(draw(st.lists(st.sampled_from(["cpu", "cuda:0"]), max_size=2, unique=True))),
    )


@settings(max_examples=80, deadline=None)
@given(steps())
def test_step_record_round_trips(step: StepRecord) -> None:
    assert StepRecord.from_json(json.loads(json.dumps(step.to_json()))) == step


def _chain_bodies(chain: Path) -> dict[str, dict]:
    out = {}
    for line in chain.read_text().splitlines():
        payload = json.loads(base64.b64decode(json.loads(line)["payload"]))
        out.setdefault(payload["type"], payload["body"])
    return out


def test_recorded_step_and_recipe_read_back_exactly(carphone_bundle: Path, tmp_path: Path) -> None:
    """What main writes now, and what the previous release wrote (golden format 1), read back into
    the typed records and give the recorded JSON again, key for key."""
    with tarfile.open(Path(__file__).parent / "golden" / "format1.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    for chain in (carphone_bundle / "chain.jsonl", tmp_path / "format1-lanczos-x2" / "chain.jsonl"):
        bodies = _chain_bodies(chain)
        recorded_step = step_annotations(bodies["step.run"])
        assert StepRecord.from_json(recorded_step).to_json() == recorded_step
        params = bodies["step.run"]["predicate"]["buildDefinition"]["externalParameters"]
        model = resolve(params["operations"][-1]["model"], None, [])
        assert Recipe.from_json(params).to_json(model) == params
    with pytest.raises(ValueError, match="unknown"):
        StepRecord.from_json({**recorded_step, "invented": 1})
