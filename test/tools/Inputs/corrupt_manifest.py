#!/usr/bin/env python3
"""corrupt_manifest.py IN.so OUT.so: damages the manifest's root offset.

Finds the manifest by its FlatBuffers file identifier ("HSTN" at byte 4) and
overwrites the root table offset that precedes it with a huge value."""
import sys

from module_elf import rehash

data = bytearray(open(sys.argv[1], "rb").read())
at = data.find(b"HSTN")
assert at >= 4, "no manifest identifier found"
data[at - 4:at] = (0x7FFFFFF0).to_bytes(4, "little")
rehash(data)  # consistent, so that the FlatBuffers verifier is what refuses it
open(sys.argv[2], "wb").write(data)
