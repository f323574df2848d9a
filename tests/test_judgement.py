"""`fvsr verify` re-judges, it does not trust (issue 15).

Each lie below is what an examiner could sign with their own, valid key: the records are edited,
then the whole chain, its attestation, the report and the checkpoint are written again with the
real writer and the examiner's real key, so that every signature, link and digest check passes.
Only the re-judging check that the lie is about may FAIL, with and without --reproduce."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import PASSPHRASE, run_fvsr

from forensic_vsr import layout
from forensic_vsr.audit.chain import ChainWriter, read_chain
from forensic_vsr.audit.keys import load_public_key, load_signer
from forensic_vsr.audit.records import external_parameters, step_annotations
from forensic_vsr.audit.step_record import StepRecord
from forensic_vsr.audit.verify import verify_bundle
from forensic_vsr.bundle.report import write_report
from forensic_vsr.bundle.statement import model_dependencies
from forensic_vsr.bundle.writer import BundleDir, write_manifest
from forensic_vsr.judgement import judgement_checks
from forensic_vsr.models.registry import resolve
from forensic_vsr.recipe import Examiner, Recipe
from forensic_vsr.resources import MODELS, POLICIES

CLIP = Path(__file__).resolve().parent.parent / "data" / "clips" / "carphone_distorted.mp4"
FAKE = "0123456789abcdef" * 4
Bodies = dict[str, dict[str, Any]]
REWRITTEN = (layout.CHAIN, layout.MANIFEST, layout.REPORT, "stills", "attestations")


def _enhance(out: Path, key: Path, *args: str | Path) -> Path:
    run_fvsr("enhance", CLIP, "-o", out, "--key", key, "-q", *args, check=True)
    return out


def _lab_cards(directory: Path, description_suffix: str = "") -> Path:
    """A lab's card directory: the shipped fidelity-sr-x2 network under the lab's own id."""
    directory.mkdir()
    card = json.loads((MODELS / "fidelity-sr-x2.json").read_text())
    card |= {"id": "lab-sr-x2", "description": card["description"] + description_suffix}
    (directory / "lab-sr-x2.json").write_text(json.dumps(card))
    for weights in MODELS.glob("fidelity-sr-x2*.pth"):
        shutil.copy(weights, directory / weights.name)
    return directory


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, keypair: tuple[Path, Path]) -> dict[str, Path]:
    """One honest bundle of each kind the lies start from (and the lab's cards, "lab")."""
    d = tmp_path_factory.mktemp("honest")
    key = keypair[0]
    refused = run_fvsr("enhance", CLIP, "-o", d / "refused", "--key", key, "-q", "--model", "perceptual-sr-x4", "--scale", "4")
    assert refused.returncode == 3, refused.stderr
    lab = _lab_cards(d / "lab")
    return {
        "lanczos": _enhance(d / "lanczos", key, "--frames", "0:2"),
        "fidelity": _enhance(d / "fidelity", key, "--frames", "0:1", "--models-dir", lab, "--model", "lab-sr-x2", "--scale", "2"),
        "refused": d / "refused",
        "lab": lab,
    }


def resign(src: Path, dst: Path, keypair: tuple[Path, Path], edit: Callable[[Bodies], None], drop: tuple[str, ...] = ()) -> Path:
    """`src` with its records edited by `edit`, written again as the examiner would: the same
    writer, the examiner's key, a fresh report and checkpoint. Files under `drop` are left out."""
    view, checks = read_chain(src, load_public_key(keypair[1]))
    assert all(c.ok for c in checks)
    payloads = [copy.deepcopy(p) for p in view.payloads if p is not None]
    bodies: Bodies = {p["type"]: p["body"] for p in payloads}
    edit(bodies)
    actor = payloads[0]["actor"]["name"]
    signer = load_signer(keypair[0], PASSPHRASE.encode(), actor)
    bundle = BundleDir(dst, with_outputs="output.write" in bodies)
    for f in sorted(src.rglob("*")):
        name = f.relative_to(src).as_posix()
        if f.is_file() and not name.startswith(REWRITTEN + drop):
            (bundle.dir / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, bundle.dir / name)
    chain = ChainWriter(bundle.path(layout.CHAIN), signer, actor)
    for p in payloads:
        kind = p["type"]
        if kind not in bodies:
            continue
        if kind == "report.generate":
            statement = bodies["step.run"]
            recipe = Recipe.from_json(external_parameters(statement))
            model = resolve(recipe.model, None, list(recipe.models_dirs))
            write_report(
                bundle, chain, CLIP, Examiner(actor, None, signer), model, recipe, StepRecord.from_json(step_annotations(statement))
            )
        elif "attestation" in p:
            chain.append_statement(kind, bodies[kind])
        else:
            body = {**bodies[kind], "records": len(chain.digests) + 1} if kind in ("run.complete", "run.aborted") else bodies[kind]
            chain.append(kind, body)
    write_manifest(bundle, chain)
    chain.close()
    bundle.commit()
    return dst


def failing(proc: Any) -> dict[str, list[str]]:
    """The FAIL lines of `fvsr verify`, by check name."""
    out: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        status, _, rest = line.partition(" ")
        if status == "FAIL":
            name, _, reason = rest.strip().partition(": ")
            out.setdefault(name, []).append(reason)
    return out


def _verify(bundle: Path, keypair: tuple[Path, Path], *args: str | Path) -> Any:
    return run_fvsr("verify", bundle, "--pubkey", keypair[1], *args)


# the lies: (honest bundle, edit of the records, files left out, the one check that must FAIL, words of its FAIL line)


def _generative_as_evidential(b: Bodies) -> None:
    """perceptual-sr-x4 (generative) recorded as an allowed evidential run, consistently
    everywhere: decision, recipe, dependencies, even data-consistency residuals."""
    m = resolve("perceptual-sr-x4", None)
    op = {"op": "upscale", "model": m.id, "scale": 2, "weights_sha256": m.weights_sha256}
    statement = b["step.run"]
    b["policy.decision"]["model"] = m.to_json()
    b["policy.decision"]["recipe"]["operations"] = [op]
    external_parameters(statement)["operations"] = [op]
    deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    deps[:] = [d for d in deps if not d["name"].startswith("model-")] + model_dependencies(m)
    step_annotations(statement)["data_consistency"] = {
        "operator": "bicubic-antialiased",
        "plane": "luma",
        "projection": "x + A_pinv(y - A x), separable closed form",
        "units": "8-bit levels",
        "rms_residual_per_frame": [0.1, 0.1],
        "rms_residual_max": 0.1,
        "tolerance": 0.5,
    }


def _decision_only(b: Bodies) -> None:
    m = resolve("perceptual-sr-x4", None)
    b["policy.decision"]["model"] = m.to_json()
    b["policy.decision"]["recipe"]["operations"] = [{"op": "upscale", "model": m.id, "scale": 2, "weights_sha256": m.weights_sha256}]


def _other_weights(b: Bodies) -> None:
    statement = b["step.run"]
    b["policy.decision"]["model"]["weights_sha256"] = FAKE
    for ops in (b["policy.decision"]["recipe"]["operations"], external_parameters(statement)["operations"]):
        ops[-1]["weights_sha256"] = FAKE
    for dep in statement["predicate"]["buildDefinition"]["resolvedDependencies"]:
        if dep["name"].startswith("model-weights:"):
            dep["digest"]["sha256"] = FAKE


def _other_card(b: Bodies) -> None:
    b["policy.decision"]["model"]["card"]["sha256"] = FAKE
    for dep in b["step.run"]["predicate"]["buildDefinition"]["resolvedDependencies"]:
        if dep["name"].startswith("model-card:"):
            dep["digest"]["sha256"] = FAKE


def _unknown_policy(b: Bodies) -> None:
    b["policy.decision"]["policy"]["sha256"] = FAKE


def _other_evidence(b: Bodies) -> None:
    b["policy.decision"]["evidence"]["sha256"] = FAKE


def _no_report(b: Bodies) -> None:
    del b["report.generate"]


def _no_maps(b: Bodies) -> None:
    statement = b["step.run"]
    step_annotations(statement)["maps"] = None
    statement["subject"] = [s for s in statement["subject"] if not s["name"].startswith(("maps/", "frames:maps/"))]
    b["output.write"]["files"] = [f for f in b["output.write"]["files"] if not f["name"].startswith("maps/")]


LIES: dict[str, tuple[str, Callable[[Bodies], None], tuple[str, ...], str, str]] = {
    "generative-as-evidential": ("lanczos", _generative_as_evidential, (), "policy.rejudged", "rule allowed_model_classes: recorded pass"),
    "decision-only-edited": ("lanczos", _decision_only, (), "policy.rejudged", "step.run ran another recipe"),
    "weights-not-the-card's": ("fidelity", _other_weights, (), "models.cards", "its card names f209c8576f1090e8"),
    "card-not-the-shipped-one": ("lanczos", _other_card, (), "models.cards", "the auditor's card says 'ade6e1a5c488fa2b"),
    "policy-digest-unknown": ("lanczos", _unknown_policy, (), "policy.recorded", f"policy sha256 {FAKE}, source builtin:evidential"),
    "decision-for-other-evidence": ("lanczos", _other_evidence, (), "decision.evidence", "the decision was made for evidence sha256 0123"),
    "evidential-without-report": ("lanczos", _no_report, (), "policy.requirements", "requires the report"),
    "evidential-without-maps": ("lanczos", _no_maps, ("maps/",), "policy.requirements", "requires uncertainty maps"),
}


@pytest.mark.parametrize("lie", list(LIES))
def test_resigned_lie_fails_the_check_it_is_about(lie: str, bundles: dict[str, Path], keypair: tuple[Path, Path], tmp_path: Path) -> None:
    honest, edit, drop, check, words = LIES[lie]
    bundle = resign(bundles[honest], tmp_path / lie, keypair, edit, drop)
    for extra in ((), ("--reproduce",)):
        proc = _verify(bundle, keypair, "--evidence", CLIP, "--models-dir", bundles["lab"], *extra)
        failed = failing(proc)
        assert proc.returncode == 1 and list(failed) == [check], proc.stdout
        assert any(words in reason for reason in failed[check]), failed
        assert "reproduce:" not in proc.stdout and "reproduced" not in proc.stdout  # reproduction runs only after every check passed
        assert proc.stdout.strip().splitlines()[-1].startswith("FAIL:")


def test_honest_bundles_verify_and_resigning_alone_changes_nothing(
    bundles: dict[str, Path], keypair: tuple[Path, Path], tmp_path: Path
) -> None:
    """The re-signing of the lies is faithful: with no edit, the bundle still verifies."""
    again = resign(bundles["lanczos"], tmp_path / "same", keypair, lambda b: None)
    for bundle in (bundles["lanczos"], again):
        proc = _verify(bundle, keypair, "--evidence", CLIP)
        assert proc.returncode == 0, proc.stdout
        for name in ("policy.recorded", "models.cards", "decision.evidence", "policy.rejudged", "policy.requirements"):
            assert f"PASS       {name}: " in proc.stdout
    refused = _verify(bundles["refused"], keypair)
    assert refused.returncode == 0 and "PASS       policy.rejudged: 14 rules" in refused.stdout and "refused" in refused.stdout


def test_run_with_a_models_dir_verifies_only_with_the_same_cards(
    bundles: dict[str, Path], keypair: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle = bundles["fidelity"]
    proc = _verify(bundle, keypair, "--models-dir", bundles["lab"])
    assert proc.returncode == 0 and "PASS       policy.rejudged: " in proc.stdout, proc.stdout
    without = failing(_verify(bundle, keypair))
    assert list(without) == ["models.cards"] and "supply its directory with --models-dir DIR" in without["models.cards"][0], without
    changed = failing(_verify(bundle, keypair, "--models-dir", _lab_cards(tmp_path / "changed", " Edited.")))
    assert list(changed) == ["models.cards"] and "the auditor's card says" in changed["models.cards"][0], changed


def test_refusal_that_rejudges_as_allowed_fails(bundles: dict[str, Path], keypair: tuple[Path, Path], tmp_path: Path) -> None:
    """A signed refusal is re-judged too: its recipe, rewritten to a classical model, would
    have been allowed, so the recorded refusal is not the policy's."""

    def classical(b: Bodies) -> None:
        m = resolve("lanczos", None)
        b["policy.decision"]["model"] = m.to_json()
        b["policy.decision"]["recipe"]["operations"] = [{"op": "upscale", "model": m.id, "scale": 4}]

    bundle = resign(bundles["refused"], tmp_path / "r", keypair, classical)
    proc = _verify(bundle, keypair)
    failed = failing(proc)
    assert proc.returncode == 1 and list(failed) == ["policy.rejudged"], proc.stdout
    assert "the decision records refused, re-judged: allowed" in failed["policy.rejudged"]
    assert any(r.startswith("rule allowed_model_classes: recorded fail, re-judged pass") for r in failed["policy.rejudged"])


def test_run_under_a_policy_file_verifies_only_with_that_file(keypair: tuple[Path, Path], tmp_path: Path) -> None:
    data = json.loads((POLICIES / "evidential.json").read_text())
    data["rules"]["max_scale"] = 3
    strict = tmp_path / "lab-strict.json"
    strict.write_text(json.dumps(data))
    other = tmp_path / "lab-other.json"
    other.write_text(json.dumps({**data, "description": "another lab's policy"}))
    bundle = _enhance(tmp_path / "b", keypair[0], "--frames", "0:1", "--policy", strict)
    without = failing(_verify(bundle, keypair))
    assert list(without) == ["policy.recorded"] and "supply it with --policy FILE" in without["policy.recorded"][0]
    assert list(failing(_verify(bundle, keypair, "--policy", other))) == ["policy.recorded"]
    proc = _verify(bundle, keypair, "--policy", other, "--policy", strict)
    assert proc.returncode == 0 and f"is --policy {strict}" in proc.stdout, proc.stdout


def test_in_process_judgement_names_every_check(bundles: dict[str, Path], keypair: tuple[Path, Path]) -> None:
    """verify_bundle with the judgement as its extra check, without the CLI."""
    checks = list(verify_bundle(bundles["lanczos"], load_public_key(keypair[1]), extra_checks=[judgement_checks([], [])]))
    judged = [c.name for c in checks if c.name.startswith(("policy.", "models.", "decision."))]
    assert judged == ["policy.recorded", "models.cards", "decision.evidence", "policy.rejudged", "policy.requirements"]
    assert all(c.ok for c in checks)
