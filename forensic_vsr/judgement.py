"""Verify re-judges, it does not trust: the signed decision is judged again from its records.

A valid signature proves who wrote a record, not that what it says is so: an examiner's own key
can sign a generative model recorded as an allowed evidential run. `judgement_checks` gives
`fvsr verify` the checks that take nothing from the decision on trust:

policy.recorded      the recorded policy digest is a shipped policy's or one the auditor supplies;
models.cards         every recorded model id, card digest and version, class and weights digest is
                     the auditor's card's (shipped cards plus --models-dir);
decision.evidence    the decision was made for the evidence that was ingested;
policy.rejudged      the recorded recipe (the one step.run ran) judged again under that policy with
                     the auditor's cards gives every rule's recorded outcome and the recorded verdict;
policy.requirements  what the policy requires of a run's outputs is there and within bounds;
maps.filters         the filter taps format 3 signs for the recomputed maps (`maps.filters`, which
                     `fvsr verify` recomputes S and R with) are the taps of the maps' operator at
                     the recipe's scale, derived here (ops.degrade.axis_filters), not taken on trust;
frames.range         format 3: the evidence frames step.run signs (whence verify recomputes R) are
                     the recipe's --frames;
maps.calibration     format 3: the lambda of the interval left to whoever shows it is the card's;
region.recorded      --roi: the region step.run signs (which verify cuts the evidence to for R) is
                     the recipe's, at its scale, and its output and crop follow from it.

A check whose input failed an earlier one is not run, and the earlier FAIL line says so. Pure
functions of the records and the auditor's policies and cards: no weights file is read (a
recorded `--weights` file is identified by its recorded sha256), and neither torch nor OpenCV
is imported."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forensic_vsr.audit.checks import ChainView, Check
from forensic_vsr.audit.exact_maps import MapFilters
from forensic_vsr.audit.geometry import frame_range_check, region_check
from forensic_vsr.audit.records import external_parameters, step_annotations
from forensic_vsr.audit.step_record import StepRecord
from forensic_vsr.audit.verify import ExtraCheck
from forensic_vsr.models.registry import ModelCard, ResolvedModel, registry
from forensic_vsr.ops.colour import colour_names
from forensic_vsr.ops.degrade import OPERATOR, axis_filters
from forensic_vsr.policy import MODES, Policy, builtin_policy, policy_file
from forensic_vsr.recipe import Recipe, judge_recipe
from forensic_vsr.resources import POLICIES

__all__ = ["Auditor", "judge", "judgement_checks"]

_pass = Check.passed
_fail = Check.failed


@dataclass(frozen=True)
class Auditor:
    """What the auditor trusts: the shipped policies and cards, and the ones they supply."""

    policies: dict[str, tuple[Policy, Path]]  # sha256 -> the policy and its file
    cards: dict[str, ModelCard]  # by model id

    @classmethod
    def load(cls, policy_files: list[Path], models_dirs: list[Path]) -> Auditor:
        """Raises UsageError for a policy file or card directory that cannot be read."""
        policies: dict[str, tuple[Policy, Path]] = {}
        for path in policy_files:
            p = policy_file(path)
            policies[p.sha256] = (p, Path(path))
        for mode in MODES:
            p = builtin_policy(mode)
            policies[p.sha256] = (p, POLICIES / f"{mode}.json")
        return cls(policies, registry(list(models_dirs)))


def judgement_checks(policy_files: list[Path], models_dirs: list[Path]) -> ExtraCheck:
    """The extra check for `verify_bundle`: the decision re-judged against the auditor's
    policies (`--policy FILE`) and cards (`--models-dir DIR`)."""
    auditor = Auditor.load(policy_files, models_dirs)

    def judgement(bundle: Path, view: ChainView, key: Ed25519PublicKey) -> list[Check]:
        return list(judge(view, auditor))

    return judgement


def judge(view: ChainView, auditor: Auditor) -> Iterator[Check]:
    """Every re-judging check of a verified chain, in order."""
    decision = view.first("policy.decision")
    if decision is None:
        yield _fail("policy.recorded", "no policy.decision record")
        return
    step, ingest = view.first("step.run"), view.first("evidence.ingest")
    known = auditor.policies.get(decision["policy"]["sha256"])
    yield _recorded_policy(decision, known)
    models, problems = resolve_recorded(decision, step, auditor.cards)
    yield from (
        (_fail("models.cards", p + ("" if i else "; the decision is not re-judged until the cards match")) for i, p in enumerate(problems))
        if problems
        else [_pass("models.cards", f"{len(models)} model(s) recorded as the auditor's cards say: {', '.join(m.id for m in models)}")]
    )
    if ingest is not None:
        yield _decision_evidence(decision, step, ingest)
    if step is not None and (step_annotations(step).get("maps") or {}).get("recomputed"):
        yield map_filters_check(step)
        yield frame_range_check(step, ingest)
    if step is not None and (step_annotations(step).get("region") is not None or external_parameters(step).get("region") is not None):
        yield region_check(step)
    if known is None:
        return
    policy, path = known
    if not problems:
        judged = list(rejudged(decision, step, ingest, models, path))
        yield from judged
        # the interval's calibration is the card's of the model that ran: judged once that model is
        if (
            step is not None
            and all(c.ok for c in judged)
            and "interval" in ((step_annotations(step).get("maps") or {}).get("recomputed") or {})
        ):
            yield calibration_check(step, auditor.cards)
    written = view.first("output.write")
    if written is not None and step is not None:
        yield from requirements(policy, decision, step, view.first("report.generate"), written, auditor.cards)


def _recorded_policy(decision: dict[str, Any], known: tuple[Policy, Path] | None) -> Check:
    rec = decision["policy"]
    if known is None:
        return _fail(
            "policy.recorded",
            f"the run used policy sha256 {rec['sha256']}, source {rec.get('source')}: no shipped policy has it; "
            "supply it with --policy FILE (policy.rejudged and policy.requirements are not run without it)",
        )
    policy = known[0]
    where = "shipped" if policy.source.startswith("builtin:") else f"--policy {policy.source}"
    return _pass("policy.recorded", f"policy {policy.data['id']} v{policy.data['version']} (sha256 {policy.sha256[:16]}…) is {where}")


def _decision_evidence(decision: dict[str, Any], step: dict[str, Any] | None, ingest: dict[str, Any]) -> Check:
    ingested = ingest["evidence"]["sha256"]
    judged = (decision.get("evidence") or {}).get("sha256")
    if judged != ingested:
        return _fail(
            "decision.evidence", f"the decision was made for evidence sha256 {str(judged)[:16]}…, evidence.ingest read {ingested[:16]}…"
        )
    deps = step["predicate"]["buildDefinition"]["resolvedDependencies"] if step else []
    named = [d["digest"].get("sha256") for d in deps if d["name"].startswith("evidence:")]
    if any(d != ingested for d in named):
        return _fail("decision.evidence", f"step.run names evidence sha256 {named[0][:16]}…, evidence.ingest read {ingested[:16]}…")
    return _pass("decision.evidence", f"decision, ingest and step name the same evidence sha256 {ingested[:16]}…")


# Signed taps may differ from the ones derived here by this much (times the filter's largest tap):
# the writer's taps are this same numpy derivation rounded to float32; another machine's LAPACK
# can give (WWᵀ)⁻¹ other last float64 bits, which round, rarely, to the neighbouring float32 (one
# ulp, 2^-24 relative). Two ulps move S and R by under 1e-4 levels, far inside maps_check's tolerance.
TAP_TOLERANCE = 2.0**-23
MAP_NAMES = ("synthesized", "contradiction")  # the exact layer's maps, which every run with maps has


def filter_problems(signed: MapFilters, derived: MapFilters) -> list[str]:
    """How signed filter taps differ from the derived ones: the same structure (scale, anchors,
    lengths) and every tap within TAP_TOLERANCE of the filter's largest."""
    pairs = [("down", signed.down, derived.down), ("inverse", signed.inverse, derived.inverse)]
    if signed.scale != derived.scale or len(signed.up) != len(derived.up):
        return [f"scale {signed.scale}, the recipe's {derived.scale}"]
    if signed.down_anchor != derived.down_anchor or any(a[1] != b[1] for a, b in zip(signed.up, derived.up, strict=True)):
        return ["anchors other than the operator's"]
    pairs += [(f"up[{p}]", a[0], b[0]) for p, (a, b) in enumerate(zip(signed.up, derived.up, strict=True))]
    problems = []
    for what, got, want in pairs:
        if got.shape != want.shape:
            problems.append(f"{what} has {got.size} taps, the operator {want.size}")
        elif np.any(np.abs(got.astype(np.float64) - want) > TAP_TOLERANCE * float(np.abs(want).max())):
            worst = int(np.argmax(np.abs(got.astype(np.float64) - want)))
            problems.append(f"{what}[{worst}] is {float(got[worst])!r}, the operator's {float(want[worst])!r}")
    return problems


