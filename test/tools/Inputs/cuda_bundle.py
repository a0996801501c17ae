#!/usr/bin/env python3
"""The CUDA device code embedded in a hasten module (include/hasten/
CudaBundle.h: "HSTNCUDA", version, count, then per image kind, arch, offset
and size). As a script, prints the PTX for an architecture, so that lit
tests can FileCheck it.

usage: cuda_bundle.py MODULE.so ARCH     (ARCH: 70 for sm_70's PTX)
"""
import struct
import sys


def bundles(module_path):
    """The CUDA bundles embedded in a module file: lists of
    (kind, arch, bytes), kind 0 for a cubin and 1 for PTX."""
    data = open(module_path, "rb").read()
    found, at = [], 0
    while True:
        at = data.find(b"HSTNCUDA", at)
        if at < 0:
            return found
        version, count = struct.unpack_from("<II", data, at + 8)
        images = []
        if version == 1 and 0 < count < 64:
            for i in range(count):
                kind, arch, offset, size = struct.unpack_from("<IIQQ", data, at + 16 + 24 * i)
                images.append((kind, arch, data[at + offset:at + offset + size]))
            found.append(images)
        at += 8


def main():
    module, arch = sys.argv[1], int(sys.argv[2])
    ptx = [blob for images in bundles(module) for kind, a, blob in images
           if kind == 1 and a == arch]
    if len(ptx) != 1:
        sys.exit(f"{module}: {len(ptx)} PTX images for sm_{arch}, expected one")
    sys.stdout.write(ptx[0].rstrip(b"\0").decode())


if __name__ == "__main__":
    main()
