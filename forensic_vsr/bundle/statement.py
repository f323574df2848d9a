"""The `step.run` record: an in-toto Statement v1 with an SLSA Provenance v1 predicate.

subject = the outputs (file sha256, frame Merkle roots); externalParameters = the recipe;
internalParameters = what ran (devices, library versions, determinism); resolvedDependencies =
the evidence (file and frames) and every model card and weights file."""

from __future__ import annotations

from typing import Any

from forensic_vsr import __version__
from forensic_vsr.environment import environment_report
from forensic_vsr.models.registry import ResolvedModel

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PROVENANCE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://forensic-vsr.invalid/enhance/v1"


def model_dependencies(model: ResolvedModel) -> list[dict[str, Any]]:
    deps: list[dict[str, Any]] = []
    if model.card is not None:
        deps.append(
            {
                "name": f"model-card:{model.id}",
                "digest": {"sha256": model.card.sha256},
                "annotations": {
                    "class": model.model_class,
                    "version": model.card.data["version"],
                    "description": model.card.data["description"],
                },
            }
        )
    if model.weights_sha256 is not None:
        deps.append(
            {
                "name": f"model-weights:{model.id}",
                "digest": {"sha256": model.weights_sha256},
                "annotations": {"class": model.model_class, "architecture": model.architecture},
            }
        )
    return deps


def statement(
    recipe_json: dict[str, Any],
    models: list[ResolvedModel],
    ingest: dict[str, Any],
    step: dict[str, Any],
    outputs: list[dict[str, Any]],
    out_root: str,
    n_out: int,
    started: str,
    finished: str,
) -> dict[str, Any]:
    """The step record. `step` (the run's summary) travels as the one byproduct's annotations."""
    evidence = ingest["evidence"]
    device = step["devices"][0] if len(step["devices"]) == 1 else ",".join(step["devices"])
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            *({"name": o["name"], "digest": {"sha256": o["sha256"]}} for o in outputs if o["name"].startswith(("output/", "maps/"))),
            {"name": "frames:output/master.mkv", "digest": {"rfc9162-sha256": out_root}, "annotations": {"tree_size": n_out}},
            *(
                {
                    "name": f"frames:{m['video']}",
                    "digest": {"rfc9162-sha256": m["merkle_root"]},
                    "annotations": {"tree_size": m["tree_size"]},
                }
                for m in (step.get("maps") or {}).get("files", {}).values()
            ),
        ],
        "predicateType": PROVENANCE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": recipe_json,
                "internalParameters": environment_report(device),
                "resolvedDependencies": [
                    {"name": f"evidence:{evidence['name']}", "digest": {"sha256": evidence["sha256"]}},
                    {"name": f"frames:evidence:{evidence['name']}", "digest": {"rfc9162-sha256": ingest["input_framehash"]["merkle_root"]}},
                    *(dep for m in models for dep in model_dependencies(m)),  # pre-operations, then the main model
                ],
            },
            "runDetails": {
                "builder": {"id": f"https://forensic-vsr.invalid/fvsr@{__version__}"},
                "metadata": {"startedOn": started, "finishedOn": finished},
                "byproducts": [{"name": "step", "annotations": step}],
            },
        },
    }
