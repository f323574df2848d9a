"""What the examiner asked for, and its judgement by the policy.

`Recipe` is recorded verbatim as the step's external parameters (`to_json`) and read back by
`fvsr verify --reproduce` (`from_json`); `decide_recipe` resolves the models and evaluates the
policy without touching any evidence frame."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forensic_vsr.audit.keys import Signer
from forensic_vsr.audit.pdfsign import ReportCertificate
from forensic_vsr.errors import UsageError
from forensic_vsr.models.registry import ResolvedModel, resolve
from forensic_vsr.models.tasks import X1_TASKS, keeps_frame_size, op_name, runs_on_luma, task
from forensic_vsr.ops.degrade import OPERATOR as CONSISTENCY_OPERATOR
from forensic_vsr.policy import Decision, RecipeFacts, RuleResult, decide

OP_ALIASES = {"restore": "fidelity-restore"}
PRECISIONS = ("fp32", "fp16", "bf16")
FRAMES_HELP = (
    "A:B selects decoded frames A to B-1 of the evidence, counted from 0 in decode order "
    "(`fvsr hash` prints them in that order); either side may be left out (0:, :100)"
)


@dataclass(frozen=True)
class Recipe:
    """What the examiner asked for. Recorded verbatim as the step's external parameters."""

    mode: str
    model: str | None
    scale: int
    frames: tuple[int, int] | None = None  # half-open; end -1: to the last frame
    device: str = "cpu"
    accept_decode_errors: bool = False
    weights: Path | None = None
    precision: str = "fp32"
    policy: Path | None = None
    override_policy: str | None = None
    models_dirs: tuple[Path, ...] = ()
    maps: bool = True
    stills: tuple[int, ...] = ()  # extra output frames shown in the report
    report: bool = True
    tile: int | None = None  # network tile size in input samples; None: from the memory budget, 0: never
    batch: int | None = None  # frames per network pass; None: 8 on CUDA, 1 on CPU
    psf: str | None = None  # deblur: "motion:LENGTH,ANGLE", "defocus:RADIUS", a PSF image; None: estimate
    roi: tuple[int, int, int, int] | None = None  # deblur: x, y, width, height of the region to restore
    deinterlace: str = "fields"  # deinterlace: "fields" (each field a frame, 2x rate) or "blend" (motion-adaptive)
    pre_ops: tuple[str, ...] = ()  # model ids of x1 operations run, in order, before `model` (--ops)

    def to_json(self, model: ResolvedModel | None = None) -> dict[str, Any]:
        """The recipe as recorded: `operations` lists every step in the order it runs. Keys
        added since format 1 appear only when they differ from the default."""
        ops = []
        for m, scale in [*((pm, 1) for pm in pre_models(self)), (model, self.scale)]:
            op: dict[str, Any] = {"op": op_name(m) if m else "upscale", "model": m.id if m else self.model, "scale": scale}
            if m is not None and m.weights_sha256:
                op["weights_sha256"] = m.weights_sha256
            ops.append(op)
        out: dict[str, Any] = {
            "mode": self.mode,
            "operations": ops,
            "frames": None if self.frames is None else f"{self.frames[0]}:{self.frames[1]}",
            "device": self.device,
            "precision": self.precision,
            "accept_decode_errors": self.accept_decode_errors,
            "policy_file": None if self.policy is None else str(self.policy),
            "maps": self.maps,
            "stills": list(self.stills),
            "report": self.report,
            "tile": self.tile,
            "batch": self.batch,
        }
        if self.psf or self.roi:
            out |= {"psf": self.psf, "roi": list(self.roi) if self.roi else None}
        if self.deinterlace != "fields":
            out["deinterlace"] = self.deinterlace
        if self.weights is not None:
            out["weights_file"] = str(self.weights)
        if self.override_policy is not None:
            out["override_policy"] = self.override_policy
        if self.models_dirs:
            out["models_dirs"] = [str(d) for d in self.models_dirs]
        return out

    @classmethod
    def from_json(cls, params: dict[str, Any]) -> Recipe:
        """The recipe a step recorded (`to_json`'s output, of any format)."""
        ops = params["operations"]
        main = ops[-1]  # the main operation; earlier ones are --ops pre-operations
        frames = params.get("frames")
        roi = params.get("roi")
        weights = params.get("weights_file")
        # a weights file no card names resolves to "unvetted:NAME": the recipe named no model
        model = None if weights and str(main["model"]).startswith("unvetted:") else main["model"]
        return cls(
            mode=params["mode"],
            model=model,
            pre_ops=tuple(o["model"] for o in ops[:-1]),
            scale=int(main["scale"]),
            frames=None if frames is None else _frame_pair(frames),
            device=params.get("device", "cpu"),
            accept_decode_errors=bool(params.get("accept_decode_errors", False)),
            weights=Path(weights) if weights else None,
            precision=params.get("precision", "fp32"),
            policy=Path(params["policy_file"]) if params.get("policy_file") else None,
            override_policy=params.get("override_policy"),
            models_dirs=tuple(Path(d) for d in params.get("models_dirs", ())),
            maps=bool(params.get("maps", True)),
            stills=tuple(int(s) for s in params.get("stills", ())),
            report=bool(params.get("report", True)),
            tile=params.get("tile"),
            batch=params.get("batch"),
            psf=params.get("psf"),
            roi=(int(roi[0]), int(roi[1]), int(roi[2]), int(roi[3])) if roi else None,
            deinterlace=params.get("deinterlace", "fields"),
        )


