"""Tests of the MXNet ``.params`` reader/writer (igc_keras.convert.mxnet_params).

Most tests need no MXNet: they round-trip through ``save_params`` and parse byte strings
that MXNet 1.9.1's ``mx.nd.save`` wrote (embedded below as hex). One test uses the real
MXNet from the fixture venv (``mxnet_python`` in conftest.py, created once per machine by
``tests/mxnet_fixture/setup_venv.sh``; a failure to create it fails the test).
"""

import io
import json
import struct
import subprocess
import textwrap

import numpy as np
import pytest

from igc_keras.convert.mxnet_params import (
    DTYPE_FLAGS, LIST_MAGIC, NDARRAY_V1_MAGIC, NDARRAY_V2_MAGIC, NDARRAY_V3_MAGIC,
    encode_params, load_params, save_params, split_arg_aux)

# ---------------------------------------------------------------- files written by MXNet 1.9.1
# mx.nd.save(f, {"arg:x": mx.nd.array(np.arange(6, dtype="float32").reshape(2, 3)),
#                "aux:y": mx.nd.array([7.0], dtype="float64")})
MX_DICT = bytes.fromhex(
    "120100000000000000000000000000000200000000000000c9fa93f90000000002000000020000000000"
    "00000300000000000000010000000000000000000000000000000000803f000000400000404000008040"
    "0000a040c9fa93f900000000010000000100000000000000010000000000000001000000000000000000"
    "1c40020000000000000005000000000000006172673a7805000000000000006175783a79")
# with mx.util.np_shape(True):
#     mx.nd.save(f, {"s": mx.nd.array(np.float32(3)), "z": mx.nd.zeros((0, 3))})
MX_NP_SHAPE = bytes.fromhex(
    "120100000000000000000000000000000200000000000000cafa93f90000000000000000010000000000"
    "00000000000000004040cafa93f900000000020000000000000000000000030000000000000001000000"
    "0000000000000000020000000000000001000000000000007301000000000000007a")
# mx.nd.save(f, {"s": mx.nd.array(np.float32(3))}) outside np_shape: V2 record, ndim 0,
# followed by the data anyway (mx.nd.load cannot read this back).
MX_LEGACY_SCALAR = bytes.fromhex(
    "120100000000000000000000000000000100000000000000c9fa93f90000000000000000010000000000"
    "000000000000000040400100000000000000010000000000000073")
# mx.nd.save(f, {"rs": mx.nd.sparse.row_sparse_array((np.ones((1, 2), "f4"), [1]),
#                                                    shape=(3, 2))})
MX_ROW_SPARSE = bytes.fromhex(
    "120100000000000000000000000000000100000000000000c9fa93f90100000002000000010000000000"
    "000002000000000000000200000003000000000000000200000000000000010000000000000000000000"
    "060000000100000001000000000000000000803f0000803f010000000000000001000000000000000200"
    "0000000000007273")
# mx.nd.save(f, {"csr": mx.nd.sparse.csr_matrix(np.eye(2, dtype="f4"))})
MX_CSR = bytes.fromhex(
    "120100000000000000000000000000000100000000000000c9fa93f90200000001000000000000000000"
    "000002000000020000000000000002000000000000000100000000000000000000000600000001000000"
    "0300000000000000060000000100000002000000000000000000803f0000803f00000000000000000100"
    "000000000000020000000000000000000000000000000100000000000000010000000000000003000000"
    "00000000637372")

ALL_DTYPES = ["float32", "float64", "float16", "uint8", "int8", "int32", "int64", "bool",
              "int16", "uint16", "uint32", "uint64"]


def _random(shape, dtype, rng):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


