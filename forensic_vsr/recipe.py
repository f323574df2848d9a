"""What the examiner asked for, and its judgement by the policy.

`Recipe` is recorded verbatim as the step's external parameters (`to_json`) and read back by
`fvsr verify --reproduce` (`from_json`); `decide_recipe` resolves the models and evaluates the
policy without touching any evidence frame."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
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
STILL_HELP = (
    "N is an output frame, counted from 0 at the first frame --frames selects (so --frames 40:50 --still 0 is "
    "evidence frame 40); a field-splitting deinterlace makes two output frames per input frame"
)
SCALE_HELP = (
    "integer scale factor, 1 to 8; default: the main model's (1 for an operation that keeps the frame size, "
    "such as deblur or fidelity-restore; the card's scale where it has one, e.g. 4 for fidelity-sr-x4; "
    "2 for lanczos and bicubic, which do 2, 3 and 4)"
)
DEFAULT_SCALE = 2  # for a model that does several scales (lanczos, bicubic) or whose scale is not known


@dataclass(frozen=True)
class Recipe:
    """What the examiner asked for. Recorded verbatim as the step's external parameters."""

    mode: str
    model: str | None
    scale: int  # resolved: `recipe_scale` turns an omitted --scale into the model's
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
    roi: tuple[int, int, int, int] | None = None  # deblur as recorded before --roi was general: only this region changed
    region: tuple[int, int, int, int] | None = None  # --roi: x, y, width, height (evidence pixels) every operation runs on
    register_roi: tuple[int, int, int, int] | None = None  # integrate, mfsr, stabilise: register on this region only
    registration: str = "static"  # integrate, mfsr, stabilise: "static" (moving content masked) or "whole" (the whole frame)
    deinterlace: str = "fields"  # deinterlace: "fields" (each field a frame, 2x rate) or "blend" (motion-adaptive)
    pre_ops: tuple[str, ...] = ()  # model ids of x1 operations run, in order, before `model` (--ops)
    rate: Fraction | None = None  # --rate: frames per second of evidence that carries no timestamps

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
        if self.region is not None:
            out["region"] = list(self.region)
        if self.register_roi is not None:
            out["register_roi"] = list(self.register_roi)
        if self.registration != "whole":  # a record without it registered on the whole frame, as releases before it did
            out["registration"] = self.registration
        if self.deinterlace != "fields":
            out["deinterlace"] = self.deinterlace
        if self.weights is not None:
            out["weights_file"] = str(self.weights)
        if self.override_policy is not None:
            out["override_policy"] = self.override_policy
        if self.models_dirs:
            out["models_dirs"] = [str(d) for d in self.models_dirs]
        if self.rate is not None:
            out["rate"] = str(self.rate)
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
            region=parse_roi(",".join(str(v) for v in params["region"])) if params.get("region") else None,
            register_roi=parse_roi(",".join(str(v) for v in params["register_roi"])) if params.get("register_roi") else None,
            registration=params.get("registration", "whole"),  # what releases before it did
            deinterlace=params.get("deinterlace", "fields"),
            rate=parse_rate(params.get("rate")),
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


def bounded_frames(frames: tuple[int, int], n_frames: int) -> tuple[int, int]:
    """--frames resolved against the evidence's `n_frames` decoded frames (an open end made
    explicit); a range outside them is a UsageError."""
    a, b = frames
    end = n_frames if b == -1 else b
    if a >= n_frames or end > n_frames:
        raise UsageError(
            f"--frames {a}:{'' if b == -1 else b} is outside the evidence's {n_frames} decoded frames (0:{n_frames}). {FRAMES_HELP}"
        )
    return a, end


def parse_roi(text: str | None, option: str = "--roi") -> tuple[int, int, int, int] | None:
    if text is None:
        return None
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"{option} {text}: expected X,Y,W,H in pixels") from None
    return x, y, w, h


def parse_rate(text: str | None) -> Fraction | None:
    """--rate 25, 30000/1001 or 29.97: a positive frame rate (up to 1000 frames per second)."""
    if text is None:
        return None
    try:
        rate = Fraction(str(text).strip())
    except (ValueError, ZeroDivisionError):
        rate = Fraction(0)
    if not 0 < rate <= 1000:
        raise UsageError(f"--rate {text}: expected frames per second, e.g. 25, 30000/1001 or 29.97")
    return rate


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


