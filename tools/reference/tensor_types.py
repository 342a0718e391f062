#!/usr/bin/env python3
"""Prints `name TYPE` for every tensor of a GGUF file, in file order (the header only).

Used by tools/reference/make-quantize-fixtures.sh to record llama-quantize's per-tensor type
choices. Usage: tensor_types.py FILE.gguf
"""
import struct
import sys

# GGML type ids (GGUF spec) -> names, as far as llama-quantize writes them.
TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0",
         10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 20: "IQ4_NL",
         23: "IQ4_XS", 30: "BF16"}
# Fixed sizes of the scalar metadata value types.
SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def main(path):
    with open(path, "rb") as f:
        data = f.read(64 << 20)  # the header of a small model fits
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("Q")
        s = data[pos:pos + n].decode("utf-8")
        pos += n
        return s

    def skip_value(t):
        nonlocal pos
        if t == 8:
            string()
        elif t == 9:
            et, n = take("I"), take("Q")
            for _ in range(n):
                skip_value(et)
        else:
            pos += SCALAR[t]

    assert data[:4] == b"GGUF", "not a GGUF file"
    pos = 4
    take("I")
    n_tensors, n_kv = take("Q"), take("Q")
    for _ in range(n_kv):
        string()
        skip_value(take("I"))
    for _ in range(n_tensors):
        name = string()
        n_dims = take("I")
        pos += 8 * n_dims
        ty = take("I")
        take("Q")
        print(name, TYPES.get(ty, str(ty)))


if __name__ == "__main__":
    main(sys.argv[1])
