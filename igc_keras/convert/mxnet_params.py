"""Read and write MXNet ``.params`` checkpoints without MXNet.

The authors of IGCV1/IGCV3 released their weights as MXNet checkpoints
(``<prefix>-<epoch>.params``), which is the binary file ``mx.nd.save`` writes for a
dict of NDArrays. MXNet itself is unmaintained and pins an old numpy, so this module
reads (and writes) the format with numpy only. The layout below was taken from
MXNet's ``NDArray::Save`` / ``NDArray::Load`` (``src/ndarray/ndarray.cc``), the
list writer behind ``MXNDArraySave`` and ``mxnet::Tuple::Save``
(``include/mxnet/tuple.h``), and checked byte for byte against files written by
MXNet 1.9.1.

Byte layout
-----------
Every integer is little-endian (dmlc::Stream writes host order; MXNet only ships for
little-endian hosts). ``u64``/``i32``/... are the usual fixed-width integers.

File (an ``NDArray`` list with names)::

    u64  list magic           0x112
    u64  reserved             0
    u64  N                    number of arrays
    N x  NDArray record       (see below)
    u64  K                    number of names: N, or 0 for an unnamed list
    K x  (u64 length, `length` bytes of UTF-8)   the keys, e.g. "arg:fc_weight"

Names are stored *after* all the data, so a key is only known once the whole file
has been parsed. ``mx.nd.save`` of a dict writes one name per array; of a list, no
names (``load_params`` then uses the keys ``"0"``, ``"1"``, ...).

NDArray record, V2 (magic 0xF993FAC9, written by MXNet >= 0.11 when numpy-shape
semantics are off, i.e. by a plain ``mx.nd.save``) and V3 (magic 0xF993FACA,
written inside ``mx.util.np_shape(True)`` / ``npx.set_np()``; dense only)::

    u32  magic
    i32  storage type         0 default (dense), 1 row_sparse, 2 csr
    [sparse only] shape       storage shape (not reliable: see below)
    shape                     the logical shape
    -- if the shape is unknown (ndim -1, or a dim -1) the record ends here --
    i32  device type          1 cpu, 2 gpu, 3 cpu_pinned, 5 cpu_shared
    i32  device id
    i32  dtype flag           see DTYPE_FLAGS
    [sparse only] per aux array (row_sparse: 1 = indices; csr: 2 = indptr, indices):
         i32 aux dtype flag, shape aux shape
    data                      prod(shape) elements of the dtype (dense), C order, no
                              padding; sparse: the stored values (row_sparse: rows x
                              prod(shape[1:]), rows = len(indices); csr: nnz = len(indices))
    [sparse only] aux data    prod(aux shape) elements of each aux dtype

    shape := i32 ndim, then ndim x i64 dims   (ndim -1 = unknown; 0 = scalar)

In V2 an ``ndim`` of 0 means "no array" to MXNet's loader, yet MXNet 1.9.1's saver
writes a 0-d array (``mx.nd.array(np.float32(3))``, shape ``()``) as a V2 record with
``ndim`` 0 *followed by* its context, dtype and one element -- a file MXNet cannot
read back. This reader accepts that case (it checks that a plausible context
follows) and returns the 0-d array.

Legacy records (files written by MXNet before 0.11, e.g. IGCV1-era checkpoints):

* V1 (magic 0xF993FAC8): ``u32 ndim, ndim x i64 dims`` then, unless ndim is 0,
  ``i32 device type, i32 device id, i32 dtype flag, data``.
* Pre-V1 (no magic): the first ``u32`` *is* ndim, then ``ndim x u32 dims``, then
  as V1.

Dtype flags (mshadow ``TypeFlag``) -- see :data:`DTYPE_FLAGS`::

    0 float32   1 float64   2 float16   3 uint8    4 int32    5 int8    6 int64
    7 bool      8 int16     9 uint16   10 uint32  11 uint64  12 bfloat16

MXNet 1.9.1 writes flags 0-7 (its Python API cannot even create bfloat16 arrays);
8-11 and 12 exist in later MXNet. numpy has no bfloat16: such arrays are widened
(exactly) to float32.

Only dense arrays are returned; a sparse record is parsed (to find its name) and
then reported as a ``ValueError`` naming the file and the tensor.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Mapping
from typing import BinaryIO, Iterable, Union

import numpy as np

__all__ = [
    "load_params",
    "split_arg_aux",
    "save_params",
    "encode_params",
    "LIST_MAGIC",
    "NDARRAY_V1_MAGIC",
    "NDARRAY_V2_MAGIC",
    "NDARRAY_V3_MAGIC",
    "DTYPE_FLAGS",
]

#: First u64 of an ``mx.nd.save`` file (``kMXAPINDArrayListMagic``).
LIST_MAGIC = 0x112
#: Per-array magic of MXNet's first int64-shape format.
NDARRAY_V1_MAGIC = 0xF993FAC8
#: Per-array magic with a storage type (what plain ``mx.nd.save`` writes).
NDARRAY_V2_MAGIC = 0xF993FAC9
#: Per-array magic of arrays saved under numpy-shape semantics.
NDARRAY_V3_MAGIC = 0xF993FACA

#: mshadow dtype flag -> (name, little-endian numpy dtype stored in the file).
#: bfloat16 is stored as 2-byte words and decoded to float32.
DTYPE_FLAGS = {
    0: ("float32", np.dtype("<f4")),
    1: ("float64", np.dtype("<f8")),
    2: ("float16", np.dtype("<f2")),
    3: ("uint8", np.dtype("u1")),
    4: ("int32", np.dtype("<i4")),
    5: ("int8", np.dtype("i1")),
    6: ("int64", np.dtype("<i8")),
    7: ("bool", np.dtype("?")),
    8: ("int16", np.dtype("<i2")),
    9: ("uint16", np.dtype("<u2")),
    10: ("uint32", np.dtype("<u4")),
    11: ("uint64", np.dtype("<u8")),
    12: ("bfloat16", np.dtype("<u2")),
}
_BFLOAT16_FLAG = 12

# numpy dtype -> flag, for writing (bfloat16 has no numpy dtype).
_FLAG_OF_DTYPE = {
    np.dtype(dt).newbyteorder("="): flag
    for flag, (name, dt) in DTYPE_FLAGS.items()
    if flag != _BFLOAT16_FLAG
}

#: storage type -> (name, number of aux arrays).
_STORAGE_TYPES = {0: ("default", 0), 1: ("row_sparse", 1), 2: ("csr", 2)}
#: MXNet device types (Context::DeviceType).
_DEVICE_TYPES = {1: "cpu", 2: "gpu", 3: "cpu_pinned", 5: "cpu_shared"}
_CPU = 1

# Sanity bound on ndim: MXNet has none, but a larger value means a corrupt file
# (or, for pre-V1 records, an unknown magic).
_MAX_NDIM = 32

PathOrBytes = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]


class _Stream:
    """Little-endian cursor over the file's bytes; errors name the source."""

    def __init__(self, data, source: str):
        self.buf = memoryview(data).cast("B")
        self.pos = 0
        self.source = source

    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def error(self, message: str) -> ValueError:
        return ValueError(f"{self.source}: {message}")

    def truncated(self, what: str, needed: int) -> ValueError:
        return self.error(
            f"truncated MXNet NDArray file: {what} needs {needed} bytes at offset "
            f"{self.pos}, but only {self.remaining()} remain (file size {len(self.buf)})"
        )

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or n > self.remaining():
            raise self.truncated(what, n)
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size, what))

    def u32(self, what: str) -> int:
        return self.unpack("<I", what)[0]

    def i32(self, what: str) -> int:
        return self.unpack("<i", what)[0]

    def u64(self, what: str) -> int:
        return self.unpack("<Q", what)[0]

    def peek_i32s(self, n: int):
        """The next ``n`` int32 without consuming them, or None if fewer remain."""
        if 4 * n > self.remaining():
            return None
        return struct.unpack_from(f"<{n}i", self.buf, self.pos)


