"""Recomputes a distill checkpoint's `attributes_crc32` with h5py and zlib, from the formula in
docs/checkpoints.md (*Checksums*), as an independent check of the Swift writer and reader.

    pip install h5py
    python3 tools/check_checkpoint_attributes.py Checkpoints/quickstart/base.h5

Prints MATCH and exits 0 when the recorded value equals the recomputed one, else exits 1.
"""
import struct
import sys
import zlib

import h5py


def attributes_crc32(f: "h5py.File") -> int:
    lines = []
    for obj in ["/", "optimizer", "metadata"]:
        if obj != "/" and obj not in f:
            continue
        attrs = f[obj].attrs
        for name in sorted(attrs.keys()):
            if name == "attributes_crc32":
                continue
            v = attrs[name]
            if isinstance(v, (bytes, str)):
                s = v.decode() if isinstance(v, bytes) else v
                value = "string:%d:%s" % (len(s.encode()), s)
            elif getattr(v, "dtype", None) is not None and v.dtype.kind == "i":
                value = "int:%d" % int(v)
            else:
                value = "double:%d" % struct.unpack("<Q", struct.pack("<d", float(v)))[0]
            lines.append("%s/%s=%s" % (obj, name, value))
    return zlib.crc32("\n".join(lines).encode())


def main() -> int:
    with h5py.File(sys.argv[1], "r") as f:
        recorded = int(f.attrs["attributes_crc32"])
        actual = attributes_crc32(f)
    print("recorded %d, recomputed %d: %s" % (recorded, actual, "MATCH" if recorded == actual else "DIFFER"))
    return 0 if recorded == actual else 1


if __name__ == "__main__":
    sys.exit(main())
