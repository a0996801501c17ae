"""Finds an exported symbol's bytes in a module file through the ELF dynamic
symbol table, for the scripts that damage modules the way a hostile or
corrupted file would."""
import struct


def symbol_range(data, wanted):
    """(file offset, size) of the dynamic symbol `wanted`."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    segments = [struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize)
                for i in range(phnum)]
    dynsym = next(s for s in sections if s[1] == 11)  # SHT_DYNSYM
    strtab = sections[dynsym[6]]
    for at in range(dynsym[4], dynsym[4] + dynsym[5], 24):
        name, _, _, _, value, size = struct.unpack_from("<IBBHQQ", data, at)
        end = data.index(b"\0", strtab[4] + name)
        if bytes(data[strtab[4] + name:end]) != wanted.encode():
            continue
        for kind, _, offset, vaddr, _, filesz, _, _ in segments:
            if kind == 1 and vaddr <= value < vaddr + filesz:  # PT_LOAD
                return offset + value - vaddr, size
    raise SystemExit(f"{wanted} not found")


def module_hash(data, hash_offset):
    """runtime/Manifest.h's ModuleHasher over `data`, with the 8 bytes at
    `hash_offset` read as zeros."""
    data = bytearray(data)
    data[hash_offset:hash_offset + 8] = bytes(8)
    mask, prime = (1 << 64) - 1, 0x100000001b3
    lanes = [0xcbf29ce484222325, 0x84222325cbf29ce4, 0x9ce484222325cbf2, 0x2325cbf29ce48422]
    whole = len(data) // 32 * 32
    for at in range(0, whole, 32):
        for lane, word in enumerate(struct.unpack_from("<4Q", data, at)):
            lanes[lane] = ((lanes[lane] ^ word) * prime) & mask
    h = len(data)
    for lane in lanes:
        h = ((h ^ lane) * prime) & mask
    for byte in data[whole:]:
        h = ((h ^ byte) * prime) & mask
    return h


def rehash(data):
    """Writes the module hash of `data` into it, as a hostile module that
    changed other bytes would."""
    at, _ = symbol_range(data, "hasten_module_hash")
    struct.pack_into("<Q", data, at, module_hash(data, at))