@dataclass(frozen=True)
class Examiner:
    name: str
    case_id: str | None
    signer: Signer
    certificate: ReportCertificate | None = None  # report.pdf is signed under it; None: self-signed for the run


def _frame_pair(text: str) -> tuple[int, int]:
    a, b = text.split(":")
    return int(a), int(b)


def parse_frames(text: str | None) -> tuple[int, int] | None:
    """`A:B`: decoded frames A..B-1 (see FRAMES_HELP). One rule for both bounds: each is a
    whole number >= 0 or left out, and A < B."""
    if text is None:
        return None
    start, sep, end = text.partition(":")
    try:
        a = int(start) if start.strip() else 0
        b = int(end) if end.strip() else None
    except ValueError:
        raise UsageError(f"--frames {text!r}: expected A:B with whole frame numbers, e.g. 0:100. {FRAMES_HELP}") from None
    if not sep or a < 0 or (b is not None and (b < 0 or b <= a)):
        raise UsageError(f"--frames {text!r}: expected A:B with 0 <= A < B. {FRAMES_HELP}")
    return a, (-1 if b is None else b)


def parse_roi(text: str | None) -> tuple[int, int, int, int] | None:
    if text is None:
        return None
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--roi {text}: expected X,Y,W,H in pixels") from None
    return x, y, w, h


def parse_ops(text: str | None, main_model: str | None) -> tuple[tuple[str, ...], str | None]:
    """--ops A,B,C -> (pre-operation model ids, main model id). `sr` stands for --model; the
    last operation is the main one, every earlier one must keep the frame size (x1)."""
    if not text:
        return (), main_model
    tokens = [t.strip() for t in text.split(",") if t.strip()]
    if not tokens:
        raise UsageError("--ops: name at least one operation")
    if "sr" in tokens[:-1]:
        raise UsageError("--ops: sr (the --model upscale) must be the last operation")
    ids = [OP_ALIASES.get(t, t) for t in tokens]
    last = tokens[-1]
    if last != "sr" and main_model is not None:
        raise UsageError(f"--ops ends with {last}, so --model {main_model} would not run; end --ops with sr to use it")
    return tuple(ids[:-1]), (main_model if last == "sr" else ids[-1])


def pre_models(recipe: Recipe) -> list[ResolvedModel]:
    """The x1 operations that run before the main model, resolved (every one must be x1, and a
    deinterlacer, which changes the frame count, must come first)."""
    out = []
    for i, model_id in enumerate(recipe.pre_ops):
        m = resolve(model_id, None, list(recipe.models_dirs))
        if not keeps_frame_size(m):
            raise UsageError(
                f"--ops: {model_id} changes the frame size; only the last operation may (x1 operations: {', '.join(X1_TASKS)})"
            )
        if task(m) == "deinterlace" and i > 0:
            raise UsageError("--ops: deinterlace must come first (every later step needs whole frames)")
        out.append(m)
    return out


