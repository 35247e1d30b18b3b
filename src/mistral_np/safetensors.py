"""Reading and writing safetensors files with NumPy alone.

The format: 8 bytes (little-endian uint64) giving the header length N, N bytes of JSON
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then the raw
little-endian data, offsets counted from the end of the header. Tensors are returned as
`np.memmap` views: nothing is read until it is used, and a 14.5 GB file costs no private memory.

NumPy has no bfloat16. A bf16 number is the top half of a float32, so bf16 tensors come back as
`uint16` arrays wrapped in `BF16` (see bf16.py) and are widened to float32 when used.
"""
from pathlib import Path
import json
import math
import struct

import numpy as np

from .bf16 import BF16, f32_to_bf16_bits
from .paths import require_regular_file

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64,
          "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
          "BOOL": np.bool_}
_MAX_HEADER = 100 * 1024 * 1024


def read_header(path):
    """(header dict without __metadata__, metadata dict, data start offset) of one file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found; download it again or check the folder")
    require_regular_file(path, "weights file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: only {size} bytes, too short for a safetensors file "
                             "(truncated download?); download it again")
        if head == b"version ":
            raise ValueError(f"{path}: a Git LFS pointer ({size} bytes), not the weights; fetch them with "
                             "`git lfs pull` in that clone, or download with huggingface-cli")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER or 8 + n > size:
            raise ValueError(f"{path}: header length {n} does not fit the file's {size} bytes; "
                             "the file is truncated or not safetensors; download it again")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise ValueError(f"{path}: the JSON header is corrupt ({str(e)[:80]}); download the file again") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the JSON header is not an object; download the file again")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: __metadata__ is a {type(metadata).__name__}, not an object; the header is corrupt")
    data_start = 8 + n
    spans = []                                                   # (begin, end, name)
    for name, info in header.items():
        dtype, shape, (begin, end) = _entry(path, name, info)
        itemsize = np.dtype(DTYPES[dtype]).itemsize
        if math.prod(max(d, 1) for d in shape) * itemsize >= 2**62:
            raise ValueError(f"{path}: tensor {name!r} has shape {shape}, too large for any file; the header is corrupt")
        expected = math.prod(shape) * itemsize
        if end - begin != expected:
            raise ValueError(f"{path}: tensor {name!r} has offsets [{begin}, {end}) for shape {shape} "
                             f"{dtype} ({expected} bytes); the header is corrupt")
        if data_start + end > size:
            raise ValueError(f"{path}: tensor {name!r} ends at byte {data_start + end} but the file has "
                             f"only {size} bytes: the file is truncated; download it again")
        spans.append((begin, end, name))
    # As the format's reference reader does: the tensors tile the data exactly, from 0 to its end.
    at = 0
    for begin, end, name in sorted(spans):
        if begin != at:
            raise ValueError(f"{path}: tensor {name!r} starts at data byte {begin} but the one before ends at "
                             f"{at} ({'an overlap' if begin < at else 'a gap'}); the header is corrupt")
        at = end
    if data_start + at != size:
        raise ValueError(f"{path}: the tensors end at byte {data_start + at} but the file has {size} bytes; "
                         "the file is corrupt or not safetensors; download it again")
    return header, metadata, data_start


def _entry(path, name, info):
    """(dtype, shape, (begin, end)) of one header entry, each of the right JSON type."""
    def bad(what):
        return ValueError(f"{path}: header entry for {name!r} {what}; the file is corrupt; download it again")

    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
        raise bad("lacks dtype/shape/data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]

    def naturals(v):
        return isinstance(v, list) and all(type(x) is int and x >= 0 for x in v)
    if not isinstance(dtype, str):
        raise bad(f"has dtype {dtype!r}, not a string")
    if dtype not in DTYPES:
        raise ValueError(f"{path}: tensor {name!r} has dtype {dtype!r}, which this reader does not "
                         f"support (supported: {', '.join(DTYPES)}); convert the checkpoint to BF16/F16/F32")
    if not naturals(shape):
        raise bad(f"has shape {str(shape)[:60]}, not a list of integers >= 0")
    if not naturals(offsets) or len(offsets) != 2 or offsets[0] > offsets[1]:
        raise bad(f"has data_offsets {str(offsets)[:60]}, not [begin, end] with 0 <= begin <= end")
    return dtype, shape, offsets


def load_file(path):
    """{name: array} with every tensor a read-only memory-mapped view (bf16 wrapped as BF16)."""
    header, _, data_start = read_header(path)
    tensors = {}
    for name, info in header.items():
        dtype = DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if end == begin:
            arr = np.zeros(shape, dtype)
        else:
            arr = np.memmap(path, dtype=np.dtype(dtype).newbyteorder("<"), mode="r",
                            offset=data_start + begin, shape=shape)
        tensors[name] = BF16(arr) if info["dtype"] == "BF16" else arr
    return tensors


def header_bytes(entries, metadata=None):
    """(header, data bytes) for [(name, dtype, shape)] laid out in that order: the header is the
    8-byte length, then the JSON (metadata, if any, as strings) padded with spaces to 8 bytes."""
    header, offset = {}, 0
    for name, dtype, shape in entries:
        if dtype not in DTYPES:
            raise ValueError(f"safetensors: tensor {name!r} has dtype {dtype!r}; known: {', '.join(DTYPES)}")
        n = int(math.prod(shape)) * np.dtype(DTYPES[dtype]).itemsize
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)   # align the data to 8 bytes, as the reference writer does
    return struct.pack("<Q", len(text)) + text, offset


def save_file(path, tensors, metadata=None, dtype="F32"):
    """Write {name: float array} as safetensors; dtype "F32" or "BF16" (rounded to nearest even)."""
    entries, blobs = [], []
    inverse = {np.dtype(v): k for k, v in DTYPES.items() if k != "BF16"}
    for name, arr in tensors.items():
        arr = np.asarray(arr)
        if dtype == "BF16" and arr.dtype.kind == "f":
            raw, kind = f32_to_bf16_bits(arr), "BF16"
        else:
            arr = arr.astype(np.float32) if arr.dtype.kind == "f" and dtype == "F32" else arr
            if arr.dtype not in inverse:
                raise ValueError(f"{path}: tensor {name!r} is {arr.dtype}, which this writer does not store "
                                 f"(it writes {', '.join(DTYPES)}); convert it to float32 first")
            raw, kind = arr, inverse[arr.dtype]
        entries.append((name, kind, arr.shape))
        blobs.append(np.ascontiguousarray(raw).astype(raw.dtype.newbyteorder("<"), copy=False).tobytes())
    head, _ = header_bytes(entries, metadata)
    with open(path, "wb") as f:
        f.write(head)
        for data in blobs:
            f.write(data)
