"""The lossless value codec shared by the host and the runner (sandbox_image/taco_runner/valuecodec.py)."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from harness.data.testcases import allow_long_int_strings
from sandbox_image.taco_runner import valuecodec


@pytest.fixture(autouse=True)
def _no_digit_limit():
    allow_long_int_strings()


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        1,
        -5,
        10**5000,
        1.5,
        math.inf,
        "x\ud800",
        [1, (2, 3)],
        (1,),
        {1: [2]},
        {"a"},
        frozenset([1]),
        b"\x00\xff",
        1 + 2j,
        Fraction(1, 3),
        Decimal("1.10"),
    ],
    ids=lambda v: type(v).__name__,
)
def test_codec_round_trip_keeps_type_and_value(value):
    back = valuecodec.loads(valuecodec.dumps(value))
    assert type(back) is type(value) and (back == value or value != value)


def test_codec_numpy_and_opaque():
    array = np.arange(6, dtype=np.int32).reshape(2, 3)
    back = valuecodec.loads(valuecodec.dumps(array))
    assert back.dtype == np.int32 and back.shape == (2, 3) and (back == array).all()
    assert type(valuecodec.loads(valuecodec.dumps(np.float64(2.5)))) is np.float64
    opaque = valuecodec.loads(valuecodec.dumps(iter([1])))
    assert opaque != opaque and not (opaque == [1])  # noqa: SIM201  # __eq__ itself, not __ne__
    with pytest.raises(TypeError):
        opaque[0]
    loop = []
    loop.append(loop)
    with pytest.raises(valuecodec.EncodeError):
        valuecodec.dumps(loop)
