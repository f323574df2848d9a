"""Model cards: one JSON document per model, validated by `models/card.schema.json`.

A card vouches for exactly one weights file, named by its SHA-256; weights are re-hashed on
every load and a mismatch is refused. Weights that no card names are `unvetted`."""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from forensic_vsr.errors import UsageError
from forensic_vsr.media import file_sha256
from forensic_vsr.resources import MODELS

MODELS_PATH_ENV = "FVSR_MODELS_PATH"


@dataclass(frozen=True)
class ModelCard:
    data: dict[str, Any]
    path: Path
    sha256: str
    builtin: bool

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def model_class(self) -> str:
        return str(self.data["class"])

    @property
    def weights_path(self) -> Path | None:
        w = self.data["weights"]
        return None if w is None else (self.path.parent / w["file"])

    @property
    def weights_sha256(self) -> str | None:
        w = self.data["weights"]
        return None if w is None else str(w["sha256"])


@dataclass(frozen=True)
class ResolvedModel:
    """What a recipe's model turned out to be, with everything the policy needs to judge it."""

    id: str
    model_class: str  # classical | fidelity | generative | unvetted
    card: ModelCard | None
    weights_path: Path | None
    weights_sha256: str | None
    weights_verified: bool | None  # None: no weights (classical)
    architecture: dict[str, Any] | None

    @property
    def neural(self) -> bool:
        return self.weights_path is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "class": self.model_class,
            "card": None
            if self.card is None
            else {
                "path": self.card.path.name,
                "sha256": self.card.sha256,
                "version": self.card.data["version"],
                "builtin": self.card.builtin,
            },
            "weights_sha256": self.weights_sha256,
            "weights_verified": self.weights_verified,
            "architecture": self.architecture,
        }


@functools.cache
def _card_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((MODELS / "card.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def load_card(path: Path, builtin: bool = False) -> ModelCard:
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable model card ({exc})") from None
    errors = sorted(_card_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        raise UsageError(f"{path}: model card invalid at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}")
    import hashlib

    return ModelCard(data, path, hashlib.sha256(raw).hexdigest(), builtin)


def card_dirs(extra: list[Path] | None = None) -> list[tuple[Path, bool]]:
    dirs = [(MODELS, True)]
    for entry in os.environ.get(MODELS_PATH_ENV, "").split(os.pathsep):
        if entry:
            dirs.append((Path(entry), False))
    dirs += [(Path(d), False) for d in extra or []]
    return dirs


def registry(extra: list[Path] | None = None) -> dict[str, ModelCard]:
    """Every card, by id. A later directory may not redefine a built-in id."""
    cards: dict[str, ModelCard] = {}
    for directory, builtin in card_dirs(extra):
        if not directory.is_dir():
            raise UsageError(f"{directory}: model card directory does not exist")
        for path in sorted(directory.glob("*.json")):
            if path.name.endswith("schema.json"):
                continue
            card = load_card(path, builtin)
            if card.id in cards:
                raise UsageError(f"{path}: model id {card.id!r} is already defined by {cards[card.id].path}")
            cards[card.id] = card
    return cards


def resolve(model_id: str | None, weights: Path | None, extra: list[Path] | None = None) -> ResolvedModel:
    """Find the model a recipe names: by card id, or by a weights file (vetted when a card
    names its SHA-256, else unvetted)."""
    cards = registry(extra)
    if weights is not None:
        weights = Path(weights)
        if not weights.is_file():
            raise UsageError(f"--weights {weights}: no such file")
        digest = file_sha256(weights)
        card = next((c for c in cards.values() if c.weights_sha256 == digest), None)
        if model_id is not None and card is not None and card.id != model_id:
            raise UsageError(f"--weights {weights.name} belongs to card {card.id!r}, not {model_id!r}")
        if card is not None:
            return ResolvedModel(card.id, card.model_class, card, weights, digest, True, card.data["architecture"])
        from forensic_vsr.models.arch import detect_architecture

        arch = detect_architecture(weights)
        return ResolvedModel(f"unvetted:{weights.name}", "unvetted", None, weights, digest, None, arch)
    if model_id is None:
        raise UsageError("no model: pass --model ID (see `fvsr models list`) or --weights FILE")
    card = cards.get(model_id)
    if card is None:
        raise UsageError(f"--model {model_id}: no such model card; available: {', '.join(sorted(cards))}")
    path = card.weights_path
    if path is None:
        return ResolvedModel(card.id, card.model_class, card, None, None, None, card.data["architecture"])
    actual = file_sha256(path) if path.is_file() else None
    return ResolvedModel(card.id, card.model_class, card, path, actual, actual == card.weights_sha256, card.data["architecture"])
