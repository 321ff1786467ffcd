"""Lossless, execution-free encoding of Python values between the sandbox and the host.

Call-based solutions return arbitrary Python objects, and the TACO judge compares them with ``==``
against the expected outputs.  The comparison happens on the host (expected outputs never enter the
sandbox), so the returned object is shipped as data: every builtin container and scalar keeps its
exact type (``(1, 2)`` is not ``[1, 2]`` nested inside a list, ``True`` is not ``1``), numpy arrays
and scalars keep their dtype, and anything else becomes an ``Opaque`` stand-in that equals nothing.
The same encoding carries call arguments into the sandbox, because TACO's int-keyed dicts do not
survive plain JSON.

Standard library only (numpy only when a numpy value is met): this module runs in the sandbox as
``taco_runner.valuecodec`` and on the host as ``sandbox_image.taco_runner.valuecodec``.  Decoding
never executes code.
"""

import base64
import json
import math
from decimal import Decimal
from fractions import Fraction

# Tags.  A JSON array is always tagged; plain JSON strings, finite floats, ints, bools and null
# stand for themselves.
_LIST, _TUPLE, _DICT, _SET, _FROZENSET = "L", "T", "D", "S", "F"
_FLOAT, _COMPLEX, _BYTES, _FRACTION, _DECIMAL = "f", "c", "b", "q", "d"
_NDARRAY, _NPSCALAR, _OPAQUE, _BIGINT = "N", "n", "O", "i"

# JSON integers beyond this many digits are sent as strings: some JSON readers cap them.
_MAX_PLAIN_INT_DIGITS = 4000


class EncodeError(ValueError):
    """The value cannot be encoded (recursive, too deep or too large)."""


class Opaque:
    """Stand-in for a returned object of a type outside the encoding (a generator, a custom class).

    It equals nothing, and indexing it raises, like a foreign object would in the TACO comparison.
    """

    __slots__ = ("text", "type_name")

    def __init__(self, type_name, text):
        self.type_name = type_name
        self.text = text

    def __eq__(self, other):
        return False

    def __ne__(self, other):
        return True

    __hash__ = None  # type: ignore[assignment]  # unhashable, as a foreign object may be

    def __getitem__(self, index):
        raise TypeError(f"'{self.type_name}' object is not subscriptable")

    def __repr__(self):
        return f"<opaque {self.type_name}: {self.text[:200]}>"


def encode(value, max_depth=10_000):
    """Return the JSON-ready form of *value*; raise EncodeError when it cannot be represented."""
    try:
        return _encode(value, max_depth, set())
    except RecursionError as exc:
        raise EncodeError("value nests too deeply to encode") from exc


def _encode(value, depth, active):
    if depth <= 0:
        raise EncodeError("value nests too deeply to encode")
    if value is None or value is True or value is False:
        return value
    cls = type(value)
    if cls is str:
        return value
    if cls is int:
        return value if len(str(value)) <= _MAX_PLAIN_INT_DIGITS else [_BIGINT, str(value)]
    if cls is float:
        return value if math.isfinite(value) else [_FLOAT, repr(value)]
    numpy_form = _encode_numpy(value, depth, active)
    if numpy_form is not None:
        return numpy_form
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        key = id(value)
        if key in active:
            raise EncodeError("value contains itself")
        active.add(key)
        try:
            if isinstance(value, list):
                return [_LIST] + [_encode(v, depth - 1, active) for v in value]
            if isinstance(value, tuple):
                return [_TUPLE] + [_encode(v, depth - 1, active) for v in value]
            if isinstance(value, dict):
                return [_DICT] + [[_encode(k, depth - 1, active), _encode(v, depth - 1, active)] for k, v in value.items()]
            tag = _FROZENSET if isinstance(value, frozenset) else _SET
            return [tag] + [_encode(v, depth - 1, active) for v in value]
        finally:
            active.discard(key)
    # Subclasses of scalars (IntEnum, str subclasses, ...) compare like their base type.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return _encode(int(value), depth, active)
    if isinstance(value, float):
        return _encode(float(value), depth, active)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, complex):
        return [_COMPLEX, repr(value.real), repr(value.imag)]
    if isinstance(value, (bytes, bytearray)):
        return [_BYTES, base64.b64encode(bytes(value)).decode("ascii")]
    if isinstance(value, Fraction):
        return [_FRACTION, str(value.numerator), str(value.denominator)]
    if isinstance(value, Decimal):
        return [_DECIMAL, str(value)]
    try:
        text = repr(value)
    except BaseException:  # a hostile __repr__ must not break the runner
        text = "?"
    qualname: object = cls.__qualname__  # a metaclass may make it anything
    return [_OPAQUE, qualname if isinstance(qualname, str) else "?", text[:1000]]


def _encode_numpy(value, depth, active):
    module: object = type(value).__module__  # a class may set it to anything
    if not isinstance(module, str) or not module.startswith("numpy"):
        return None
    import numpy as np  # only when a numpy value is actually returned

    if isinstance(value, np.ndarray):
        items = value.ravel().tolist() if value.dtype.kind in "biufc?SU" else list(value.ravel())
        return [_NDARRAY, value.dtype.str, list(value.shape)] + [_encode(v, depth - 1, active) for v in items]
    if isinstance(value, np.generic):
        return [_NPSCALAR, value.dtype.str, _encode(value.item(), depth - 1, active)]
    return None


def decode(data):
    """Inverse of :func:`encode` (numpy is imported only when the data holds numpy values)."""
    if not isinstance(data, list):
        return data
    tag = data[0]
    rest = data[1:]
    if tag == _LIST:
        return [decode(v) for v in rest]
    if tag == _TUPLE:
        return tuple(decode(v) for v in rest)
    if tag == _DICT:
        return {decode(k): decode(v) for k, v in rest}
    if tag == _SET:
        return {decode(v) for v in rest}
    if tag == _FROZENSET:
        return frozenset(decode(v) for v in rest)
    if tag == _BIGINT:
        return int(rest[0])
    if tag == _FLOAT:
        return float(rest[0])
    if tag == _COMPLEX:
        return complex(float(rest[0]), float(rest[1]))
    if tag == _BYTES:
        return base64.b64decode(rest[0])
    if tag == _FRACTION:
        return Fraction(int(rest[0]), int(rest[1]))
    if tag == _DECIMAL:
        return Decimal(rest[0])
    if tag == _OPAQUE:
        return Opaque(rest[0], rest[1])
    if tag in (_NDARRAY, _NPSCALAR):
        import numpy as np

        dtype = np.dtype(rest[0])
        if tag == _NPSCALAR:
            return dtype.type(decode(rest[1]))
        shape = tuple(rest[1])
        items = [decode(v) for v in rest[2:]]
        if dtype.kind == "O":
            array = np.empty(len(items), dtype=object)
            array[:] = items
            return array.reshape(shape)
        return np.array(items, dtype=dtype).reshape(shape)
    raise ValueError(f"unknown value tag {tag!r}")


def dumps(value):
    """Encode and serialise to compact JSON bytes."""
    return json.dumps(encode(value), separators=(",", ":")).encode("utf-8")


def loads(raw):
    """Parse bytes produced by :func:`dumps`."""
    return decode(json.loads(raw))