class _Record:
    """One parsed NDArray: a dense array, or the reason it cannot be returned."""

    __slots__ = ("array", "problem")

    def __init__(self, array=None, problem=None):
        self.array = array
        self.problem = problem


def _read_shape(st: _Stream, what: str, dim_format: str = "q"):
    """Read ``i32 ndim, ndim x dims``; return a tuple, or None if unknown."""
    ndim = st.i32(f"{what} ndim")
    if ndim == -1:
        return None
    if ndim < -1 or ndim > _MAX_NDIM:
        raise st.error(f"corrupt MXNet NDArray file: {what} has ndim {ndim} "
                       f"(offset {st.pos - 4})")
    dims = st.unpack(f"<{ndim}{dim_format}", f"{what} dims") if ndim else ()
    if any(d < 0 for d in dims):
        return None
    return tuple(int(d) for d in dims)


def _dtype_of_flag(st: _Stream, flag: int, what: str):
    try:
        return DTYPE_FLAGS[flag]
    except KeyError:
        known = ", ".join(f"{k}={v[0]}" for k, v in DTYPE_FLAGS.items())
        raise st.error(f"unknown dtype flag {flag} in {what} (offset {st.pos - 4}); "
                       f"known flags: {known}") from None


def _read_elements(st: _Stream, flag: int, shape, what: str) -> np.ndarray:
    """Read prod(shape) elements of dtype ``flag`` and return a native-order copy."""
    name, dtype = DTYPE_FLAGS[flag]
    count = math.prod(shape)
    raw = st.take(count * dtype.itemsize, f"{what} ({count} x {name})")
    flat = np.frombuffer(raw, dtype=dtype, count=count)
    if flag == _BFLOAT16_FLAG:
        # bfloat16 is the top half of a float32: widening is exact.
        out = (flat.astype(np.uint32) << 16).view(np.float32)
    else:
        out = flat.astype(dtype.newbyteorder("="), copy=True)
    return out.reshape(shape)


