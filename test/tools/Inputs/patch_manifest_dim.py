#!/usr/bin/env python3
"""patch_manifest_dim.py IN.so OUT.so OLD NEW: rewrites the one static
dimension OLD in the module's manifest (an int64 in a FlatBuffers table) to
NEW, as a damaged module's manifest would disagree with its code."""
import struct
import sys

from module_elf import rehash, symbol_range

data = bytearray(open(sys.argv[1], "rb").read())
start, size = symbol_range(data, "hasten_manifest")
old, new = struct.pack("<q", int(sys.argv[3])), struct.pack("<q", int(sys.argv[4]))
hits = [i for i in range(start, start + size - 7, 4) if data[i:i + 8] == old]
assert len(hits) == 1, f"{len(hits)} candidates for {sys.argv[3]}"
data[hits[0]:hits[0] + 8] = new
rehash(data)  # consistent, so that the check under test is what refuses it
open(sys.argv[2], "wb").write(data)
