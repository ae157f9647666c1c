"""Packs f32 weights as TL1 or TL2 with the reference converter's own packing functions.

Usage: python3 -B lut_pack.py FORMAT CONVERTER M K   (FORMAT: tl1 or tl2)

Runs in a work directory holding weights.f32 (M x K little-endian f32, row-major) and the
include/kernel_config.ini that the packer reads relative to the current directory; writes
codes.bin (the packed codes) and scale.f32 (the weight scale, little-endian) there.

The converter (utils/convert-hf-to-gguf-bitnet.py) imports torch and gguf at module level,
so only the packing functions are taken from it, by parsing, and run with numpy.
"""

import ast
import sys

# Exit status telling the caller that numpy is missing.
NUMPY_MISSING = 3

PACKERS = {
    "tl1": ("transform_to_tl1", "preprocess_weights_tl1", "process_tl1"),
    "tl2": (
        "transform_to_tl2",
        "preprocess_weights_tl2",
        "preprocess_three_weights_tl2",
        "preprocess_two_weights_tl2",
    ),
}


def load_packer(converter, fmt, np):
    packer = PACKERS[fmt]
    with open(converter, encoding="utf-8") as source:
        tree = ast.parse(source.read(), filename=converter)
    functions = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name in packer
    ]
    missing = sorted(set(packer) - {node.name for node in functions})
    if missing:
        sys.exit(f"{converter} defines no {', '.join(missing)}")
    from typing import Tuple

    namespace = {"np": np, "Tuple": Tuple}
    module = ast.Module(body=functions, type_ignores=[])
    exec(compile(module, converter, "exec"), namespace)
    return namespace[packer[0]]


def main(fmt, converter, m, k):
    try:
        import numpy as np
    except ImportError as error:
        print(f"numpy cannot be imported: {error}", file=sys.stderr)
        return NUMPY_MISSING
    if fmt not in PACKERS:
        sys.exit(f"unknown format {fmt}")
    transform = load_packer(converter, fmt, np)
    weights = np.fromfile("weights.f32", dtype="<f4").reshape(int(m), int(k))
    codes, scale = transform(weights)
    # The converter asserts these types before writing the tensor.
    if codes.dtype != np.uint8 or scale.dtype != np.float32:
        sys.exit(f"the packer returned {codes.dtype} codes and a {scale.dtype} scale")
    np.ascontiguousarray(codes).tofile("codes.bin")
    np.asarray(scale, dtype="<f4").reshape(1).tofile("scale.f32")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