def map_filters_check(step: dict[str, Any]) -> Check:
    """format 3's signed filter taps against the ones the verifier derives from the operator
    of the maps (every upscale's exact layer uses ops.degrade.OPERATOR) at the recipe's scale."""
    maps, name = step_annotations(step)["maps"], "maps.filters"
    if maps.get("operator") != OPERATOR:
        return _fail(name, f"step.run records the maps' operator {maps.get('operator')!r}; the exact layer's is {OPERATOR!r}")
    operations = external_parameters(step).get("operations")
    scale = operations[-1].get("scale") if isinstance(operations, list) and operations and isinstance(operations[-1], dict) else None
    if not isinstance(scale, int) or isinstance(scale, bool) or not 1 < scale <= 8:
        return _fail(name, f"maps recomputed for a recipe of scale {scale!r}: only an upscale (x2 to x8) has them")
    try:
        signed = MapFilters.from_json(maps.get("filters") if isinstance(maps.get("filters"), dict) else {})
    except ValueError as exc:
        return _fail(name, str(exc))
    f = axis_filters(scale, OPERATOR)
    problems = filter_problems(signed, MapFilters(f.scale, f.down, f.down_anchor, f.up, f.inverse))
    if problems:
        return _fail(name, f"the signed taps are not {OPERATOR} x{scale}'s: {'; '.join(problems)}")
    return _pass(name, f"the signed taps are {OPERATOR} x{scale}'s, derived again here")