def _assert_same(got, expected):
    assert list(got) == list(expected)
    for key, value in expected.items():
        value = np.asarray(value)
        assert got[key].dtype == value.dtype, key
        assert got[key].shape == value.shape, key
        np.testing.assert_array_equal(got[key], value, err_msg=key)


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_round_trip_dtypes_and_shapes(tmp_path, dtype):
    rng = np.random.default_rng(0)
    params = {f"arg:t{i}": _random(shape, dtype, rng)
              for i, shape in enumerate([(1,), (7,), (3, 4), (2, 3, 4, 5), (0,), (2, 0, 3),
                                         (1, 1, 1, 1, 1, 2)])}
    path = tmp_path / "p.params"
    save_params(path, params)
    got = load_params(path)
    _assert_same(got, params)
    for value in got.values():
        assert value.flags.c_contiguous and value.flags.writeable
    # str path, bytes and a file object give the same result.
    _assert_same(load_params(str(path)), params)
    _assert_same(load_params(path.read_bytes()), params)
    with open(path, "rb") as f:
        _assert_same(load_params(f), params)
    # A plain (no 0-d) dict is written with V2 records, as mx.nd.save writes.
    assert struct.unpack_from("<I", path.read_bytes(), 24)[0] == NDARRAY_V2_MAGIC


def test_round_trip_scalars_use_v3_records():
    params = {"s64": np.float64(2.5), "s32": np.array(-1.0, dtype=np.float32),
              "i": np.array(7, dtype=np.int64), "w": np.ones((2, 2), np.float32)}
    data = encode_params(params)
    assert struct.unpack_from("<I", data, 24)[0] == NDARRAY_V3_MAGIC
    got = load_params(data)
    _assert_same(got, {k: np.asarray(v) for k, v in params.items()})
    assert got["s64"].shape == ()
    with pytest.raises(ValueError, match="0-d"):
        encode_params(params, version=2)
    # Forcing V3 for ordinary arrays also round-trips.
    got = load_params(encode_params({"w": np.arange(4.0)}, version=3))
    _assert_same(got, {"w": np.arange(4.0)})


def test_unnamed_list_and_byte_order():
    big_endian = np.arange(6, dtype=">f4").reshape(2, 3)
    data = encode_params([big_endian, np.arange(3, dtype=np.int32)])
    got = load_params(data)
    assert list(got) == ["0", "1"]
    assert got["0"].dtype == np.float32 and got["0"].dtype.isnative
    np.testing.assert_array_equal(got["0"], big_endian)


# ---------------------------------------------------------------- exact layout
def test_encoding_is_byte_identical_to_mxnet():
    params = {"arg:x": np.arange(6, dtype=np.float32).reshape(2, 3),
              "aux:y": np.array([7.0])}
    assert encode_params(params) == MX_DICT
    _assert_same(load_params(MX_DICT), params)


def test_files_written_by_mxnet_1_9_1():
    got = load_params(MX_NP_SHAPE)
    _assert_same(got, {"s": np.array(3.0, np.float32), "z": np.zeros((0, 3), np.float32)})
    assert encode_params({"s": np.array(3.0, np.float32),
                          "z": np.zeros((0, 3), np.float32)}) == MX_NP_SHAPE
    _assert_same(load_params(MX_LEGACY_SCALAR), {"s": np.array(3.0, np.float32)})


def test_layout_fields():
    """The documented layout: list header, V2 record fields, names at the end."""
    data = encode_params({"ab": np.array([[1, 2, 3]], dtype=np.int64)})
    assert struct.unpack_from("<QQQ", data, 0) == (LIST_MAGIC, 0, 1)
    magic, stype, ndim = struct.unpack_from("<Iii", data, 24)
    assert (magic, stype, ndim) == (NDARRAY_V2_MAGIC, 0, 2)
    assert struct.unpack_from("<2q", data, 36) == (1, 3)
    dev_type, dev_id, flag = struct.unpack_from("<iii", data, 52)
    assert (dev_type, dev_id, DTYPE_FLAGS[flag][0]) == (1, 0, "int64")
    assert struct.unpack_from("<3q", data, 64) == (1, 2, 3)
    assert struct.unpack_from("<QQ", data, 88) == (1, 2) and data[104:] == b"ab"


def _legacy_file(records, names):
    out = [struct.pack("<QQQ", LIST_MAGIC, 0, len(records)), *records,
           struct.pack("<Q", len(names))]
    for name in names:
        out += [struct.pack("<Q", len(name)), name.encode()]
    return b"".join(out)


