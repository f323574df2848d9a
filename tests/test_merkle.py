"""RFC 9162 Merkle trees against the transparency-dev/merkle published vectors and properties."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forensic_vsr.integrity import merkle


def b(s: str) -> bytes:
    return base64.b64decode(s) if s else b""


# A representative subset of transparency-dev/merkle testdata (Apache-2.0), embedded as facts.
ROOT8 = "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg="
LEAF0 = "bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0="
PROOF0 = [
    "lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=",
    "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
    "a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ=",
]
# RFC 6962 reference leaves used by the transparency-dev tests (tree of 8).
LEAVES = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]]


def test_embedded_inclusion_vector() -> None:
    assert merkle.root(LEAVES) == b(ROOT8)
    assert merkle.hash_leaf(LEAVES[0]) == b(LEAF0)
    assert merkle.verify_inclusion(b(LEAF0), 0, 8, [b(p) for p in PROOF0], b(ROOT8))
    assert [base64.b64encode(p).decode() for p in merkle.inclusion_proof([merkle.hash_leaf(x) for x in LEAVES], 0)] == PROOF0
    # corrupted variants from the same suite: wrong index, wrong size, flipped bit, truncated
    assert not merkle.verify_inclusion(b(LEAF0), 1, 8, [b(p) for p in PROOF0], b(ROOT8))
    assert not merkle.verify_inclusion(b(LEAF0), 0, 16, [b(p) for p in PROOF0], b(ROOT8))
    flipped = bytearray(b(PROOF0[1]))
    flipped[0] ^= 0x10
    assert not merkle.verify_inclusion(b(LEAF0), 0, 8, [b(PROOF0[0]), bytes(flipped), b(PROOF0[2])], b(ROOT8))
    assert not merkle.verify_inclusion(b(LEAF0), 0, 8, [b(p) for p in PROOF0[:2]], b(ROOT8))
    assert not merkle.verify_inclusion(b(LEAF0), 0, 8, [b(p) for p in PROOF0] + [b(ROOT8)], b(ROOT8))


def test_embedded_consistency_vector() -> None:
    assert merkle.verify_consistency(1, 8, b(LEAF0), b(ROOT8), [b(p) for p in PROOF0])
    assert not merkle.verify_consistency(1, 8, b(ROOT8), b(LEAF0), [b(p) for p in PROOF0])
    assert not merkle.verify_consistency(0, 8, merkle.EMPTY_ROOT, b(ROOT8), [])


# The full published set, vendored unmodified (see tests/vectors/transparency-dev-merkle/README.md).
VENDORED = Path(__file__).resolve().parent / "vectors" / "transparency-dev-merkle"
VECTORS = VENDORED / "testdata"
REFERENCE_LEAF_HASHES = [merkle.hash_leaf(x) for x in LEAVES]


def _cases(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).rglob("*.json"))


def _id(path: Path) -> str:
    return str(path.relative_to(VECTORS))


def _proof(v: dict) -> list[bytes]:  # type: ignore[type-arg]
    return [b(p) for p in v["proof"] or []]


def test_vendored_vectors_are_complete_and_unmodified() -> None:
    listed = {}
    for line in (VENDORED / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    on_disk = {str(f.relative_to(VENDORED)) for f in VENDORED.rglob("*") if f.is_file()} - {"SHA256SUMS", "README.md"}
    assert on_disk == set(listed), f"added {sorted(on_disk - set(listed))}, missing {sorted(set(listed) - on_disk)}"
    for name, digest in listed.items():
        assert hashlib.sha256((VENDORED / name).read_bytes()).hexdigest() == digest, name
    assert (len(_cases("inclusion")), len(_cases("consistency"))) == (98, 98)
    # every kind of corruption the upstream suite publishes is among the cases run below
    names = {f.stem for f in VECTORS.rglob("*.json")}
    for kind in [
        "modified-proof",
        "truncated-proof",
        "trailing-garbage",
        "preceding-garbage",
        "wrong-root",
        "swapped-roots",
        "treeSize-div",
        "treeSize-mul",
        "size1-plus",
        "size2-div",
        "empty-proof",
        "random-root",
        "wrong-leaf",
    ]:
        assert any(n.startswith(kind) for n in names), kind


@pytest.mark.parametrize("path", _cases("inclusion"), ids=_id)
def test_published_inclusion_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    ok = merkle.verify_inclusion(b(v["leafHash"]), v["leafIdx"], v["treeSize"], _proof(v), b(v["root"]))
    assert ok is (not v["wantErr"]), f"{v['desc']}: {'accepted a corrupted proof' if ok else 'rejected a valid proof'}"
    if not v["wantErr"] and path.stem == "happy-path":
        # our prover, over the RFC 6962 reference leaves, produces exactly the published root and proof
        leaves = REFERENCE_LEAF_HASHES[: v["treeSize"]]
        assert merkle.root_from_leaf_hashes(leaves) == b(v["root"])
        assert merkle.inclusion_proof(leaves, v["leafIdx"]) == _proof(v)


@pytest.mark.parametrize("path", _cases("consistency"), ids=_id)
def test_published_consistency_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    ok = merkle.verify_consistency(v["size1"], v["size2"], b(v["root1"]), b(v["root2"]), _proof(v))
    assert ok is (not v["wantErr"]), f"{v['desc']}: {'accepted a corrupted proof' if ok else 'rejected a valid proof'}"
    if not v["wantErr"] and path.stem == "happy-path":
        leaves = REFERENCE_LEAF_HASHES[: v["size2"]]
        assert merkle.root_from_leaf_hashes(leaves[: v["size1"]]) == b(v["root1"])
        assert merkle.root_from_leaf_hashes(leaves) == b(v["root2"])
        assert merkle.consistency_proof(leaves, v["size1"]) == _proof(v)


leaves_st = st.lists(st.binary(max_size=8), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(leaves_st, st.data())
def test_inclusion_proofs_verify_and_detect_tampering(leaves: list[bytes], data: st.DataObject) -> None:
    hashes = [merkle.hash_leaf(x) for x in leaves]
    root = merkle.root_from_leaf_hashes(hashes)
    i = data.draw(st.integers(0, len(leaves) - 1))
    proof = merkle.inclusion_proof(hashes, i)
    assert merkle.verify_inclusion(hashes[i], i, len(leaves), proof, root)
    assert not merkle.verify_inclusion(merkle.hash_leaf(leaves[i] + b"x"), i, len(leaves), proof, root)
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        bad = [p if j != k else bytes([p[0] ^ 1]) + p[1:] for j, p in enumerate(proof)]
        assert not merkle.verify_inclusion(hashes[i], i, len(leaves), bad, root)


@settings(max_examples=150, deadline=None)
@given(leaves_st, st.data())
def test_consistency_proofs_show_append_only(leaves: list[bytes], data: st.DataObject) -> None:
    hashes = [merkle.hash_leaf(x) for x in leaves]
    m = data.draw(st.integers(1, len(leaves)))
    old, new = merkle.root_from_leaf_hashes(hashes[:m]), merkle.root_from_leaf_hashes(hashes)
    proof = merkle.consistency_proof(hashes, m)
    assert merkle.verify_consistency(m, len(leaves), old, new, proof)
    if m < len(leaves):
        rewritten = [*hashes[: m - 1], merkle.hash_leaf(b"rewritten history"), *hashes[m:]]
        assert not merkle.verify_consistency(m, len(leaves), merkle.root_from_leaf_hashes(rewritten[:m]), new, proof)


@given(leaves_st)
def test_iterative_root_equals_recursive_definition(leaves: list[bytes]) -> None:
    def mth(xs: list[bytes]) -> bytes:
        if len(xs) == 1:
            return merkle.hash_leaf(xs[0])
        k = 1 << ((len(xs) - 1).bit_length() - 1)
        return merkle.hash_children(mth(xs[:k]), mth(xs[k:]))

    assert merkle.root(leaves) == mth(leaves)