CALIBRATION_KEYS = ("lambda", "alpha", "delta", "tiles", "scale_formula", "method")  # what bundle/maps.py records of a card's


def calibration_check(step: dict[str, Any], cards: dict[str, ModelCard]) -> Check:
    """format 3 leaves the interval lambda * u to whoever shows it, with the lambda step.run signs
    (maps.calibration): it must be the auditor's card's for the main model at the recipe's scale."""
    name, recorded = "maps.calibration", step_annotations(step)["maps"].get("calibration")
    main = (external_parameters(step).get("operations") or [{}])[-1]
    card = cards.get(str(main.get("model"))) if isinstance(main, dict) else None
    if card is None:
        return _fail(name, f"the interval is recomputed with a signed lambda; no card for {main!r} to take it from")
    want = card.data.get("uncertainty", {}).get(f"x{main.get('scale')}") or {}
    differ = [k for k in CALIBRATION_KEYS if not isinstance(recorded, dict) or recorded.get(k) != want.get(k)]
    if differ:
        got = {k: recorded.get(k) for k in differ} if isinstance(recorded, dict) else recorded
        return _fail(name, f"step.run's calibration {got!r}, card {card.id}'s x{main.get('scale')} { ({k: want.get(k) for k in differ})!r}")
    return _pass(name, f"lambda {want['lambda']} is card {card.id}'s x{main.get('scale')} calibration")


