#!/usr/bin/env python3
"""Writes the HDF5 fixtures that Tests/FormatsTests read (distill's Swift code must
read files that h5py makes). The values written here are asserted in
Tests/FormatsTests/HDF5Tests.swift; change both together.

Run with the reference venv (h5py, numpy):
    /tmp/distill-ref/bin/python tools/make_h5_fixture.py [Tests/FormatsTests/Fixtures]

Files:
  h5py_made.h5       known values: float32/float64/int64/int32/uint8 datasets, a gzip
                     compressed one, empty
                     and scalar datasets, nested groups with dotted names, int, float
                     and string (variable UTF-8 and fixed ASCII) attributes.
  h5py_hostile.h5    things a reader of untrusted files must refuse: external links
                     (to h5py_made.h5, which h5py itself follows), a soft link through
                     an external link, an LZF-compressed dataset (a filter libhdf5
                     lacks), and a sparse chunked
                     dataset that declares 4 TiB of float32 while the file is tiny.
"""
import os
import sys

import h5py
import numpy as np

out_dir = os.path.normpath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "FormatsTests", "Fixtures"))
os.makedirs(out_dir, exist_ok=True)
made = os.path.join(out_dir, "h5py_made.h5")
hostile = os.path.join(out_dir, "h5py_hostile.h5")

# Superblock and object headers readable by HDF5 1.10 (h5py may bundle a newer library).
LIBVER = ("earliest", "v110")

with h5py.File(made, "w", libver=LIBVER, track_order=False) as f:
    f.attrs["format_version"] = np.int64(1)
    f.attrs["name"] = "tiny-llama"                      # variable-length UTF-8
    f.attrs["greeting"] = "h\u00e9llo \u2713"           # non-ASCII UTF-8
    f.attrs["fixed"] = np.bytes_(b"fixed-ascii")         # fixed-length ASCII, 11 bytes
    f.attrs["lr"] = np.float64(0.001)
    f.attrs["step32"] = np.int32(-7)

    model = f.create_group("model")
    model.attrs["n_layers"] = np.int64(1)
    q = model.create_dataset(
        "layers/0/self_attn.q_proj.weight",
        data=np.array([[0.5, -1.25, 2.0], [3.5, 0.0, -0.125]], dtype=np.float32))
    q.attrs["note"] = "q"
    model.create_dataset("embed_tokens.weight", data=np.arange(4, dtype=np.float32) * 0.25)

    data = f.create_group("data")
    data.create_dataset("tokens", data=np.array([0, 1, -2, 2**40, -(2**62)], dtype=np.int64))
    data.create_dataset("lengths", data=np.array([[1, 2], [3, -4]], dtype=np.int32))
    data.create_dataset("blob", data=np.frombuffer(b"hello\x00\xff", dtype=np.uint8))
    data.create_dataset("f64", data=np.array([1.5, 2.5, -3.0], dtype=np.float64))
    # gzip (deflate) is built into libhdf5, not a plugin: readable with plugins off.
    data.create_dataset("gzipped", data=np.arange(100, dtype=np.float32), chunks=(25,), compression="gzip")

    f.create_dataset("empty", shape=(0, 3), dtype=np.float32)
    f.create_dataset("scalar", data=np.float32(7.5))

with h5py.File(hostile, "w", libver=LIBVER) as f:
    f.create_dataset("ok", data=np.array([1.0, 2.0], dtype=np.float32))
    f["soft"] = h5py.SoftLink("/ok")
    # Relative file name: resolved next to this file, where h5py_made.h5 lives.
    f["ext"] = h5py.ExternalLink("h5py_made.h5", "/model/embed_tokens.weight")
    f["extgroup"] = h5py.ExternalLink("h5py_made.h5", "/model")
    # A soft link whose target path runs through the external link: only HDF5's own
    # traversal (the link-access callback) can refuse it.
    f["soft_to_ext"] = h5py.SoftLink("/extgroup/embed_tokens.weight")
    # 2^40 float32 = 4 TiB declared; no chunk is written, so the file stays small.
    f.create_dataset("huge", shape=(2**40,), dtype=np.float32, chunks=(1024,))
    # LZF is a filter that h5py registers in its own process; libhdf5 lacks it. Zeros,
    # so that the chunk really is compressed (an optional filter that does not shrink
    # a chunk is skipped for it).
    f.create_dataset("lzf", data=np.zeros(4096, dtype=np.float32), chunks=(4096,), compression="lzf")

# The refusals must come from distill's policy, not from broken fixtures: h5py follows
# the external links.
with h5py.File(hostile, "r") as f:
    assert list(f["ext"][()]) == [0.0, 0.25, 0.5, 0.75], f["ext"][()]
    assert "layers" in f["extgroup"]
    assert list(f["soft_to_ext"][()]) == [0.0, 0.25, 0.5, 0.75]
    assert f["huge"].shape == (2**40,)
    assert f["lzf"][()].sum() == 0 and f["lzf"].id.get_storage_size() < 4096 * 4

for path in (made, hostile):
    print(path, os.path.getsize(path), "bytes")
