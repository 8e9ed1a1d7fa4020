"""check_model_layout.py MODEL.h5 [SOURCE_CHECKPOINT.h5]

Reads an exported qat model with h5py alone (no qat code) and checks the
layout that docs/checkpoint-format.md documents: root attributes, dataset
types and shapes, every dataset's crc32 attribute against zlib.crc32 of its
bytes, int4 nibbles in range. With the source QAT checkpoint, also checks
that every code equals round-half-even(w * (1/scale)) clamped to the
symmetric range (down to code_min, -2^(bits-1) on the full range) (a codebook's: the nearest level's index, ties to the upper),
from the checkpoint's own weights and learned scales.
Exits 0 and prints "layout ok" when everything holds."""

import sys
import zlib

import h5py
import numpy as np


def s(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def main():
    f = h5py.File(sys.argv[1], "r")
    src = h5py.File(sys.argv[2], "r") if len(sys.argv) > 2 else None
    a = f.attrs
    assert s(a["format"]) == "qat-model", a["format"]
    assert int(a["version"]) == 1
    assert s(a["kind"]) == "int"
    assert "quant:" in s(a["config"]) and "model:" in s(a["config"])
    datasets = []
    f.visititems(lambda n, o: datasets.append(n) if isinstance(o, h5py.Dataset) else None)
    for n in datasets:
        d = f[n]
        crc = zlib.crc32(np.ascontiguousarray(d[()]).tobytes()) & 0xFFFFFFFF
        assert int(d.attrs["crc32"]) == crc, (n, int(d.attrs["crc32"]), crc)
    assert f["vocab"].dtype == np.uint8 and f["vocab"].ndim == 1
    for n in ("wte", "wpe", "ln_f.weight", "ln_f.bias"):
        assert f["float/" + n].dtype == np.float32, n
    nq = n_full = n_tables = 0
    for name, g in f["quant"].items():
        bits, gs, rows, cols = (int(g.attrs[k]) for k in ("bits", "group_size", "rows", "cols"))
        scheme = s(g.attrs["scheme"])
        assert scheme in ("symmetric", "levels"), scheme
        lv = None
        tables = s(g.attrs.get("tables", "layer"))
        assert tables in ("layer", "channel", "group"), tables
        if scheme == "levels" and tables != "layer":
            # a table per row or per group: int8 levels in 1/127ths, each table ascending
            tl = g["table_levels"][()]
            nt = rows if tables == "channel" else rows * (cols // gs)
            assert tl.dtype == np.int8 and tl.shape == (nt, 2 ** bits), (name, tl.dtype, tl.shape)
            assert np.all(np.diff(tl.astype(np.int32), axis=1) >= 0) and tl.min() >= -127, name
            assert "levels" not in g, name
            lv = tl.astype(np.float32) / np.float32(127)
            n_tables += 1
        elif scheme == "levels":
            lv = g["levels"][()]
            assert lv.dtype == np.float32 and lv.shape == (2 ** bits,) and np.all(np.diff(lv) >= 0), name
            assert (bits <= 4 or bits == 8) and "levels" in g, name
        assert s(g.attrs["granularity"]) == ("channel" if gs == cols else "group")
        act = s(g.attrs["activations"])
        assert act in ("float", "int8-per-token", "int8-per-tensor"), act
        nf = int(g.attrs.get("float_columns", 0))
        assert ("act_scale" in g) == (act == "int8-per-tensor"), name
        if nf:
            fc, fw = g["float_cols"][()], g["float_weight"][()]
            assert fc.dtype == np.int32 and fc.shape == (nf,) and np.all(np.diff(fc) > 0), name
            assert fw.dtype == np.float32 and fw.shape == (rows, nf), name
        assert cols % gs == 0
        codes, scales = g["codes"][()], g["scales"][()]
        assert scales.dtype == np.float32 and scales.shape == (rows, cols // gs), (name, scales.shape)
        assert 2 <= bits <= 8, (name, bits)
        qmax = 2 ** (bits - 1) - 1
        qmin = int(g.attrs.get("code_min", -qmax)) if lv is None else 0  # -qmax - 1 on the full range
        assert lv is not None or qmin in (-qmax, -qmax - 1), (name, qmin)
        if bits > 4 and lv is not None:  # 256 levels: one index per byte
            assert codes.dtype == np.uint8 and codes.shape == (rows, cols), (name, codes.dtype, codes.shape)
            q = codes.astype(np.int32)
        elif bits > 4:
            assert codes.dtype == np.int8 and codes.shape == (rows, cols), (name, codes.dtype, codes.shape)
            q = codes.astype(np.int32)
        else:
            assert codes.dtype == np.uint8 and codes.shape == (rows, cols // 2), (name, codes.dtype, codes.shape)
            lo, hi = (codes & 15).astype(np.int32), (codes >> 4).astype(np.int32)
            q = np.empty((rows, cols), np.int32)
            if lv is not None:  # level indices, stored as they are
                q[:, 0::2], q[:, 1::2] = lo, hi
            else:
                q[:, 0::2], q[:, 1::2] = lo - 8, hi - 8  # low nibble = even column, stored as code + 8
        if lv is not None:
            assert q.min() >= 0 and q.max() < lv.shape[-1], name
        else:
            assert q.min() >= qmin and q.max() <= qmax, name  # -2^(bits-1) only on the full range
        if src is not None:
            wname = "wte" if name == "lm_head" else name + ".weight"
            w = src["params/" + wname][()]
            sc = src["params/" + name + ".weight_scale"][()].reshape(rows, -1) if ("params/" + name + ".weight_scale") in src else None
            if sc is None:  # min-max scales (STE): the exported ones must be min-max too
                wg = w.reshape(rows, cols // gs, gs)
                amax = np.abs(wg).max(axis=2)
                if lv is not None:
                    sc = amax.astype(np.float32)
                elif qmin == -qmax:
                    sc = (amax / np.float32(qmax)).astype(np.float32)
                else:  # full range: the smallest scale that holds both ends
                    lo, hi = np.maximum(-wg.min(axis=2), 0), np.maximum(wg.max(axis=2), 0)
                    sc = np.maximum(lo / np.float32(-qmin), hi / np.float32(qmax)).astype(np.float32)
                assert np.array_equal(sc, scales), name
            else:
                assert np.array_equal(sc.astype(np.float32), scales), name
            # qat's quantizer takes a scale <= 0 as 0 (all codes 0); iq4_nl's
            # (integer levels) d may be negative: ggml's search tries both signs
            usable = scales != 0 if lv is not None and lv.max() > 1 else scales > 0
            inv = np.where(usable, np.float32(1) / np.where(usable, scales, 1), np.float32(0)).astype(np.float32)
            u = (w.reshape(rows, cols // gs, gs) * inv[:, :, None]).reshape(rows, cols).astype(np.float32)
            if lv is not None and lv.ndim == 2:  # each weight's own table: its row's, or its group's
                t = np.arange(rows)[:, None] if tables == "channel" else np.arange(rows)[:, None] * (cols // gs) + np.arange(cols)[None, :] // gs
                t = np.broadcast_to(t, (rows, cols))
                want = np.empty((rows, cols), np.int64)
                for r in range(rows):
                    for c in range(cols):
                        row = lv[t[r, c]]
                        hi = min(max(int(np.searchsorted(row, u[r, c], side="right")), 1), len(row) - 1)
                        want[r, c] = hi - 1 if u[r, c] - row[hi - 1] < row[hi] - u[r, c] else hi
            elif lv is not None:  # the nearest level, ties to the upper one
                hi = np.clip(np.searchsorted(lv, u, side="right"), 1, len(lv) - 1)
                want = np.where(u - lv[hi - 1] < lv[hi] - u, hi - 1, hi)
            else:
                want = np.clip(np.rint(u), qmin, qmax)
            if nf:  # outlier split: those columns are float, their codes 0
                want[:, fc] = 0
                assert np.array_equal(fw, w[:, fc]), name
            if act == "int8-per-tensor":
                assert np.array_equal(g["act_scale"][()], src["params/" + name + ".act_scale"][()]), name
            assert np.array_equal(want.astype(np.int32), q), (name, int((want != q).sum()))
        if lv is None:
            n_full += int((q == -qmax - 1).sum())
        nq += 1
    assert nq > 0
    print("layout ok: %d datasets, %d quantized layers, %d codes at -2^(bits-1), %d layers with tables per row or group"
          % (len(datasets), nq, n_full, n_tables))


main()