def _card_model(card: ModelCard, weights_sha256: str | None, weights_file: Path | None = None) -> ResolvedModel:
    """What `registry.resolve` gives for a card, with the weights the run recorded hashing."""
    if weights_file is not None:
        return ResolvedModel(card.id, card.model_class, card, weights_file, weights_sha256, True, card.data["architecture"])
    verified = None if card.weights_sha256 is None else weights_sha256 == card.weights_sha256
    return ResolvedModel(card.id, card.model_class, card, card.weights_path, weights_sha256, verified, card.data["architecture"])


def resolve_recorded(
    decision: dict[str, Any], step: dict[str, Any] | None, cards: dict[str, ModelCard]
) -> tuple[list[ResolvedModel], list[str]]:
    """The recipe's models (pre-operations first, the main one last) as the auditor's cards
    resolve them, and every way the records disagree with those cards."""
    recipe, model = decision["recipe"], decision["model"]
    ops = recipe["operations"]
    refused = not decision["allowed"]  # a refusal may record weights its card does not vouch for: that is why it refused
    problems: list[str] = []
    models: list[ResolvedModel] = []
    for i, op in enumerate(ops):
        main = i == len(ops) - 1
        recorded_weights = model.get("weights_sha256") if main else op.get("weights_sha256")
        if main and recipe.get("weights_file"):
            card = next((c for c in cards.values() if c.weights_sha256 == recorded_weights), None)
            resolved = (
                _card_model(card, recorded_weights, Path(recipe["weights_file"]))
                if card
                else ResolvedModel(
                    str(model["id"]), "unvetted", None, Path(recipe["weights_file"]), recorded_weights, None, model.get("architecture")
                )
            )
        elif op["model"] in cards:
            resolved = _card_model(cards[op["model"]], recorded_weights)
        else:
            problems.append(
                f"model {op['model']}: no card with this id among the shipped cards and --models-dir; "
                "supply its directory with --models-dir DIR"
            )
            continue
        if main and op.get("weights_sha256") != resolved.weights_sha256:
            problems.append(
                f"model {resolved.id}: the recipe names weights {str(op.get('weights_sha256'))[:16]}…, "
                f"the decision {str(resolved.weights_sha256)[:16]}…"
            )
        if resolved.card and not refused and resolved.card.weights_sha256 != recorded_weights:
            problems.append(
                f"model {resolved.id}: weights sha256 {str(recorded_weights)[:16]}… recorded, "
                f"its card names {str(resolved.card.weights_sha256)[:16]}…"
            )
        models.append(resolved)
    if len(models) == len(ops):
        problems += _decision_model(model, models[-1])
    return models, problems + _dependencies(step, {m.id: m for m in models}, cards, refused)


def _decision_model(recorded: dict[str, Any], m: ResolvedModel) -> list[str]:
    card = recorded.get("card")
    found = {"id": recorded.get("id"), "class": recorded.get("class")}
    want: dict[str, Any] = {"id": m.id, "class": m.model_class}
    if m.card is None:
        found["card"], want["card"] = card, None
    else:
        found |= {"card sha256": (card or {}).get("sha256"), "card version": str((card or {}).get("version"))}
        want |= {"card sha256": m.card.sha256, "card version": str(m.card.data["version"])}
    return [f"policy.decision's model: {k} {found[k]!r}, the auditor's card says {want[k]!r}" for k in want if found[k] != want[k]]


def _dependencies(step: dict[str, Any] | None, models: dict[str, ResolvedModel], cards: dict[str, ModelCard], refused: bool) -> list[str]:
    """step.run's model-card:* and model-weights:* dependencies against the auditor's cards."""
    problems = []
    deps = step["predicate"]["buildDefinition"]["resolvedDependencies"] if step else []
    for dep in deps:
        kind, _, model_id = dep["name"].partition(":")
        if kind not in ("model-card", "model-weights"):
            continue
        digest = dep["digest"].get("sha256")
        card = cards.get(model_id)
        if kind == "model-card":
            if card is None:
                problems.append(f"step.run depends on card {model_id}: no such card here; supply its directory with --models-dir DIR")
            elif digest != card.sha256 or str(dep.get("annotations", {}).get("version")) != str(card.data["version"]):
                problems.append(
                    f"step.run depends on card {model_id} sha256 {str(digest)[:16]}…, the auditor's card is {card.sha256[:16]}…"
                )
            continue
        ran = models.get(model_id)
        if card is not None:
            want = card.weights_sha256
        elif ran is not None:
            want = ran.weights_sha256  # unvetted: the weights the decision names
        else:
            problems.append(f"step.run depends on weights {model_id}: no card for them here; supply its directory with --models-dir DIR")
            continue
        if want is None or (digest != want and not refused):
            problems.append(
                f"step.run depends on weights {model_id} sha256 {str(digest)[:16]}…, the auditor's card names {str(want)[:16]}…"
            )
    return problems


