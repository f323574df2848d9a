"""`fvsr enhance`: evidence in, verifiable bundle out. Read `enhance` top to bottom:

decide  resolve the models and judge the recipe (policy.decision is the chain's first record;
        a refusal still leaves a signed bundle holding it, and no outputs);
open    the hidden build directory (bundle.writer) and the chain;
ingest  decode every evidence frame once: input.framehash, timing, damage (evidence.ingest);
process decode the selected frames again through the stages, encode master, preview and maps,
        check the lossless round trip (bundle.frames);
record  the evidence must be unchanged; step.run (in-toto statement), output.write;
report  stills and the signed report.pdf (report.generate);
commit  run.complete, the signed checkpoint in manifest.json, and the rename into place.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from forensic_vsr import layout
from forensic_vsr.audit.chain import ChainWriter, utc_now
from forensic_vsr.audit.step_record import StepRecord
from forensic_vsr.bundle.frames import FramePass
from forensic_vsr.bundle.ingest import ingest
from forensic_vsr.bundle.limits import check_evidence_output_size
from forensic_vsr.bundle.report import prefetch_imports, write_report
from forensic_vsr.bundle.statement import statement
from forensic_vsr.bundle.writer import BundleDir, write_manifest
from forensic_vsr.distributed import RayOptions, RaySource, import_ray
from forensic_vsr.errors import IntegrityError, PolicyDenied
from forensic_vsr.integrity import merkle
from forensic_vsr.media import VideoReader, file_sha256
from forensic_vsr.policy import Decision
from forensic_vsr.recipe import Examiner, Recipe, bounded_frames, decide_recipe, pre_models


def enhance(
    evidence: Path, target: Path, recipe: Recipe, examiner: Examiner, show_progress: bool | None = None, ray: RayOptions | None = None
) -> Path:
    """Judge the recipe, then run it on the evidence and write a complete, signed bundle at
    `target`. A refused recipe still leaves a signed bundle holding the decision, and no outputs.
    With `ray`, the stages run as Ray tasks over segments of the range (forensic_vsr.distributed);
    the bundle is the same but for the step record's `distributed` entry."""
    evidence = Path(evidence)
    if ray is not None:
        import_ray()
    model, decision = decide_recipe(recipe)
    VideoReader(evidence).close()  # an unreadable evidence file leaves no trace on disk
    if decision.allowed:
        check_evidence_output_size(evidence, recipe.scale, recipe.maps, recipe.region)
    bundle = BundleDir(Path(target), with_outputs=decision.allowed)
    chain: ChainWriter | None = None
    try:
        started = utc_now()
        sha_before, stat_before = file_sha256(evidence), evidence.stat()
        chain = ChainWriter(bundle.path(layout.CHAIN), examiner.signer, examiner.name)
        decision_body = decision.to_json(recipe.to_json(model), model.to_json())
        chain.append("policy.decision", {**decision_body, "evidence": {"name": evidence.name, "sha256": sha_before}})
        if not decision.allowed:
            _refuse(bundle, chain, decision, target)
        ingest_body, in_leaves = ingest(
            evidence, bundle, examiner.case_id, sha_before, stat_before, show_progress, recipe.accept_decode_errors, rate=recipe.rate
        )
        chain.append("evidence.ingest", ingest_body)
        if recipe.frames is not None:
            recipe = dataclasses.replace(recipe, frames=bounded_frames(recipe.frames, ingest_body["frames_decoded"]))
        start, end = recipe.frames or (0, ingest_body["frames_decoded"])
        framehashes = bundle.path(layout.INPUT_FRAMEHASH)
        source = None if ray is None else RaySource(ray, evidence, sha_before, framehashes, ingest_body, recipe, model)
        imports = prefetch_imports() if recipe.report else None
        step, out_leaves = FramePass(evidence, bundle, recipe, model, decision, source).run(start, end, show_progress)
        sha_after = file_sha256(evidence)
        if sha_after != sha_before:
            raise IntegrityError(
                f"{evidence}: the evidence file changed during processing (sha256 {sha_before[:16]}… -> {sha_after[:16]}…)"
            )
        finished = utc_now()
        outputs = [bundle.file_entry(n) for n in _output_files(step)]
        out_root = merkle.root_from_leaf_hashes(out_leaves).hex()
        chain.append_statement(
            "step.run",
            statement(
                recipe.to_json(model),
                [*pre_models(recipe), model],
                ingest_body,
                step.to_json(),
                outputs,
                out_root,
                len(out_leaves),
                started,
                finished,
            ),
        )
        chain.append(
            "output.write",
            {
                "files": outputs,
                "evidence_sha256_after": sha_after,
                "evidence_unchanged": True,
                "frame_roots": {"input": ingest_body["input_framehash"]["merkle_root"], "output": out_root},
                "frame_counts": {"input": len(in_leaves), "output": len(out_leaves)},
            },
        )
        if imports is not None:
            imports.join()
            write_report(bundle, chain, evidence, examiner, model, recipe, step)
        chain.append("run.complete", {"records": len(chain.digests) + 1, "status": "complete"})
        write_manifest(bundle, chain)
        chain.close()
        bundle.commit()
    except PolicyDenied:
        raise
    except BaseException:
        if chain is not None:
            chain.close()
        bundle.discard()
        raise
    return Path(target)


def _refuse(bundle: BundleDir, chain: ChainWriter, decision: Decision, target: Path) -> None:
    """Close a refused run: run.aborted, manifest, commit; then raise PolicyDenied."""
    reasons = [f"{r.rule}: {r.reason}" for r in decision.failures]
    chain.append(
        "run.aborted",
        {"status": "aborted", "reason": "policy refused the recipe: " + "; ".join(reasons), "records": len(chain.digests) + 1},
    )
    write_manifest(bundle, chain)
    chain.close()
    bundle.commit()
    raise PolicyDenied(
        f"policy {decision.policy.data['id']} ({decision.policy.source}) refused the recipe; "
        f"the signed decision is in {target}:\n" + "\n".join(f"  - {r}" for r in reasons)
    )


def _output_files(step: StepRecord) -> list[str]:
    maps = step.maps
    map_files = [name for n in maps["files"] for name in (layout.map_video(n), layout.map_framehash(n))] + [layout.FLAGGED] if maps else []
    return [layout.MASTER, layout.PREVIEW, layout.OUTPUT_FRAMEHASH, layout.INPUT_FRAMEHASH, *map_files]
