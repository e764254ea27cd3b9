"""One ResNet-18 3x3 conv, scheduled by hand with a given register tile, against ONNX Runtime.

    .venv/bin/python benchmarks/conv_tiles.py l4 2x4x1x0x0 2x5x1x0x1 1x7x0x0x0
    PREPROC=cache_flush_cpu_non_first_arg UNROLL=iw ... (cold weights; also unroll ic_i/kw/kh)

Layers: l1 (64 ch, 56x56) .. l4 (512 ch, 7x7). A tile is CHANNELSxCOLUMNSxPARTITIONxOWPADxORDER:
channel blocks (should divide the chunk count) x output columns (any width), the LoopPartition
hint on or off, extra output columns computed and dropped, and the unroll order (0: channels
outer, 1: columns outer). The schedule is the conv template's (tvmopt/tuning/templates.py) with
the weights pre-packed per tile; used to pick the template's tile space (RESULTS.md, issue 10).
"""
import os, sys, time
import numpy as np
import tvm
import tvmopt  # noqa: F401 - sets TVM_NUM_THREADS to the physical cores
from tvm import te, topi
from tvm.s_tir import Schedule

B = 8
def conv(C, K, H, W, R, stride, pad, occ_i, ow_i, partition, ow_pad=0, order=0):
    OH = (H + 2*pad - R)//stride + 1
    OW = (W + 2*pad - R)//stride + 1
    OWp = OW + ow_pad
    data = te.placeholder((1, C//B, H, W, B), name="data")
    # prepacked kernel [K/(B*occ_i)][C/B][R][R][B i][occ_i][B o]
    kern = te.placeholder((K//B//occ_i, C//B, R, R, B, occ_i, B), name="kern")
    extra = (OWp - 1) * stride + R - (W + 2*pad)
    padded = topi.nn.pad(data, (0, 0, pad, pad, 0), (0, 0, pad, pad + max(extra, 0), 0), name="data_pad")
    ic = te.reduce_axis((0, C), "ic"); kh = te.reduce_axis((0, R), "kh"); kw = te.reduce_axis((0, R), "kw")
    out = te.compute((1, K//B, OH, OWp, B), lambda n, oc, y, x, ob: te.sum(
        padded[n, ic//B, y*stride+kh, x*stride+kw, ic % B] * kern[oc//occ_i, ic//B, kh, kw, ic % B, oc % occ_i, ob],
        axis=[ic, kh, kw]), name="conv")
    if ow_pad:
        relu = te.compute((1, K//B, OH, OW, B), lambda *i: te.max(out(*i), 0.0), name="relu")
    else:
        relu = te.compute(out.shape, lambda *i: te.max(out(*i), 0.0), name="relu")
    f = te.create_prim_func([data, kern, relu])
    sch = Schedule(f)
    c = sch.get_sblock("conv")
    n, occ, oh, ow, ocb, ic, kh, kw = sch.get_loops(c)
    occ_o, occ_ii = sch.split(occ, [None, occ_i])
    ow_o, ow_ii = sch.split(ow, [None, ow_i])
    ic_o, ic_i = sch.split(ic, [None, B])
    sch.reorder(n, occ_o, oh, ow_o, ic_o, kh, kw, ic_i, *((occ_ii, ow_ii) if order == 0 else (ow_ii, occ_ii)), ocb)
    outer = sch.fuse(n, occ_o, oh)
    sch.parallel(outer)
    sch.vectorize(ocb)
    sch.unroll(occ_ii); sch.unroll(ow_ii)
    u = os.environ.get("UNROLL", "")
    if "i" in u: sch.unroll(ic_i)
    if "w" in u: sch.unroll(kw)
    if "h" in u: sch.unroll(kh)
    r = sch.get_sblock("relu")
    sch.reverse_compute_at(r, ow_o, preserve_unit_loops=True)
    sch.set_scope(c, 0, "local")
    sch.vectorize(sch.get_loops(r)[-1])
    sch.decompose_reduction(c, ic_o)
    p = sch.get_sblock("data_pad")
    pl = sch.get_loops(p)
    sch.parallel(sch.fuse(*pl[:3])); sch.vectorize(pl[-1])
    if partition:
        sch.annotate(ow_o, "pragma_loop_partition_hint", 1)
    target = tvmopt.get_target("host").tvm_target()
    cfg = {}
    with tvm.transform.PassContext(opt_level=3, config=cfg):
        lib = tvm.compile(sch.mod, target=target)
    dev = tvm.cpu()
    a = tvm.runtime.tensor(np.random.rand(1, C//B, H, W, B).astype("float32"), dev)
    w = tvm.runtime.tensor(np.random.rand(*[int(d) for d in kern.shape]).astype("float32"), dev)
    o = tvm.runtime.tensor(np.zeros([int(d) for d in relu.shape], "float32"), dev)
    fn = lib.jit().time_evaluator("main", dev, number=1, repeat=60, f_preproc=os.environ.get("PREPROC", ""))
    t = np.median(fn(a, w, o).results)
    flops = 2 * K * OH * OW * C * R * R
    return t, flops / t / 1e9

def ort_conv(C, K, H, W, R, stride, pad):
    import onnxruntime as ort
    from onnx import helper, TensorProto, numpy_helper
    w = numpy_helper.from_array(np.random.rand(K, C, R, R).astype("float32"), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[R, R], strides=[stride]*2, pads=[pad]*4)
    relu = helper.make_node("Relu", ["y"], ["z"])
    g = helper.make_graph([node, relu], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, H, W])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions(); so.intra_op_num_threads = int(os.environ["TVM_NUM_THREADS"])
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = np.random.rand(1, C, H, W).astype("float32")
    for _ in range(20): s.run(None, {"x": x})
    ts = []
    for _ in range(15):
        t0 = time.perf_counter()
        for _ in range(20): s.run(None, {"x": x})
        ts.append((time.perf_counter() - t0) / 20)
    t = np.median(ts)
    OH = (H + 2*pad - R)//stride + 1
    return t, 2 * K * OH * OH * C * R * R / t / 1e9

if __name__ == "__main__":
    shapes = {"l4": (512, 512, 7, 7, 3, 1, 1), "l3": (256, 256, 14, 14, 3, 1, 1),
              "l2": (128, 128, 28, 28, 3, 1, 1), "l1": (64, 64, 56, 56, 3, 1, 1)}
    if len(sys.argv) < 3 or sys.argv[1] not in shapes:
        sys.exit(__doc__)
    which = sys.argv[1]
    tiles = [tuple(map(int, t.split("x"))) for t in sys.argv[2:]]
    shp = shapes[which]
    t, g = ort_conv(*shp); print(f"{which} ORT {t*1e3:.3f} ms {g:.1f} GF/s", flush=True)
    for occ_i, ow_i, part, pad, order in tiles:
        try:
            t, g = conv(*shp, occ_i, ow_i, bool(part), pad, order)
            print(f"{which} tile {occ_i}x{ow_i} part={part} owpad={pad} order={order}: {t*1e3:.3f} ms {g:.1f} GF/s", flush=True)
        except Exception as e:
            print(f"{which} tile {occ_i}x{ow_i} part={part}: FAIL {type(e).__name__}: {str(e)[:300]}", flush=True)
