"""Signed review records: an examiner's still, regions and annotations of one output frame, made
with `fvsr review` and kept as `review/NNNN.json` beside the chain (bundle format 2).

A record is one DSSE envelope (payloadType REVIEW_TYPE, canonical JSON, one line) signed by the
examiner key. Its payload binds it to the bundle (the digest of the chain's last record and the
chain's size: a record cannot be moved to another bundle, nor to a chain that grew), to one output
frame (index, pts and the sha256 output.framehash lists for it) and to the record before it
(`prev`: sha256 of review/(NNNN-1).json, so a record removed from the middle is noticed). The
annotations are coordinates in output pixels; the enhanced pixels are never changed. Verification
(`review_checks`) treats every record as hostile, like the rest of the bundle. Imports neither
torch nor cv2.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forensic_vsr.audit.chain import record_digest, utc_now
from forensic_vsr.audit.checks import ChainView, Check
from forensic_vsr.audit.keys import Signer
from forensic_vsr.audit.safe_read import UnsafeFile, loads_object, read_in_bundle
from forensic_vsr.audit.schemas import schema_errors
from forensic_vsr.integrity import dsse
from forensic_vsr.integrity.framehash import FrameHash

REVIEW_TYPE = "application/vnd.forensic-vsr.review+json"
REVIEW_SCHEMA_ID = "https://forensic-vsr.invalid/review/v1"
REVIEW_DIR = "review"
REVIEW_MAX_BYTES = 1 << 20
REVIEW_MAX_RECORDS = 10_000
_NAME = re.compile(r"\Areview/(\d{4})\.json\Z")


class ReviewError(ValueError):
    """A review record is malformed, unsigned by the supplied key, or bound to something else."""


def review_name(seq: int) -> str:
    return f"{REVIEW_DIR}/{seq:04d}.json"


def review_files(names: Iterable[str]) -> list[str]:
    """The names of the form review/NNNN.json among `names`, in sequence order."""
    return sorted(n for n in names if _NAME.match(n))


@dataclass(frozen=True)
class BundleBinding:
    """What a review record is bound to: the chain as it stands (its last record and size)."""

    chain_head: str
    tree_size: int

    @classmethod
    def of(cls, view: ChainView) -> BundleBinding:
        if not view.lines:
            raise ReviewError("the bundle's chain has no records to bind a review to")
        return cls(record_digest(view.lines[-1]), len(view.lines))


@dataclass(frozen=True)
class ReviewRecord:
    """The payload of review/NNNN.json (schema audit/review.schema.json)."""

    seq: int
    prev: str | None  # sha256 of the previous review file's bytes; None for the first
    bundle: BundleBinding
    frame: int
    pts: int
    frame_sha256: str
    still: bool
    annotations: tuple[dict[str, Any], ...]  # type, coordinates in output pixels, text
    examiner: str
    keyid: str
    time: str

    def to_json(self) -> dict[str, Any]:
        return {
            "_type": REVIEW_SCHEMA_ID,
            "seq": self.seq,
            "prev": self.prev,
            "bundle": {"chain_head": self.bundle.chain_head, "tree_size": self.bundle.tree_size},
            "frame": {"index": self.frame, "pts": self.pts, "sha256": self.frame_sha256},
            "still": self.still,
            "annotations": [dict(a) for a in self.annotations],
            "examiner": {"name": self.examiner, "keyid": self.keyid},
            "time": self.time,
        }

    @classmethod
    def from_json(cls, obj: Any) -> ReviewRecord:
        """The record, if `obj` matches the schema (ReviewError naming the first problem otherwise)."""
        problems = schema_errors("review", obj)
        if problems:
            raise ReviewError(f"does not match audit/review.schema.json: {problems[0][:200]}")
        return cls(
            seq=obj["seq"],
            prev=obj["prev"],
            bundle=BundleBinding(obj["bundle"]["chain_head"], obj["bundle"]["tree_size"]),
            frame=obj["frame"]["index"],
            pts=obj["frame"]["pts"],
            frame_sha256=obj["frame"]["sha256"],
            still=obj["still"],
            annotations=tuple(obj["annotations"]),
            examiner=obj["examiner"]["name"],
            keyid=obj["examiner"]["keyid"],
            time=obj["time"],
        )


def new_review(
    seq: int, prev: str | None, binding: BundleBinding, line: FrameHash, frame: int, still: bool, annotations: list[Any], signer: Signer
) -> ReviewRecord:
    """A record of output frame `frame` (whose output.framehash line is `line`), checked against
    the schema before anything is signed."""
    record = ReviewRecord(seq, prev, binding, frame, line.pts, line.sha256, still, tuple(annotations), signer.name, signer.keyid, utc_now())
    return ReviewRecord.from_json(record.to_json())


def sign_review(record: ReviewRecord, signer: Signer) -> bytes:
    """The file's bytes: the record's DSSE envelope, canonical JSON, one line."""
    envelope = dsse.sign(dsse.canonical_json(record.to_json()), REVIEW_TYPE, signer.sign, signer.keyid)
    return dsse.canonical_json(envelope) + b"\n"


def open_review(data: bytes, key: Ed25519PublicKey, name: str) -> ReviewRecord:
    """The record in `data` if it is signed by `key` and matches the schema (ReviewError otherwise)."""
    try:
        envelope = loads_object(data, name)
        return ReviewRecord.from_json(loads_object(dsse.open_envelope(envelope, key, REVIEW_TYPE), f"{name}'s payload"))
    except (UnsafeFile, dsse.EnvelopeError) as exc:
        raise ReviewError(str(exc)) from None


def outside_frame(annotation: dict[str, Any], size: tuple[int, int]) -> str | None:
    """Why a (schema-valid) annotation does not lie inside a `size` (width, height) frame, or None."""
    x, y = annotation["x"], annotation["y"]
    right = x + annotation["w"] - 1 if "w" in annotation else max(x, annotation.get("x2", x))
    bottom = y + annotation["h"] - 1 if "h" in annotation else max(y, annotation.get("y2", y))
    if right >= size[0] or bottom >= size[1]:
        return f"a {annotation['type']} annotation reaches ({right}, {bottom}), outside the {size[0]}x{size[1]} output frame"
    return None


def _judge(
    record: ReviewRecord, seq: int, prev: str | None, binding: BundleBinding, output: list[FrameHash], size: tuple[int, int]
) -> list[str]:
    found = []
    if record.seq != seq:
        found.append(f"sequence number {record.seq}, the file name says {seq}")
    if record.prev != prev:
        found.append(f"prev is {str(record.prev)[:16]}…, the previous review record's sha256 is {str(prev)[:16]}…")
    if record.bundle != binding:
        found.append(
            f"bound to chain head {record.bundle.chain_head[:16]}… ({record.bundle.tree_size} records), "
            f"this bundle's is {binding.chain_head[:16]}… ({binding.tree_size} records)"
        )
    if record.frame >= len(output):
        found.append(f"names output frame {record.frame}, output.framehash lists {len(output)} frames")
    elif (record.frame_sha256, record.pts) != (output[record.frame].sha256, output[record.frame].pts):
        line = output[record.frame]
        found.append(
            f"frame {record.frame}: sha256 {record.frame_sha256[:16]}… (pts {record.pts}) signed, "
            f"output.framehash has {line.sha256[:16]}… (pts {line.pts})"
        )
    found += [p for p in (outside_frame(a, size) for a in record.annotations) if p]
    return found


def review_checks(
    bundle: Path, view: ChainView, key: Ed25519PublicKey, names: list[str], output: list[FrameHash], size: tuple[int, int]
) -> Iterator[Check]:
    """One check per review record in `names` (review/NNNN.json, in order): signed by `key`,
    bound to this bundle's chain head, numbered without gaps and linked to the one before, naming
    an output frame whose sha256 is output.framehash's line (`output`, already verified), with
    annotations inside the `size` (width, height) output frame."""
    if len(names) > REVIEW_MAX_RECORDS:
        yield Check.failed("review", f"{len(names)} review records, more than {REVIEW_MAX_RECORDS}")
        return
    binding = BundleBinding.of(view)
    prev: str | None = None
    for seq, name in enumerate(names):
        check = f"review.{name.removeprefix(REVIEW_DIR + '/').removesuffix('.json')}"
        if name != review_name(seq):
            yield Check.failed(check, f"{name} found where {review_name(seq)} was expected: a review record is missing")
            return
        try:
            data = read_in_bundle(bundle, name, REVIEW_MAX_BYTES)
        except UnsafeFile as exc:
            yield Check.failed(check, str(exc))
            prev = None
            continue
        expected_prev, prev = prev, hashlib.sha256(data).hexdigest()
        try:
            record = open_review(data, key, name)
        except ReviewError as exc:
            yield Check.failed(check, f"{name}: {exc}")
            continue
        problems = _judge(record, seq, expected_prev, binding, output, size)
        yield (
            Check.failed(check, f"{name}: " + "; ".join(problems[:4]))
            if problems
            else Check.passed(
                check,
                f"{name} signed by the supplied key ({record.examiner}, {record.time}), bound to chain head "
                f"{binding.chain_head[:16]}…, frame {record.frame} sha256 {record.frame_sha256[:16]}… as output.framehash, "
                f"{len(record.annotations)} annotation(s){', still' if record.still else ''}",
            )
        )
