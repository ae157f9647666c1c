"""Writes BitNet's TL2 kernel header for a list of matrix shapes.

Usage: python3 -B tl2_codegen.py BITNET_ROOT OUTPUT_HEADER M,K,BM,BK [M,K,BM,BK ...]

The code comes from the generator functions of BitNet's utils/codegen_tl2.py, assembled and
wrapped in `#if defined(GGML_BITNET_X86_TL2)` the way that script's command line does; only
the shape list is ours (its command line accepts three preset models).
"""

import os
import sys

# Rows one SIMD block computes (the generator's `bm`); it supports only 32.
SIMD_ROWS = 32


def parse_shape(text):
    m, k, bm, bk = (int(value) for value in text.split(","))
    return m, k, bm, bk


def main(argv):
    root, output = argv[1], argv[2]
    shapes = [parse_shape(text) for text in argv[3:]]
    sys.path.insert(0, os.path.join(root, "utils"))
    import codegen_tl2

    kernel_shapes = [[m, k] for m, k, _, _ in shapes]
    k_list = [codegen_tl2.get_three_k_two_k(k, bk) for _, k, _, bk in shapes]
    pieces = ["#if defined(GGML_BITNET_X86_TL2)", codegen_tl2.gen_ctor_code()]
    for (m, k, bm, bk), ks in zip(shapes, k_list):
        pieces.append(codegen_tl2.gen_tbl_impl(f"{m}_{k}", bm, bk, SIMD_ROWS, ks))
    pieces.append(codegen_tl2.gen_top_api(kernel_shapes, k_list))
    pieces.append(codegen_tl2.gen_transform_code(kernel_shapes))
    pieces.append("#endif")
    with open(output, "w", encoding="utf-8") as header:
        header.write("".join(pieces))


if __name__ == "__main__":
    main(sys.argv)