def _same_recipe(decided: dict[str, Any], ran: dict[str, Any], frames_decoded: int | None) -> list[str]:
    """The keys in which the recipe step.run ran differs from the decided one. An open frame
    range (A:-1) is run as A:N, N the decoded frame count."""
    frames = decided.get("frames")
    if isinstance(frames, str) and frames.endswith(":-1") and frames_decoded is not None:
        decided = {**decided, "frames": f"{frames[:-3]}:{frames_decoded}"}
    return sorted(k for k in set(decided) | set(ran) if decided.get(k) != ran.get(k))


def rejudged(
    decision: dict[str, Any], step: dict[str, Any] | None, ingest: dict[str, Any] | None, models: list[ResolvedModel], path: Path
) -> Iterator[Check]:
    """The recorded recipe judged again: one FAIL line per rule (or verdict) that comes out
    otherwise than recorded."""
    name = "policy.rejudged"
    if step is not None:
        differ = _same_recipe(decision["recipe"], external_parameters(step), ingest.get("frames_decoded") if ingest else None)
        if differ:
            yield _fail(name, f"step.run ran another recipe than the one the policy judged: they differ in {', '.join(differ)}")
            return
    recipe = Recipe.from_json(decision["recipe"])
    # under the mode's built-in policy when the recipe names no policy file, else the auditor's copy
    again = judge_recipe(recipe, models[-1], models[:-1], None if recipe.policy is None else path)
    if again.policy.sha256 != decision["policy"]["sha256"]:
        yield _fail(
            name,
            f"the recipe is judged under policy sha256 {again.policy.sha256[:16]}… ({again.policy.source}), "
            f"the decision records {decision['policy']['sha256'][:16]}…",
        )
        return
    recorded = {r["rule"]: r["outcome"] for r in decision["rules"]}
    now = {r.rule: r for r in again.results}
    lines = []
    for rule in [*now, *(r for r in recorded if r not in now)]:
        result = now.get(rule)
        if recorded.get(rule) != (result.outcome if result else None):
            found = f"{result.outcome} ({result.reason})" if result else "absent"
            lines.append(_fail(name, f"rule {rule}: recorded {recorded.get(rule, 'absent')}, re-judged {found}"))
    verdict = "allowed" if again.allowed else "refused"
    if bool(decision["allowed"]) != again.allowed:
        lines.append(_fail(name, f"the decision records {'allowed' if decision['allowed'] else 'refused'}, re-judged: {verdict}"))
    if (decision.get("override") or None) != again.override:
        lines.append(_fail(name, f"the decision records override {decision.get('override')!r}, re-judged {again.override!r}"))
    yield from lines or [
        _pass(name, f"{len(now)} rules judged again under policy {again.policy.data['id']}: the recorded outcomes, {verdict}")
    ]