def test_legacy_v1_and_pre_v1_records():
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    v1 = (struct.pack("<II2q", NDARRAY_V1_MAGIC, 2, 2, 3) + struct.pack("<iii", 2, 0, 0)
          + values.tobytes())
    pre_v1 = (struct.pack("<I2I", 2, 2, 3) + struct.pack("<iii", 1, 0, 1)
              + values.astype("<f8").tobytes())
    got = load_params(_legacy_file([v1, pre_v1], ["arg:a", "aux:b"]))
    _assert_same(got, {"arg:a": values, "aux:b": values.astype(np.float64)})


def test_bfloat16_is_widened_to_float32():
    values = np.array([1.5, -2.25, 2.0**40, -0.0078125], dtype=np.float32)
    words = (values.view(np.uint32) >> 16).astype("<u2")  # exactly representable in bf16
    record = (struct.pack("<Iii1q", NDARRAY_V2_MAGIC, 0, 1, 4) + struct.pack("<iii", 1, 0, 12)
              + words.tobytes())
    got = load_params(_legacy_file([record], ["bf"]))
    assert got["bf"].dtype == np.float32
    np.testing.assert_array_equal(got["bf"], values)


def test_split_arg_aux():
    arg, aux = split_arg_aux(load_params(MX_DICT))
    assert list(arg) == ["x"] and list(aux) == ["y"]
    assert arg["x"].shape == (2, 3)
    with pytest.raises(ValueError, match="prefix.*'weight'"):
        split_arg_aux({"arg:a": np.zeros(1), "weight": np.zeros(1)})


# ---------------------------------------------------------------- errors
def test_error_wrong_magic(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(32))
    with pytest.raises(ValueError, match="not an MXNet NDArray file") as err:
        load_params(path)
    assert str(path) in str(err.value)
    with pytest.raises(ValueError, match="zip"):
        load_params(b"PK\x03\x04" + bytes(40))
    with pytest.raises(ValueError, match="empty file"):
        load_params(b"")


def test_error_truncated_at_every_length(tmp_path):
    data = encode_params({"arg:w": np.arange(12, dtype=np.float32).reshape(3, 4),
                          "aux:m": np.ones(3, np.float16)})
    path = tmp_path / "cut.params"
    for cut in range(1, len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="truncated") as err:
            load_params(path)
        assert str(path) in str(err.value)


def test_error_trailing_bytes():
    with pytest.raises(ValueError, match="3 trailing bytes"):
        load_params(MX_DICT + b"\0\0\0")


def test_error_unknown_dtype_flag():
    data = bytearray(encode_params({"w": np.zeros(2, np.float32)}))
    struct.pack_into("<i", data, 24 + 8 + 4 + 8 + 8, 42)  # the dtype flag field
    with pytest.raises(ValueError, match="unknown dtype flag 42"):
        load_params(bytes(data))


def test_error_sparse_names_the_tensor(tmp_path):
    path = tmp_path / "sparse.params"
    path.write_bytes(MX_ROW_SPARSE)
    with pytest.raises(ValueError, match=r"tensor 'rs' uses sparse storage \(row_sparse") as err:
        load_params(path)
    assert str(path) in str(err.value)
    with pytest.raises(ValueError, match=r"tensor 'csr' uses sparse storage \(csr"):
        load_params(MX_CSR)


def test_error_names_mismatch_and_duplicates():
    record = encode_params([np.zeros(1, np.float32)])[24:-8]
    with pytest.raises(ValueError, match="1 arrays but 2 names"):
        load_params(_legacy_file([record], ["a", "b"]))
    with pytest.raises(ValueError, match="duplicate tensor names"):
        load_params(_legacy_file([record, record], ["a", "a"]))


def test_error_unsupported_dtype_on_save(tmp_path):
    with pytest.raises(ValueError, match="complex128"):
        save_params(tmp_path / "x.params", {"c": np.zeros(2, complex)})
    with pytest.raises(ValueError, match="must be str"):
        encode_params({1: np.zeros(2)})


def test_binary_file_object_source_name():
    buf = io.BytesIO(b"not a params file at all")
    with pytest.raises(ValueError, match="<stream>: not an MXNet NDArray file"):
        load_params(buf)


