"""What a resolved model does, read off its card: its task, whether it keeps the frame size,
and whether it runs on the luma plane itself (everything else goes through a classical kernel)."""

from __future__ import annotations

from forensic_vsr.models.registry import ResolvedModel

X1_TASKS = ("restore", "deblur", "stabilise", "integrate", "deinterlace")  # operations that keep the frame size
LUMA_TASKS = ("multiframe-sr", "integrate", "deblur", "restore")  # operations defined on a luma plane


def task(model: ResolvedModel) -> str:
    """The card's task; a model without a card (weights brought by the user) is an upscaler."""
    return model.card.data["task"] if model.card is not None else "sr"


def keeps_frame_size(model: ResolvedModel) -> bool:
    return model.card is not None and model.card.data["task"] in X1_TASKS


def runs_on_luma(model: ResolvedModel) -> bool:
    """The model itself runs on luma (a network, or multi-frame reconstruction); every other
    plane goes through a classical kernel."""
    return model.neural or task(model) == "multiframe-sr"


def op_name(model: ResolvedModel) -> str:
    """The operation's name in the recorded recipe: the x1 task, or `upscale`."""
    return task(model) if task(model) in X1_TASKS else "upscale"