def _plausible_context(st: _Stream) -> bool:
    """Whether the next 12 bytes look like (device type, device id, dtype flag)."""
    nxt = st.peek_i32s(3)
    if nxt is None:
        return False
    dev_type, dev_id, flag = nxt
    return dev_type in _DEVICE_TYPES and 0 <= dev_id < 4096 and flag in DTYPE_FLAGS


def _read_record(st: _Stream, index: int) -> _Record:
    """Parse one NDArray record (any version) starting at the current offset."""
    what = f"array #{index}"
    magic = st.u32(f"{what} header")
    if magic in (NDARRAY_V2_MAGIC, NDARRAY_V3_MAGIC):
        version = 2 if magic == NDARRAY_V2_MAGIC else 3
        stype = st.i32(f"{what} storage type")
        if stype not in _STORAGE_TYPES:
            raise st.error(f"unknown storage type {stype} in {what} (offset {st.pos - 4})")
        stype_name, n_aux = _STORAGE_TYPES[stype]
        if n_aux:
            _read_shape(st, f"{what} storage shape")  # skipped: see the sparse branch
        shape = _read_shape(st, f"{what} shape")
        if shape is None:
            return _Record(problem="is an empty NDArray with an unknown shape (no data stored)")
        if version == 2 and len(shape) == 0 and not _plausible_context(st):
            # MXNet's own loader: V2 with ndim 0 is an empty array, nothing follows.
            return _Record(problem="is an empty NDArray (ndim 0, no data stored)")
        st.i32(f"{what} device type")
        st.i32(f"{what} device id")
        flag = st.i32(f"{what} dtype flag")
        _dtype_of_flag(st, flag, what)
        aux = []
        for k in range(n_aux):
            aux_flag = st.i32(f"{what} aux #{k} dtype flag")
            _dtype_of_flag(st, aux_flag, f"{what} aux #{k}")
            aux_shape = _read_shape(st, f"{what} aux #{k} shape")
            aux.append((aux_flag, aux_shape or (0,)))
        if n_aux:
            # The number of stored values follows from the aux arrays (row_sparse:
            # one row of values per index; csr: one value per column index). MXNet
            # 1.9.1 writes a storage shape of (0,) for csr arrays built with
            # mx.nd.sparse.csr_matrix and still stores the values, so the storage
            # shape is not trusted.
            if stype_name == "row_sparse":
                n_values = aux[0][1][0] * math.prod(shape[1:]) if aux[0][1] else 0
            else:
                n_values = math.prod(aux[1][1])
            _read_elements(st, flag, (n_values,), f"{what} values")
            for k, (aux_flag, aux_shape) in enumerate(aux):
                _read_elements(st, aux_flag, aux_shape, f"{what} aux #{k} data")
            return _Record(problem=f"uses sparse storage ({stype_name}, dense shape "
                                   f"{shape}); only dense (default-storage) arrays "
                                   f"are supported: save it with .tostype('default')")
        return _Record(array=_read_elements(st, flag, shape, f"{what} data"))

    if magic == NDARRAY_V1_MAGIC:
        ndim = st.u32(f"{what} ndim")
        dim_format = "q"
    else:
        # Pre-V1 record: the "magic" is the ndim and the dims are u32.
        ndim = magic
        dim_format = "I"
        if ndim > _MAX_NDIM:
            raise st.error(f"unrecognised NDArray record header 0x{magic:08X} in {what} "
                           f"(offset {st.pos - 4}): not a V1/V2/V3 magic and too large "
                           f"for a legacy ndim; corrupt file?")
    if ndim > _MAX_NDIM:
        raise st.error(f"corrupt MXNet NDArray file: {what} has ndim {ndim}")
    dims = st.unpack(f"<{ndim}{dim_format}", f"{what} dims") if ndim else ()
    if ndim == 0:
        return _Record(problem="is an empty NDArray (ndim 0, no data stored)")
    st.i32(f"{what} device type")
    st.i32(f"{what} device id")
    flag = st.i32(f"{what} dtype flag")
    _dtype_of_flag(st, flag, what)
    return _Record(array=_read_elements(st, flag, tuple(int(d) for d in dims), f"{what} data"))