def recipe_from_options(options: Mapping[str, Any], frames: tuple[int, int] | None = None) -> Recipe:
    """The recipe of `fvsr enhance`'s options, keyed by their argparse names (`mode`, `model`,
    `ops`, `weights`, `scale`, `no_maps`, `still`, `models_dir`, ...): the one reading of them,
    for the command line and for the jobs of `fvsr batch`. An option left out takes the CLI's
    default; `frames` is parsed by the caller (`parse_frames`), since `policy explain` has none."""
    get = options.get
    pre_ops, main = parse_ops(get("ops"), get("model"))
    weights, policy = get("weights"), get("policy")
    model = main if (main or weights) else "lanczos"
    models_dirs = tuple(Path(d) for d in get("models_dir") or ())
    return Recipe(
        mode=get("mode") or "evidential",
        model=model,
        pre_ops=pre_ops,
        scale=recipe_scale(model, Path(weights) if weights else None, models_dirs, get("scale")),
        frames=frames,
        device=get("device") or "cpu",
        accept_decode_errors=bool(get("accept_decode_errors")),
        weights=Path(weights) if weights else None,
        precision=get("precision") or "fp32",
        policy=Path(policy) if policy else None,
        override_policy=get("override_policy"),
        models_dirs=models_dirs,
        maps=not get("no_maps"),
        stills=tuple(get("still") or ()),
        report=not get("no_report"),
        tile=get("tile"),
        batch=get("batch"),
        psf=get("psf"),
        region=parse_roi(get("roi")),
        register_roi=parse_roi(get("register_roi"), "--register-roi"),
        registration=get("registration") or "static",
        deinterlace=get("deinterlace") or "fields",
        rate=parse_rate(get("rate")),
    )


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


def model_scales(model: ResolvedModel) -> tuple[int, ...] | None:
    """The scales the model does: its card's, else its architecture's; None: not known."""
    if model.card is not None:
        return tuple(int(s) for s in model.card.data["scales"])
    arch_scale = (model.architecture or {}).get("params", {}).get("scale") if model.neural else None
    return (int(arch_scale),) if arch_scale else None


def scale_for(model: ResolvedModel, requested: int | None) -> int:
    """The one scale rule. Unless given, the scale follows the main model: 1 for an operation
    that keeps the frame size, the card's scale where it has one, else DEFAULT_SCALE. A given
    scale the model cannot do is a usage error (before any bundle is written), not a policy
    refusal."""
    if requested is not None and not 1 <= requested <= 8:
        raise UsageError(f"--scale {requested}: must be an integer from 1 to 8")
    scales = model_scales(model)
    if keeps_frame_size(model):
        if requested not in (None, 1):
            raise UsageError(f"--scale {requested}: {model.id} works at --scale 1 (it does not change the frame size); leave --scale out")
        return 1
    if requested is None:
        return scales[0] if scales and len(scales) == 1 else DEFAULT_SCALE
    can = f"x{', x'.join(map(str, scales))}" if scales else "x2 to x8"
    if requested == 1:
        raise UsageError(f"--scale 1: {model.id} is not a restoration model; it upscales {can}")
    if scales is not None and requested not in scales:
        raise UsageError(f"--scale {requested}: {model.id} does {can} only; leave --scale out for x{scale_for(model, None)}")
    return requested


def recipe_scale(model_id: str | None, weights: Path | None, models_dirs: tuple[Path, ...], requested: int | None) -> int:
    """`scale_for` the model a recipe names (resolved as `decide_recipe` resolves it)."""
    return scale_for(resolve(model_id, weights, list(models_dirs)), requested)


def recipe_facts(recipe: Recipe, model: ResolvedModel) -> RecipeFacts:
    """What the policy judges: the recipe and what its model resolved to."""
    card = model.card
    scales = model_scales(model)
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
    """Resolve the model and judge the recipe, touching no evidence frame. `recipe.scale` is
    resolved already (`recipe_scale`); one the model cannot do is a UsageError."""
    model = resolve(recipe.model, recipe.weights, list(recipe.models_dirs))
    scale_for(model, recipe.scale)  # the recorded scale obeys the rule the CLI's default follows
    pres = pre_models(recipe)
    _check_precision(recipe, [*pres, model])
    deblurs = task(model) == "deblur" or any(task(m) == "deblur" for m in pres)
    if (recipe.psf or recipe.roi) and not deblurs:
        raise UsageError("--psf applies to the deblur operation only")
    if recipe.register_roi and not any(task(m) in ("multiframe-sr", "integrate", "stabilise") for m in [*pres, model]):
        raise UsageError("--register-roi applies to the operations that register frames (integrate, stabilise, mfsr) only")
    if deblurs and recipe.psf:
        from forensic_vsr.ops.deblur import parse_psf

        parse_psf(recipe.psf)  # a bad PSF fails here, before any file is written
    if any(task(m) == "deinterlace" for m in pres) and task(model) == "deinterlace":
        raise UsageError("--ops: deinterlace can run once")
    return model, judge_recipe(recipe, model, pres, recipe.policy)


def judge_recipe(recipe: Recipe, model: ResolvedModel, pres: list[ResolvedModel], policy: Path | None) -> Decision:
    """The policy's decision on resolved models: the main model's rules, preceded by every
    pre-operation's rules (named `MODEL.rule`). Pure; `fvsr verify` calls it again with the
    auditor's cards and policy file to re-judge a recorded recipe."""
    decision = decide(recipe_facts(recipe, model), policy, recipe.override_policy)
    extra: list[RuleResult] = []
    for m in pres:
        sub = decide(recipe_facts(dataclasses.replace(recipe, scale=1, pre_ops=()), m), policy, recipe.override_policy)
        extra += [RuleResult(f"{m.id}.{r.rule}", r.outcome, r.reason) for r in sub.results if r.rule != "policy_strength"]
    return dataclasses.replace(decision, results=tuple(extra) + decision.results) if extra else decision
