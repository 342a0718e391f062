#!/usr/bin/env python3
"""Writes the dequantization fixtures under tests/fixtures/dequant/: for each tensor type, a
few blocks of seeded random bytes (`<type>.blocks`) and their values as decoded by the `gguf`
package from PyPI (`<type>.f32`, little-endian f32), an oracle independent of our decoders.
Also quantizer fixtures for the formats whose GGML reference quantizer we implement and the
package reproduces (Q5_0, Q5_1): `quantize_input.f32` (256 seeded values: noise, an all-zero
block, one outlier) and `<type>.quantized`, its blocks.

    pip install --user gguf numpy
    tools/reference/dequant_fixtures.py [TYPE ...]     # default: every type below

Every byte of a block is random except its f16 factors, which are finite values of ordinary
size (random bits there would make inf/NaN, whose handling is not the point). Each type has
its own seed, so regenerating one type leaves the others' files unchanged."""
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

# type: (number of blocks, byte offsets of its f16 factors)
TYPES = {
    "Q5_0": (8, [0]),
    "Q5_1": (8, [0, 2]),
    "Q2_K": (2, [80, 82]),
    "Q3_K": (2, [108]),
    "Q4_K": (2, [0, 2]),
    "Q5_K": (2, [0, 2]),
    "Q6_K": (2, [208]),
    "IQ4_NL": (8, [0]),
    "IQ4_XS": (2, [0]),
}

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "dequant")


def blocks(name: str) -> np.ndarray:
    qtype = T[name]
    n_blocks, f16_at = TYPES[name]
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(1000 + int(qtype))
    data = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for at in f16_at:
        # magnitudes 2^-12 .. 2^1, either sign
        v = rng.choice([-1.0, 1.0], n_blocks) * 2.0 ** rng.uniform(-12, 1, n_blocks)
        data[:, at : at + 2] = v.astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
    return data


def quantizer_fixtures() -> None:
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(256) * 0.7).astype(np.float32)
    x[40:72] = 0.0
    x[100] = 5.0
    x.astype("<f4").tofile(os.path.join(OUT, "quantize_input.f32"))
    for name in ["Q5_0", "Q5_1"]:
        quantize(x.reshape(1, -1), T[name]).tofile(os.path.join(OUT, name.lower() + ".quantized"))


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    if not sys.argv[1:]:
        quantizer_fixtures()
    for name in sys.argv[1:] or TYPES:
        data = blocks(name)
        values = dequantize(data, T[name]).astype("<f4").reshape(-1)
        base = os.path.join(OUT, name.lower())
        data.tofile(base + ".blocks")
        values.tofile(base + ".f32")
        print(f"{name}: {data.shape[0]} blocks, {values.size} values", file=sys.stderr)


if __name__ == "__main__":
    main()
