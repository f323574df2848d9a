"""Policy engine and model registry: every rule allows one recipe and refuses another, with real
cards and real (tiny) weights files saved here; end-to-end refusals leave signed decisions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from forensic_vsr.audit.records import step_annotations
from forensic_vsr.errors import UsageError
from forensic_vsr.media import frame_planes
from forensic_vsr.models.arch import ResidualSR, detect_architecture
from forensic_vsr.models.registry import resolve
from forensic_vsr.policy import builtin_policy, decide, weakenings
from forensic_vsr.recipe import Recipe, decide_recipe, recipe_facts
from forensic_vsr.resources import POLICIES
from tests.helpers import chain_payloads, record, run_fvsr
from tests.helpers import step as step_of


def _weights(path: Path, seed: int, scale: int = 2) -> str:
    """A tiny network that behaves like a fidelity model: bicubic plus a small learned residual."""
    torch.manual_seed(seed)
    net = ResidualSR(scale, channels=4, blocks=1)
    with torch.no_grad():
        net.tail[0].weight.mul_(0.02)
        net.tail[0].bias.zero_()
    torch.save(net.state_dict(), path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _card(
    directory: Path,
    card_id: str,
    cls: str,
    weights: str,
    sha: str,
    *,
    scale: int = 2,
    deterministic: bool = True,
    operator: str = "bicubic-antialiased",
) -> None:
    card = {
        "id": card_id,
        "version": "test-1",
        "task": "sr",
        "scales": [scale],
        "class": cls,
        "description": f"tiny {cls} network saved by the test suite",
        "architecture": {"name": "fvsr-resnet-sr", "params": {"scale": scale, "channels": 4, "blocks": 1}},
        "weights": {"file": weights, "sha256": sha},
        "deterministic": deterministic,
        "precisions": ["fp32"],
        "degradation": {"operator": operator},
        "training": {"loss": "L1" if cls == "fidelity" else "L1+GAN"},
        "validation": None,
        "license": "Apache-2.0",
        "references": [],
    }
    (directory / f"{card_id}.json").write_text(json.dumps(card))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("models")
    _card(d, "tiny-fidelity-x2", "fidelity", "fid.pth", _weights(d / "fid.pth", 1))
    _card(d, "tiny-fidelity-x8", "fidelity", "fid8.pth", _weights(d / "fid8.pth", 7, scale=8), scale=8)
    _card(d, "tiny-generative-x2", "generative", "gen.pth", _weights(d / "gen.pth", 2))
    _card(d, "tiny-otherblur-x2", "fidelity", "ob.pth", _weights(d / "ob.pth", 6), operator="gaussian-blur-unknown")
    _card(d, "tiny-nondeterministic-x2", "generative", "nd.pth", _weights(d / "nd.pth", 3), deterministic=False)
    _weights(d / "tampered.pth", 4)
    _card(d, "tiny-tampered-x2", "fidelity", "tampered.pth", "0" * 64)
    _weights(d / "stranger.pth", 5)  # no card names it: unvetted
    return d


def _policy_file(tmp_path: Path, mode: str, **changes: object) -> Path:
    data = json.loads((POLICIES / f"{mode}.json").read_text())
    data["rules"].update(changes)
    path = tmp_path / f"custom-{mode}.json"
    path.write_text(json.dumps(data))
    return path


def _outcome(models: Path, rule: str, **recipe: object) -> tuple[str, str]:
    r = Recipe(**{"mode": "evidential", "model": "lanczos", "scale": 2, "models_dirs": (models,), **recipe})  # type: ignore[arg-type]
    _model, decision = decide_recipe(r)
    found = [x for x in decision.results if x.rule == rule]
    assert found, f"rule {rule} not evaluated"
    return found[0].outcome, found[0].reason


CASES = [  # rule, allowed recipe, refused recipe, expected words in the refusal
    ("allowed_model_classes", {"model": "tiny-generative-x2", "mode": "investigative"}, {"model": "tiny-generative-x2"}, "is generative"),
    (
        "allow_unvetted_weights",
        {"model": None, "weights": "stranger.pth", "mode": "investigative"},
        {"model": None, "weights": "stranger.pth"},
        "are refused",
    ),
    (
        "weights_integrity",
        {"model": "tiny-fidelity-x2", "mode": "investigative"},
        {"model": "tiny-tampered-x2", "mode": "investigative"},
        "do NOT match",
    ),
    ("max_scale", {"scale": 4}, {"model": "tiny-fidelity-x8", "scale": 8}, "at most x4"),
    ("data_consistency", {"model": "tiny-fidelity-x2"}, {"model": "tiny-otherblur-x2"}, "not available"),
    (
        "determinism_required",
        {"model": "tiny-generative-x2", "mode": "demonstrative"},
        {"model": "tiny-nondeterministic-x2", "mode": "demonstrative"},
        "not established",
    ),
    ("allowed_precisions", {"precision": "fp32"}, {"precision": "fp16", "model": "tiny-fidelity-x2", "device": "cuda"}, "precision fp16"),
    ("uncertainty_maps_required", {}, {"maps": False}, "--no-maps"),
    ("report_required", {}, {"report": False}, "--no-report"),
]


@pytest.mark.parametrize(("rule", "good", "bad", "why"), CASES, ids=[c[0] for c in CASES])
def test_rule_allows_one_and_refuses_another(rule: str, good: dict, bad: dict, why: str, models: Path) -> None:
    for recipe in (good, bad):
        if "weights" in recipe:
            recipe["weights"] = models / str(recipe["weights"])
    outcome, _ = _outcome(models, rule, **good)
    assert outcome in ("pass", "not-applicable")
    outcome, reason = _outcome(models, rule, **bad)
    assert outcome == "fail" and why in reason, reason


def test_a_scale_the_model_cannot_do_is_a_usage_error_and_still_a_rule(models: Path) -> None:
    """decide_recipe refuses it before any bundle (issue 16); the policy's model_scale rule still
    refuses it when a recorded recipe is judged again (as fvsr verify does)."""
    r = Recipe("investigative", "tiny-fidelity-x2", 3, models_dirs=(models,))
    with pytest.raises(UsageError, match="--scale 3: tiny-fidelity-x2 does x2 only"):
        decide_recipe(r)
    decision = decide(recipe_facts(r, resolve("tiny-fidelity-x2", None, [models])))
    found = [x for x in decision.results if x.rule == "model_scale"]
    assert found and found[0].outcome == "fail" and "supports x2" in found[0].reason
    assert _outcome(models, "model_scale", scale=3)[0] == "pass"


def test_policy_file_rules(models: Path, tmp_path: Path) -> None:
    cases = [
        ("allowed_operations", "evidential", {"allowed_operations": []}, "allowed: "),
        ("allowed_devices", "evidential", {"allowed_devices": ["cuda"]}, "device cpu"),
        ("output_label", "investigative", {"output_label": None}, "must carry a label"),
    ]
    for rule, mode, change, why in cases:
        assert _outcome(models, rule, mode=mode)[0] in ("pass", "not-applicable")
        outcome, reason = _outcome(models, rule, mode=mode, policy=_policy_file(tmp_path, mode, **change))
        assert outcome == "fail" and why in reason, (rule, reason)
    outcome, reason = _outcome(models, "mode", mode="evidential", policy=_policy_file(tmp_path, "investigative"))
    assert outcome == "fail" and "written for investigative" in reason


def test_weaker_evidential_policy_needs_a_recorded_override(models: Path, tmp_path: Path) -> None:
    weak = _policy_file(tmp_path, "evidential", allowed_model_classes=["classical", "fidelity", "generative"], max_scale=8)
    outcome, reason = _outcome(models, "policy_strength", policy=weak)
    assert outcome == "fail" and "allowed_model_classes adds generative" in reason and "max_scale 8 > 4" in reason
    r = Recipe("evidential", "lanczos", 2, models_dirs=(models,), policy=weak, override_policy="lab SOP 12, approved by QA")
    _m, decision = decide_recipe(r)
    assert decision.allowed and decision.override == {
        "reason": "lab SOP 12, approved by QA",
        "weakenings": ["allowed_model_classes adds generative", "max_scale 8 > 4"],
    }
    strict = _policy_file(tmp_path, "evidential", max_scale=2)
    assert _outcome(models, "policy_strength", policy=strict)[0] == "pass"


def test_weakenings_of_builtin_policies() -> None:
    ev, inv = builtin_policy("evidential").rules, builtin_policy("investigative").rules
    assert weakenings(ev, ev) == []
    assert "allow_unvetted_weights is true" in weakenings(ev, inv)
    assert weakenings(inv, ev) == ["output_label is removed"]


def test_invalid_policy_and_card_are_refused_clearly(models: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"id": "x", "mode": "evidential"}))
    with pytest.raises(UsageError, match="policy invalid"):
        decide_recipe(Recipe("evidential", "lanczos", 2, policy=bad))
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "broken.json").write_text(json.dumps({"id": "broken"}))
    with pytest.raises(UsageError, match="model card invalid"):
        decide_recipe(Recipe("evidential", "lanczos", 2, models_dirs=(cards,)))


class Payload:
    """Not a tensor: a pickle carrying this must never be loaded."""


def test_weights_are_loaded_safely_and_detected(models: Path, tmp_path: Path) -> None:
    assert detect_architecture(models / "stranger.pth") == {"name": "fvsr-resnet-sr", "params": {"scale": 2, "channels": 4, "blocks": 1}}
    evil = tmp_path / "evil.pth"
    torch.save({"head.weight": Payload()}, evil)
    with pytest.raises(UsageError, match="not a loadable weights file"):
        detect_architecture(evil)


def test_models_list_and_show(models: Path) -> None:
    out = run_fvsr("models", "list", "--models-dir", models, check=True).stdout
    assert "lanczos" in out and "tiny-generative-x2" in out and "generative" in out
    card = json.loads(run_fvsr("models", "show", "bicubic", check=True).stdout)
    assert card["class"] == "classical" and card["_card"]["sha256"]


def test_policy_explain_cli(models: Path) -> None:
    ok = run_fvsr("policy", "explain", "--mode", "evidential", "--model", "bicubic", "--scale", "2")
    assert ok.returncode == 0 and "ALLOWED" in ok.stdout and "sha256" in ok.stdout
    bad = run_fvsr("policy", "explain", "--mode", "evidential", "--weights", models / "stranger.pth")
    assert bad.returncode == 3 and "FAIL            allow_unvetted_weights" in bad.stdout and "REFUSED" in bad.stdout


@pytest.mark.parametrize("how", ["generative", "unvetted"])
def test_evidential_refusal_end_to_end_and_investigative_run(how: str, models: Path, synth, keypair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = synth("odd_yuv420p")
    model_args = ["--model", "tiny-generative-x2"] if how == "generative" else ["--weights", str(models / "stranger.pth")]
    common = ["--key", keypair[0], "--models-dir", models, "-q", *model_args]
    refused = run_fvsr("enhance", src, "-o", tmp_path / "refused", "--mode", "evidential", *common)
    assert refused.returncode == 3
    rule = "allowed_model_classes" if how == "generative" else "allow_unvetted_weights"
    assert rule in refused.stderr and "Traceback" not in refused.stderr
    assert sorted(p.name for p in (tmp_path / "refused").iterdir()) == ["chain.jsonl", "manifest.json"]
    assert [p["type"] for p in chain_payloads(tmp_path / "refused")] == ["policy.decision", "run.aborted"]
    decision = record(tmp_path / "refused", "policy.decision")
    assert decision["allowed"] is False and decision["policy"]["sha256"] == builtin_policy("evidential").sha256
    verified = run_fvsr("verify", tmp_path / "refused", "--pubkey", keypair[1], "--models-dir", models)
    assert verified.returncode == 0 and "signed refusal" in verified.stdout, verified.stdout

    ran = run_fvsr("enhance", src, "-o", tmp_path / "ran", "--mode", "investigative", *common)
    assert ran.returncode == 0, ran.stderr
    assert run_fvsr("verify", tmp_path / "ran", "--pubkey", keypair[1], "--models-dir", models).returncode == 0
    label = builtin_policy("investigative").rules["output_label"]
    with av.open(str(tmp_path / "ran/output/master.mkv")) as c:
        assert c.metadata.get("FVSR_LABEL") == label and c.metadata.get("FVSR_MODE") == "investigative"
    with av.open(str(tmp_path / "ran/output/preview.mp4")) as c:
        y = frame_planes(next(c.decode(video=0)))[0]
    band = y[:12]
    assert np.median(band) < 40 and band.max() > 150  # dark band with bright text burned in
    step = record(tmp_path / "ran", "step.run")
    deps = {d["name"]: d for d in step["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert any(name.startswith("model-weights:") for name in deps)
    assert step_of(tmp_path / "ran")["label"] == label


def test_evidential_fidelity_model_runs_with_data_consistency(models: Path, synth, keypair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = synth("yuv420p10le")
    out = tmp_path / "b"
    proc = run_fvsr("enhance", src, "-o", out, "--model", "tiny-fidelity-x2", "--models-dir", models, "--key", keypair[0], "-q")
    assert proc.returncode == 0, proc.stderr
    dc = step_of(out)["data_consistency"]
    assert dc["operator"] == "bicubic-antialiased" and len(dc["rms_residual_per_frame"]) == 12
    assert 0 < dc["rms_residual_max"] <= 0.5 and dc["tolerance"] == 0.5
    assert run_fvsr("verify", out, "--pubkey", keypair[1], "--evidence", src).returncode == 1  # the auditor lacks the lab's card
    assert run_fvsr("verify", out, "--pubkey", keypair[1], "--evidence", src, "--models-dir", models).returncode == 0
    reproduced = run_fvsr("verify", out, "--pubkey", keypair[1], "--evidence", src, "--models-dir", models, "--reproduce")
    assert reproduced.returncode == 0, reproduced.stdout


@pytest.mark.parametrize(
    ("recipe", "words"),
    [
        ({"precision": "fp16"}, "only learned models run at reduced precision"),
        ({"precision": "bf16", "model": "tiny-fidelity-x2"}, "needs --device cuda"),
        ({"precision": "fp8"}, "use one of fp32, fp16, bf16"),
    ],
)
def test_precision_that_would_not_run_is_refused_not_recorded(recipe: dict, words: str, models: Path) -> None:
    """--precision is applied (fp16/bf16 networks on CUDA) or refused: a record never says a
    precision that did not run."""
    r = Recipe(**{"mode": "evidential", "model": "lanczos", "scale": 2, "models_dirs": (models,), **recipe})  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=words):
        decide_recipe(r)


def test_device_recorded_is_the_device_that_ran(tmp_path: Path, carphone: Path, keypair: tuple[Path, Path]) -> None:
    """Classical interpolation runs on the CPU whatever --device says, and the records say cpu."""
    out = tmp_path / "b"
    run_fvsr("enhance", carphone, "-o", out, "--key", keypair[0], "--frames", "0:2", "--device", "auto", "-q", check=True)
    step = record(out, "step.run")
    annotations = step_annotations(step)
    assert annotations["devices"] == ["cpu"]
    assert step["predicate"]["buildDefinition"]["internalParameters"]["device"] == "cpu"
    assert step["predicate"]["buildDefinition"]["externalParameters"]["device"] == "auto"  # what was asked, as asked