# ---------------------------------------------------------------- against real MXNet
_MXNET_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import mxnet as mx

    out, ours = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(1234)
    arrays = {
        "arg:conv_weight": rng.standard_normal((8, 3, 3, 3)).astype("float32"),
        "arg:fc_weight": rng.standard_normal((10, 16)).astype("float32"),
        "arg:fc_bias": rng.standard_normal((10,)).astype("float32"),
        "aux:bn_moving_var": rng.uniform(0.5, 1.5, (8,)).astype("float32"),
        "arg:f64": rng.standard_normal((3, 4, 5)),
        "arg:f16": rng.standard_normal((7,)).astype("float16"),
        "arg:u8": rng.integers(0, 256, (2, 2)).astype("uint8"),
        "arg:i8": rng.integers(-128, 128, (5,)).astype("int8"),
        "arg:i32": rng.integers(-2**31, 2**31, (2, 3)).astype("int32"),
        "arg:i64": rng.integers(-2**62, 2**62, (4,)).astype("int64"),
        "arg:b": rng.integers(0, 2, (6,)).astype(bool),
        "arg:five_d": rng.standard_normal((2, 1, 3, 1, 2)).astype("float32"),
    }
    mx.nd.save(out + "/mx.params", {k: mx.nd.array(v, dtype=v.dtype) for k, v in arrays.items()})
    np.savez(out + "/expected.npz", **{str(i): v for i, v in enumerate(arrays.values())})
    with open(out + "/keys.json", "w") as f:
        json.dump(list(arrays), f)

    np_arrays = {"scalar": np.array(2.5), "empty": np.zeros((0, 3), "float32"),
                 "w": rng.standard_normal((2, 2)).astype("float32")}
    with mx.util.np_shape(True):
        mx.nd.save(out + "/mx_np.params",
                   {k: mx.nd.array(v, dtype=v.dtype) for k, v in np_arrays.items()})
    np.savez(out + "/expected_np.npz", **np_arrays)

    # The file written by igc_keras' save_params, read by MXNet.
    loaded = mx.nd.load(ours)
    np.savez(out + "/ours_by_mxnet.npz", **{str(i): v.asnumpy() for i, v in
                                           enumerate(loaded.values())})
    with open(out + "/ours_keys.json", "w") as f:
        json.dump([[k, np.dtype(v.dtype).name] for k, v in loaded.items()], f)
    print("mxnet", mx.__version__)
""")


def test_against_real_mxnet(mxnet_python, tmp_path):
    ours = {"arg:w": np.random.default_rng(5).standard_normal((4, 2, 3, 3)).astype(np.float32),
            "aux:v": np.arange(3, dtype=np.float64), "arg:n": np.arange(4, dtype=np.int32)}
    save_params(tmp_path / "ours.params", ours)
    result = subprocess.run([mxnet_python, "-c", _MXNET_SCRIPT, str(tmp_path),
                             str(tmp_path / "ours.params")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mxnet 1.9.1" in result.stdout

    # mx.nd.save -> load_params: identical keys (in order), dtypes and values.
    keys = json.loads((tmp_path / "keys.json").read_text())
    with np.load(tmp_path / "expected.npz") as npz:
        expected = {k: npz[str(i)] for i, k in enumerate(keys)}
    got = load_params(tmp_path / "mx.params")
    _assert_same(got, expected)
    assert struct.unpack_from("<I", (tmp_path / "mx.params").read_bytes(), 24)[0] \
        == NDARRAY_V2_MAGIC
    arg, aux = split_arg_aux(got)
    assert "conv_weight" in arg and list(aux) == ["bn_moving_var"]

    # Under numpy-shape semantics MXNet writes V3 records (0-d and zero-size arrays).
    with np.load(tmp_path / "expected_np.npz") as npz:
        expected_np = {k: npz[k] for k in ("scalar", "empty", "w")}
    _assert_same(load_params(tmp_path / "mx_np.params"), expected_np)

    # save_params -> mx.nd.load: MXNet reads our file back identically.
    ours_keys = json.loads((tmp_path / "ours_keys.json").read_text())
    assert ours_keys == [[k, v.dtype.name] for k, v in ours.items()]
    with np.load(tmp_path / "ours_by_mxnet.npz") as npz:
        for i, (key, value) in enumerate(ours.items()):
            np.testing.assert_array_equal(npz[str(i)], value, err_msg=key)
