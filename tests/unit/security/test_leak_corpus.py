"""The leak guard against its labelled corpus: every true sample caught, every false one passed.

The two rates are also printed (``-s``), recorded as test properties (JUnit XML) and shown
in the terminal summary by ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from security.errors import LeakDetectedError
from security.leakguard import check, scan
from tests.unit.security.leak_corpus import CATCH, PASS, Sample


def _label(sample: Sample) -> str:
    return sample.label


def _strings(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def test_corpus_is_big_enough_and_labels_are_unique() -> None:
    """At least 40 samples each way, each with its own label."""
    assert len(CATCH) >= 40
    assert len(PASS) >= 40
    labels = [s.label for s in (*CATCH, *PASS)]
    assert len(set(labels)) == len(labels)


@pytest.mark.parametrize("sample", CATCH, ids=_label)
def test_true_sample_is_caught(sample: Sample) -> None:
    """Each credential sample, plain, base64-wrapped, fullwidth or split, is reported."""
    assert scan(sample.payload), sample.label


@pytest.mark.parametrize("sample", PASS, ids=_label)
def test_false_sample_passes(sample: Sample) -> None:
    """Each image, digest, reference, presigned URL and look-alike text passes."""
    assert scan(sample.payload) == [], sample.label


@pytest.mark.parametrize("sample", CATCH, ids=_label)
def test_refusal_names_field_and_kind_never_the_value(sample: Sample) -> None:
    """The error is the fixed sentence around a path and a kind: no piece of the value."""
    [first, *_] = scan(sample.payload)
    with pytest.raises(LeakDetectedError) as info:
        check(sample.payload)
    err = info.value
    assert err.field == first.field
    assert str(err) == (
        f"field {first.field!r} looks like it holds a secret ({first.kind}); "
        "send it in a field declared secret"
    )
    for value in _strings(sample.payload):
        pieces = {value[i : i + 12] for i in range(0, max(len(value) - 12, 0) + 1, 6)}
        shown = f"{err} {err!r} {err.args!r} {first.kind}"
        assert not [p for p in pieces if len(p) == 12 and p in shown and p not in first.field]


def test_detection_and_false_positive_rates(
    record_leak_rates: Callable[[dict[str, tuple[int, int]]], None],
    record_property: Callable[[str, object], None],
) -> None:
    """Detection is 100 % on the true samples and the false-positive rate 0 % on the false."""
    caught = sum(bool(scan(s.payload)) for s in CATCH)
    flagged = sum(bool(scan(s.payload)) for s in PASS)
    rates = {"detection": (caught, len(CATCH)), "false positive": (flagged, len(PASS))}
    record_leak_rates(rates)
    for name, (hits, total) in rates.items():
        record_property(f"{name} rate", f"{hits}/{total}")
        print(f"leak guard {name} rate: {hits}/{total} = {hits / total:.1%}")
    assert caught == len(CATCH)
    assert flagged == 0
