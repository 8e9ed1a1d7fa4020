#!/usr/bin/env python3
"""llama_quantize.py: llama.cpp's own quantizer (what its llama-quantize tool
runs) on a GGUF file, through the llama_model_quantize entry point of the
real libllama that node-llama-cpp 3.21.1 ships (tests/llamacpp/node_modules,
installed by ./quickstart test). A user without qat would take a float model
to llama.cpp this way.

    bench/llama_quantize.py IN.gguf OUT.gguf q8_0|q4_0|q4_1|iq4_nl

llama_model_quantize_params is passed as the library's own default value
with two fields set (nthread, ftype: the first two int32s of the struct since
llama.cpp's quantize API began); the default is checked first, so a library
whose layout moved fails loudly instead of quantizing wrongly.
"""
import ctypes
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBDIR = os.path.join(ROOT, "tests", "llamacpp", "node_modules", "@node-llama-cpp", "linux-x64", "bins", "linux-x64")
FTYPES = {"q4_0": 2, "q4_1": 3, "q8_0": 7, "iq4_nl": 25}  # enum llama_ftype: LLAMA_FTYPE_MOSTLY_*


class Params(ctypes.Structure):
    _fields_ = [("raw", ctypes.c_uint8 * 256)]  # larger than the struct: returned through memory either way


def quantize(src, dst, kind, threads=2):
    libs = [f for f in os.listdir(LIBDIR) if f.startswith("libllama.") and f.endswith(".so")]
    if not libs:
        sys.exit("llama_quantize: no libllama in %s: ./quickstart test installs node-llama-cpp" % LIBDIR)
    lib = ctypes.CDLL(os.path.join(LIBDIR, sorted(libs)[0]))
    lib.llama_model_quantize_default_params.restype = Params
    lib.llama_model_quantize.restype = ctypes.c_uint32
    lib.llama_backend_init()
    p = lib.llama_model_quantize_default_params()
    nthread, ftype = struct.unpack_from("<ii", bytes(p.raw))
    if nthread != 0 or ftype not in FTYPES.values():
        sys.exit("llama_quantize: unexpected default parameters (nthread %d, ftype %d): the struct layout changed"
                 % (nthread, ftype))
    struct.pack_into("<ii", p.raw, 0, threads, FTYPES[kind])
    if lib.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p)) != 0:
        sys.exit("llama_quantize: llama_model_quantize failed on %s" % src)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[3] not in FTYPES:
        sys.exit("usage: llama_quantize.py IN.gguf OUT.gguf q8_0|q4_0|q4_1")
    quantize(sys.argv[1], sys.argv[2], sys.argv[3])
