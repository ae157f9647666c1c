"""Packs f32 weights as TL2 with the reference converter's own packing functions.

Usage: python3 -B tl2_pack.py CONVERTER M K

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

PACKER = (
    "transform_to_tl2",
    "preprocess_weights_tl2",
    "preprocess_three_weights_tl2",
    "preprocess_two_weights_tl2",
)


def load_packer(converter, np):
    with open(converter, encoding="utf-8") as source:
        tree = ast.parse(source.read(), filename=converter)
    functions = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name in PACKER
    ]
    missing = sorted(set(PACKER) - {node.name for node in functions})
    if missing:
        sys.exit(f"{converter} defines no {', '.join(missing)}")
    from typing import Tuple

    namespace = {"np": np, "Tuple": Tuple}
    module = ast.Module(body=functions, type_ignores=[])
    exec(compile(module, converter, "exec"), namespace)
    return namespace["transform_to_tl2"]


def main(converter, m, k):
    try:
        import numpy as np
    except ImportError as error:
        print(f"numpy cannot be imported: {error}", file=sys.stderr)
        return NUMPY_MISSING
    transform_to_tl2 = load_packer(converter, np)
    weights = np.fromfile("weights.f32", dtype="<f4").reshape(int(m), int(k))
    codes, scale = transform_to_tl2(weights)
    # The converter asserts these types before writing the tensor.
    if codes.dtype != np.uint8 or scale.dtype != np.float32:
        sys.exit(f"the packer returned {codes.dtype} codes and a {scale.dtype} scale")
    np.ascontiguousarray(codes).tofile("codes.bin")
    np.asarray(scale, dtype="<f4").reshape(1).tofile("scale.f32")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
