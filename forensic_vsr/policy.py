"""The policy engine: deny by default, one reason per rule.

A policy (`policies/*.json`, schema `policies/schema.json`) names what a mode admits. Evaluating
a recipe against it is a pure function of plain data; every rule yields pass, fail or
not-applicable with a reason that names what was expected and what was found, and the recipe is
allowed only when no rule fails."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from forensic_vsr.errors import UsageError
from forensic_vsr.resources import POLICIES

MODES = ("evidential", "investigative", "demonstrative")


@dataclass(frozen=True)
class Policy:
    data: dict[str, Any]
    sha256: str
    source: str  # "builtin:<mode>" or a file path

    @property
    def rules(self) -> dict[str, Any]:
        return self.data["rules"]


@dataclass(frozen=True)
class RecipeFacts:
    """What the policy judges: the recipe, and what the model resolved to."""

    mode: str
    operations: tuple[str, ...]
    model_id: str
    model_class: str  # classical | fidelity | generative | unvetted
    neural: bool
    weights_verified: bool | None
    card_scales: tuple[int, ...] | None
    card_deterministic: bool | None
    card_precisions: tuple[str, ...] | None
    scale: int
    device: str
    precision: str
    data_consistency_available: bool
    maps: bool = True  # the exact synthesized-content / contradiction maps are requested
    report: bool = True  # the court report is requested

    def to_json(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecipeFacts:
        """The facts as `to_json` wrote them; an unknown or missing fact is refused."""
        names = {f.name for f in dataclasses.fields(cls)}
        if set(data) - names:
            raise ValueError(f"unknown recipe facts: {', '.join(sorted(set(data) - names))}")
        tuples = ("operations", "card_scales", "card_precisions")
        values: dict[str, Any] = {k: tuple(v) if k in tuples and v is not None else v for k, v in data.items()}
        return cls(**values)


@dataclass(frozen=True)
class RuleResult:
    rule: str
    outcome: str  # pass | fail | not-applicable
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"rule": self.rule, "outcome": self.outcome, "reason": self.reason}


@dataclass(frozen=True)
class Decision:
    policy: Policy
    results: tuple[RuleResult, ...]
    override: dict[str, Any] | None = field(default=None)

    @property
    def allowed(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[RuleResult]:
        return [r for r in self.results if r.outcome == "fail"]

    def to_json(self, recipe: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
        return {
            "mode": self.policy.data["mode"],
            "allowed": self.allowed,
            "policy": {
                "id": self.policy.data["id"],
                "version": self.policy.data["version"],
                "sha256": self.policy.sha256,
                "source": self.policy.source,
            },
            "rules": [r.to_json() for r in self.results],
            "recipe": recipe,
            "model": model,
            "override": self.override,
        }


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(json.loads((POLICIES / "schema.json").read_text()))


def _parse(raw: bytes, source: str) -> Policy:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"{source}: policy is not JSON ({exc})") from None
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        raise UsageError(f"{source}: policy invalid at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}")
    return Policy(data, hashlib.sha256(raw).hexdigest(), source)


def builtin_policy(mode: str) -> Policy:
    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
    return _parse((POLICIES / f"{mode}.json").read_bytes(), f"builtin:{mode}")


def policy_file(path: Path) -> Policy:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"--policy {path}: cannot read ({exc.strerror})") from None
    return _parse(raw, str(path))


def weakenings(base: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """Every way the rules `other` admit more than `base` does."""
    out = []
    for key in ("allowed_operations", "allowed_model_classes", "allowed_devices", "allowed_precisions"):
        extra = sorted(set(other[key]) - set(base[key]))
        if extra:
            out.append(f"{key} adds {', '.join(extra)}")
    for key in ("determinism_required", "uncertainty_maps_required", "report_required"):
        if base[key] and not other[key]:
            out.append(f"{key} is false")
    if other["allow_unvetted_weights"] and not base["allow_unvetted_weights"]:
        out.append("allow_unvetted_weights is true")
    if other["max_scale"] > base["max_scale"]:
        out.append(f"max_scale {other['max_scale']} > {base['max_scale']}")
    dc_b, dc_o = base["data_consistency"], other["data_consistency"]
    if other.get("flag_threshold_levels", 8.0) > base.get("flag_threshold_levels", 8.0):
        out.append(f"flag_threshold_levels {other.get('flag_threshold_levels')} > {base.get('flag_threshold_levels', 8.0)}")
    if dc_b["required"] and not dc_o["required"]:
        out.append("data_consistency.required is false")
    if dc_o["max_rms_residual"] > dc_b["max_rms_residual"]:
        out.append(f"data_consistency.max_rms_residual {dc_o['max_rms_residual']} > {dc_b['max_rms_residual']}")
    if base["output_label"] and not other["output_label"]:
        out.append("output_label is removed")
    return out


def evaluate(policy: Policy, f: RecipeFacts) -> tuple[RuleResult, ...]:
    """Judge a recipe. Pure: the same policy and facts always give the same results."""
    r = policy.rules
    res: list[RuleResult] = []

    def add(rule: str, ok: bool | None, reason: str) -> None:
        res.append(RuleResult(rule, "not-applicable" if ok is None else ("pass" if ok else "fail"), reason))

    add("mode", f.mode == policy.data["mode"], f"recipe mode {f.mode}, policy written for {policy.data['mode']}")
    bad_ops = [op for op in f.operations if op not in r["allowed_operations"]]
    add("allowed_operations", not bad_ops, f"operations {', '.join(f.operations)}; allowed: {', '.join(r['allowed_operations'])}")
    add(
        "allowed_model_classes",
        f.model_class in r["allowed_model_classes"],
        f"model {f.model_id} is {f.model_class}; allowed: {', '.join(r['allowed_model_classes'])}",
    )
    if f.model_class == "unvetted":
        add(
            "allow_unvetted_weights",
            r["allow_unvetted_weights"],
            "weights no model card vouches for" + (" are admitted" if r["allow_unvetted_weights"] else " are refused"),
        )
    else:
        add("allow_unvetted_weights", None, f"model {f.model_id} has a card")
    if f.weights_verified is None:
        add("weights_integrity", None, "no weights to check" if not f.neural else "no card to check the weights against")
    else:
        add(
            "weights_integrity",
            f.weights_verified,
            "weights match the sha256 in the card" if f.weights_verified else "weights do NOT match the sha256 in the card",
        )
    add("max_scale", f.scale <= r["max_scale"], f"scale x{f.scale}; at most x{r['max_scale']}")
    if f.card_scales is not None:
        add("model_scale", f.scale in f.card_scales, f"scale x{f.scale}; model supports x{', x'.join(map(str, f.card_scales))}")
    dc = r["data_consistency"]
    if not dc["required"]:
        add("data_consistency", None, "not required by this policy")
    elif f.model_class == "classical":
        add("data_consistency", None, "classical interpolation: no learned content to project")
    else:
        add(
            "data_consistency",
            f.data_consistency_available,
            f"projection onto the input's consistent set required (RMS residual <= {dc['max_rms_residual']})"
            + ("" if f.data_consistency_available else "; not available for this model"),
        )
    if not r["determinism_required"]:
        add("determinism_required", None, "not required by this policy")
    else:
        known = f.card_deterministic if f.model_class != "unvetted" else None
        add(
            "determinism_required",
            bool(known),
            "model card declares deterministic inference" if known else "determinism not established by a card",
        )
    threshold = r.get("flag_threshold_levels", 8.0)
    add(
        "uncertainty_maps_required",
        None if not r["uncertainty_maps_required"] else f.maps,
        (
            f"exact synthesized-content and contradiction maps are written for every frame (regions flagged above {threshold} levels)"
            if f.maps
            else "maps are turned off (--no-maps)"
        )
        + ("" if r["uncertainty_maps_required"] else "; not required by this policy"),
    )
    add(
        "report_required",
        None if not r["report_required"] else f.report,
        ("report.pdf is written and its digest signed" if f.report else "the report is turned off (--no-report)")
        + ("" if r["report_required"] else "; not required by this policy"),
    )
    add(
        "allowed_devices",
        f.device in r["allowed_devices"] or (f.device == "auto" and "cpu" in r["allowed_devices"]),
        f"device {f.device}; allowed: {', '.join(r['allowed_devices'])}",
    )
    card_ok = f.card_precisions is None or f.precision in f.card_precisions
    add(
        "allowed_precisions",
        f.precision in r["allowed_precisions"] and card_ok,
        f"precision {f.precision}; policy allows {', '.join(r['allowed_precisions'])}"
        + ("" if f.card_precisions is None else f", card validates {', '.join(f.card_precisions)}"),
    )
    label = r["output_label"]
    if f.mode == "evidential":
        add("output_label", None, "evidential outputs carry no label" if not label else f"outputs labelled {label!r}")
    else:
        add("output_label", bool(label), f"outputs labelled {label!r}" if label else "non-evidential outputs must carry a label")
    return tuple(res)


def decide(f: RecipeFacts, policy_path: Path | None = None, override_reason: str | None = None) -> Decision:
    """Evaluate against the built-in policy of the mode, or a user policy file. An evidential
    user policy that admits more than the built-in one is refused unless the examiner gives an
    override reason, which is recorded."""
    policy = builtin_policy(f.mode) if policy_path is None else policy_file(policy_path)
    results = list(evaluate(policy, f))
    override = None
    if policy_path is not None and f.mode == "evidential":
        weaker = weakenings(builtin_policy("evidential").rules, policy.rules)
        if weaker and override_reason:
            override = {"reason": override_reason, "weakenings": weaker}
            results.append(
                RuleResult(
                    "policy_strength",
                    "pass",
                    f"weaker than built-in evidential ({'; '.join(weaker)}); examiner override: {override_reason}",
                )
            )
        else:
            results.append(
                RuleResult(
                    "policy_strength",
                    "fail" if weaker else "pass",
                    f"weaker than built-in evidential: {'; '.join(weaker)}; pass --override-policy REASON to accept"
                    if weaker
                    else "at least as strict as built-in evidential",
                )
            )
    return Decision(policy, tuple(results), override)