def colour_consistency_problems(record: dict[str, Any], runner: Any, colours: tuple[str, ...], limit: float) -> list[str]:
    """RGB evidence: the network (`runner`) and the projection (`record`, the step's
    data_consistency) ran on every colour plane, in the evidence's component order, and each
    plane's every residual is within `limit`."""
    ran_on = runner.get("planes") if isinstance(runner, dict) else None
    if ran_on != list(colours):
        return [f"the evidence's colour planes are {', '.join(colours)}; the runner records the network on {ran_on!r}"]
    planes, per_plane = record.get("planes"), record.get("rms_residual_per_plane")
    if planes != list(colours) or not isinstance(per_plane, dict) or sorted(per_plane) != sorted(colours):
        return [f"the evidence's colour planes are {', '.join(colours)}; step.run records a projection on {planes!r}"]
    problems = []
    for name in colours:
        values = per_plane[name]
        if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            problems.append(f"plane {name}: the recorded residuals are not a list of numbers")
        elif len(values) != len(record.get("rms_residual_per_frame") or []):
            problems.append(f"plane {name}: {len(values)} residuals recorded for {len(record.get('rms_residual_per_frame') or [])} frames")
        elif any(not v <= limit for v in values):
            problems.append(f"plane {name}: data-consistency RMS residual {max(values)} exceeds the policy's {limit}")
    return problems


def requirements(
    policy: Policy,
    decision: dict[str, Any],
    step: dict[str, Any],
    report: dict[str, Any] | None,
    written: dict[str, Any],
    cards: dict[str, ModelCard],
) -> Iterator[Check]:
    """What the policy requires of a run with outputs, in the signed records: maps, report,
    data-consistency residuals within bound, the output label."""
    rules, summary, name = policy.rules, StepRecord.from_json(step_annotations(step)), "policy.requirements"
    files = {f["name"] for f in written["files"]}
    problems = []
    if rules["uncertainty_maps_required"]:
        maps = summary.maps
        named = [] if not maps else [n for e in maps["files"].values() for n in (e["video"], e["framehash"])] + [maps["flagged"]["file"]]
        missing = [n for n in named if n not in files]
        # S and R each stored (maps.files) or left to verify's recomputation (format 3): a map in neither has nothing to check
        absent = [] if not maps else sorted(set(MAP_NAMES) - set(maps["files"]) - set(maps.get("recomputed") or {}))
        if not maps or missing or absent:
            problems.append(
                f"policy {policy.data['id']} requires uncertainty maps; "
                + (
                    f"output.write lacks {', '.join(missing)}"
                    if missing
                    else f"step.run neither stores nor recomputes {', '.join(absent)}"
                    if maps
                    else "step.run records none"
                )
            )
    threshold = float(rules.get("flag_threshold_levels", 8.0))  # the policy engine's default (policy.py)
    if summary.maps and summary.maps["flagged"].get("threshold_levels") != threshold:
        problems.append(
            f"policy {policy.data['id']} flags S above {threshold} levels; step.run's flagged regions (and the flagged fraction"
            f" verify recomputes) are at {summary.maps['flagged'].get('threshold_levels')!r}"
        )
    if rules["report_required"] and report is None:
        problems.append(f"policy {policy.data['id']} requires the report; there is no report.generate record")
    dc = rules["data_consistency"]
    ran = external_parameters(step)["operations"][-1]["model"]  # what ran, whatever the decision says
    main_class = cards[ran].model_class if ran in cards else decision["model"].get("class")
    if dc["required"] and main_class != "classical":
        record = summary.data_consistency
        worst = None if not record else max([record["rms_residual_max"], *record.get("rms_residual_per_frame", [])])
        if worst is None:
            problems.append(f"policy {policy.data['id']} requires data consistency for a {main_class} model; step.run records no residuals")
        elif worst > dc["max_rms_residual"]:
            problems.append(f"data-consistency RMS residual {worst} exceeds the policy's {dc['max_rms_residual']}")
        colours = colour_names(summary.pix_fmt_in) if summary.luma else ()
        if record and colours:
            problems += colour_consistency_problems(record, summary.runner, colours, dc["max_rms_residual"])
    label = rules["output_label"]
    if label and summary.label != label:
        problems.append(f"policy {policy.data['id']} labels outputs {label!r}; step.run records label {summary.label!r}")
    yield from (
        (_fail(name, p) for p in problems)
        if problems
        else [_pass(name, f"what policy {policy.data['id']} requires of the outputs is recorded")]
    )
