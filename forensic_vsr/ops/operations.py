"""Which stage runs which model: the one table from a card's task to its frame operation."""

from __future__ import annotations

from forensic_vsr.models.registry import ResolvedModel
from forensic_vsr.models.tasks import task
from forensic_vsr.ops.restoration_stages import DeblurStage, DeinterlaceStage
from forensic_vsr.ops.stages import PlaneStage, Stage, StageParams
from forensic_vsr.ops.temporal_stages import IntegrateStage, MultiFrameStage, StabiliseStage

STAGE_BY_TASK: dict[str, type[PlaneStage]] = {
    "multiframe-sr": MultiFrameStage,
    "deblur": DeblurStage,
    "stabilise": StabiliseStage,
    "integrate": IntegrateStage,
    "deinterlace": DeinterlaceStage,
}


def stage_for(model: ResolvedModel, params: StageParams) -> Stage:
    """The stage that runs `model` (networks and classical interpolation: PlaneStage)."""
    return STAGE_BY_TASK.get(task(model), PlaneStage)(model, params)


def margin_for(model: ResolvedModel, params: StageParams) -> int:
    """The evidence pixels the stage of `model` needs around a region, on each side (--roi)."""
    return STAGE_BY_TASK.get(task(model), PlaneStage).margin_for(model, params)