def _read_bytes(path_or_bytes: PathOrBytes):
    """Return (bytes-like, source name) for a path, a bytes object or a binary file."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return path_or_bytes, "<bytes>"
    if hasattr(path_or_bytes, "read"):
        data = path_or_bytes.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("load_params needs a binary file object (opened with 'rb')")
        return data, str(getattr(path_or_bytes, "name", "<stream>"))
    path = os.fspath(path_or_bytes)
    with open(path, "rb") as f:
        return f.read(), str(path)


def load_params(path_or_bytes: PathOrBytes) -> dict[str, np.ndarray]:
    """Load an MXNet ``.params`` / ``mx.nd.save`` file into numpy arrays.

    Args:
        path_or_bytes: a path (str or ``os.PathLike``), the file's bytes, or a binary
            file object.

    Returns:
        ``{key: array}`` in file order, keys exactly as stored (``"arg:<name>"`` /
        ``"aux:<name>"`` for ``mx.model.save_checkpoint`` files, bare names for Gluon
        ``save_parameters`` files, ``"0"``, ``"1"``, ... for an unnamed list). Arrays
        are writable, C-contiguous, native byte order, with the stored dtype
        (float32, float64, float16, uint8, int8, int32, int64, bool, ...; bfloat16 is
        widened exactly to float32). Shapes are MXNet's (conv weights ``(O, I/G, kh,
        kw)``, dense weights ``(units, in)``).

    Raises:
        ValueError: naming the file, when it is not an MXNet NDArray file (wrong
            magic), is truncated, has trailing bytes, has an unknown dtype flag or
            storage type, has duplicate or mismatched names, or holds a sparse or
            empty (shape-unknown) array (then the message names the tensor).
    """
    data, source = _read_bytes(path_or_bytes)
    st = _Stream(data, source)
    header = struct.pack("<Q", LIST_MAGIC)
    head = bytes(st.buf[:8])
    if len(st.buf) == 0:
        raise st.error("empty file: not an MXNet NDArray file")
    if head != header[:len(head)]:
        hint = " (it looks like a zip/.npz archive)" if head.startswith(b"PK") else ""
        raise st.error(f"not an MXNet NDArray file: expected the list magic 0x112 as "
                       f"the first 8 bytes, found {head.hex()}{hint}")
    st.u64("list magic")
    st.u64("reserved header word")
    count = st.u64("array count")
    if count > st.remaining() // 8:  # every record takes well over 8 bytes
        raise st.error(f"truncated MXNet NDArray file: header says {count} arrays but "
                       f"only {st.remaining()} bytes follow")
    records = [_read_record(st, i) for i in range(count)]

    n_names = st.u64("name count")
    if n_names not in (0, count):
        raise st.error(f"corrupt MXNet NDArray file: {count} arrays but {n_names} names")
    names = []
    for i in range(n_names):
        length = st.u64(f"length of name #{i}")
        raw = st.take(length, f"name #{i}") if length <= st.remaining() else None
        if raw is None:
            raise st.truncated(f"name #{i}", length)
        try:
            names.append(bytes(raw).decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise st.error(f"name #{i} is not valid UTF-8: {exc}") from None
    if st.remaining():
        raise st.error(f"{st.remaining()} trailing bytes after the end of the NDArray "
                       f"list (offset {st.pos}); the file is corrupt or was appended to")
    if not names:
        names = [str(i) for i in range(count)]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise st.error(f"duplicate tensor names: {dupes}")

    problems = [f"tensor {name!r} {rec.problem}"
                for name, rec in zip(names, records) if rec.problem]
    if problems:
        raise st.error("; ".join(problems))
    return {name: rec.array for name, rec in zip(names, records)}


def split_arg_aux(params: Mapping[str, np.ndarray]):
    """Split ``load_params`` output into ``(arg_params, aux_params)``.

    ``"arg:<name>"`` goes to the first dict and ``"aux:<name>"`` (BatchNorm moving
    statistics) to the second, both keyed by ``<name>`` with the prefix stripped --
    what ``mx.model.load_checkpoint`` returns.

    Raises:
        ValueError: if a key has neither prefix (e.g. a Gluon ``save_parameters``
            file, whose keys are bare parameter names).
    """
    arg_params, aux_params, other = {}, {}, []
    for key, value in params.items():
        kind, sep, name = key.partition(":")
        if sep and kind == "arg":
            arg_params[name] = value
        elif sep and kind == "aux":
            aux_params[name] = value
        else:
            other.append(key)
    if other:
        shown = ", ".join(repr(k) for k in other[:5]) + (" ..." if len(other) > 5 else "")
        raise ValueError(f"{len(other)} key(s) without an 'arg:' or 'aux:' prefix: {shown} "
                         f"(not an mx.model.save_checkpoint file?)")
    return arg_params, aux_params


def _encode_shape(shape) -> bytes:
    return struct.pack(f"<i{len(shape)}q", len(shape), *shape)


def encode_params(params: Union[Mapping[str, np.ndarray], Iterable[np.ndarray]],
                  *, version: int | None = None) -> bytes:
    """Encode arrays in the ``mx.nd.save`` format (dense, CPU context) and return the bytes.

    Args:
        params: ``{key: array_like}`` (keys are written as given, e.g.
            ``"arg:fc_weight"``), or a sequence of arrays (an unnamed list).
        version: per-array record format: 2 (``NDARRAY_V2_MAGIC``, what a plain
            ``mx.nd.save`` writes and ``mx.nd.load`` reads), 3 (``NDARRAY_V3_MAGIC``,
            numpy-shape semantics: MXNet reads it only inside
            ``mx.util.np_shape(True)``), or None: 2, unless an array is 0-d (MXNet can
            only load 0-d arrays from V3 records), then 3 for every array.

    Raises:
        ValueError: for a dtype with no MXNet flag (complex, object, str, ...), a
            non-string key, or ``version=2`` with a 0-d array.
    """
    if isinstance(params, Mapping):
        keys = list(params.keys())
        values = list(params.values())
    else:
        keys = []
        values = list(params)
    for key in keys:
        if not isinstance(key, str):
            raise ValueError(f"parameter names must be str, got {key!r}")
    arrays = [np.asarray(v) for v in values]
    labels = keys or [f"#{i}" for i in range(len(arrays))]
    has_scalar = any(a.ndim == 0 for a in arrays)
    if version is None:
        version = 3 if has_scalar else 2
    if version not in (2, 3):
        raise ValueError(f"version must be 2 or 3, got {version!r}")
    if version == 2 and has_scalar:
        scalars = [lab for lab, a in zip(labels, arrays) if a.ndim == 0]
        raise ValueError(f"0-d arrays {scalars} cannot be stored in V2 records (MXNet reads "
                         f"ndim 0 as 'no array'); use version=3 or reshape them to (1,)")
    magic = NDARRAY_V2_MAGIC if version == 2 else NDARRAY_V3_MAGIC

    chunks = [struct.pack("<QQQ", LIST_MAGIC, 0, len(arrays))]
    for label, arr in zip(labels, arrays):
        flag = _FLAG_OF_DTYPE.get(arr.dtype.newbyteorder("="))
        if flag is None:
            raise ValueError(f"array {label!r}: dtype {arr.dtype} has no MXNet dtype flag "
                             f"(supported: {', '.join(n for n, _ in DTYPE_FLAGS.values())})")
        file_dtype = DTYPE_FLAGS[flag][1]
        chunks.append(struct.pack("<Ii", magic, 0))  # storage type 0: dense
        chunks.append(_encode_shape(arr.shape))
        chunks.append(struct.pack("<iii", _CPU, 0, flag))
        chunks.append(np.ascontiguousarray(arr, dtype=file_dtype).tobytes(order="C"))
    chunks.append(struct.pack("<Q", len(keys)))
    for key in keys:
        raw = key.encode("utf-8")
        chunks.append(struct.pack("<Q", len(raw)))
        chunks.append(raw)
    return b"".join(chunks)


def save_params(path: Union[str, os.PathLike],
                params: Union[Mapping[str, np.ndarray], Iterable[np.ndarray]],
                *, version: int | None = None) -> None:
    """Write ``params`` to ``path`` in the ``mx.nd.save`` format (see :func:`encode_params`).

    The file is what ``mx.nd.save(path, {key: mx.nd.array(value)})`` writes for dense
    CPU arrays: ``load_params(path)`` returns the same keys, dtypes and values, and
    MXNet's ``mx.nd.load`` / ``mx.model.load_checkpoint`` can read it.
    """
    data = encode_params(params, version=version)
    with open(os.fspath(path), "wb") as f:
        f.write(data)