def recipe_facts(recipe: Recipe, model: ResolvedModel) -> RecipeFacts:
    """What the policy judges: the recipe and what its model resolved to."""
    card = model.card
    arch_scale = (model.architecture or {}).get("params", {}).get("scale") if model.neural else None
    scales = tuple(card.data["scales"]) if card else ((int(arch_scale),) if arch_scale else None)
    return RecipeFacts(
        mode=recipe.mode,
        operations=(task(model),) if task(model) in X1_TASKS else ("upscale",),
        model_id=model.id,
        model_class=model.model_class,
        neural=model.neural,
        weights_verified=model.weights_verified,
        card_scales=scales,
        card_deterministic=card.data["deterministic"] if card else None,
        card_precisions=tuple(card.data["precisions"]) if card else None,
        scale=recipe.scale,
        device=recipe.device,
        precision=recipe.precision,
        maps=recipe.maps,
        report=recipe.report,
        data_consistency_available=bool(
            runs_on_luma(model) and card is not None and card.data["degradation"]["operator"] == CONSISTENCY_OPERATOR
        ),
    )


def _check_precision(recipe: Recipe, models: list[ResolvedModel]) -> None:
    """--precision other than fp32 is applied to networks on CUDA only; anywhere else it would
    be recorded without having happened, so it is refused."""
    if recipe.precision not in PRECISIONS:
        raise UsageError(f"--precision {recipe.precision}: use one of {', '.join(PRECISIONS)}")
    if recipe.precision == "fp32":
        return
    if not any(m.neural for m in models):
        raise UsageError(f"--precision {recipe.precision}: only learned models run at reduced precision; classical operations are fp32")
    if recipe.device != "cuda":
        raise UsageError(f"--precision {recipe.precision} needs --device cuda (on the CPU every model runs in fp32)")


def decide_recipe(recipe: Recipe) -> tuple[ResolvedModel, Decision]:
    """Resolve the model and judge the recipe, touching no evidence frame."""
    if not 1 <= recipe.scale <= 8:
        raise UsageError(f"--scale {recipe.scale}: must be an integer from 1 to 8")
    model = resolve(recipe.model, recipe.weights, list(recipe.models_dirs))
    x1 = keeps_frame_size(model)
    if recipe.scale == 1 and not x1:
        raise UsageError(f"--scale 1: {model.id} is not a restoration model; upscaling needs --scale 2 to 8")
    if x1 and recipe.scale != 1:
        raise UsageError(f"--scale {recipe.scale}: {model.id} works at --scale 1 (it does not change the frame size)")
    pres = pre_models(recipe)
    _check_precision(recipe, [*pres, model])
    deblurs = task(model) == "deblur" or any(task(m) == "deblur" for m in pres)
    if (recipe.psf or recipe.roi) and not deblurs:
        raise UsageError("--psf and --roi apply to the deblur operation only")
    if deblurs and recipe.psf:
        from forensic_vsr.ops.deblur import parse_psf

        parse_psf(recipe.psf)  # a bad PSF fails here, before any file is written
    decision = decide(recipe_facts(recipe, model), recipe.policy, recipe.override_policy)
    if any(task(m) == "deinterlace" for m in pres) and task(model) == "deinterlace":
        raise UsageError("--ops: deinterlace can run once")
    extra: list[RuleResult] = []
    for m in pres:
        sub = decide(recipe_facts(dataclasses.replace(recipe, scale=1, pre_ops=()), m), recipe.policy, recipe.override_policy)
        extra += [RuleResult(f"{m.id}.{r.rule}", r.outcome, r.reason) for r in sub.results if r.rule != "policy_strength"]
    if extra:
        decision = dataclasses.replace(decision, results=tuple(extra) + decision.results)
    return model, decision
