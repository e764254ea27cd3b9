"""ONNX RNN, GRU and LSTM converters: the recurrence unrolled over a static sequence length.

Workaround: TVM 0.27's Relax ONNX frontend has no converter for these ops ("The following
operators are not supported for frontend ONNX: GRU"), and recurrent models still ship as ONNX.
We convert them into Relax matmuls and element-wise ops, one step per time step, following the
ONNX operator spec: all directions (forward, reverse, bidirectional), both layouts, optional
biases, initial states and peepholes, `clip`, `input_forget`, `linear_before_reset`, and every
activation the spec lists with its alpha/beta. Not supported, with a clear error:
a symbolic sequence length (fix it with --input-shape) and `sequence_lens` that differ from the
full length (padded batches).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.frontend.onnx import onnx_frontend as _frontend

# Activations that take (alpha, beta) and their ONNX defaults; others take none.
_PARAMS = {
    "affine": (1.0, 0.0),
    "leakyrelu": (0.01, None),
    "thresholdedrelu": (1.0, None),
    "scaledtanh": (1.0, 1.0),
    "hardsigmoid": (0.2, 0.5),
    "elu": (1.0, None),
}
_KNOWN = {"relu", "tanh", "sigmoid", "softsign", "softplus", *_PARAMS}


class RecurrentError(ValueError):
    """An RNN/GRU/LSTM node this converter cannot unroll (the message says why)."""


def _activation(name: str, alpha: float | None, beta: float | None, dtype: str):
    op = relax.op

    def const(v, _x):
        return relax.const(v, dtype)

    return {
        "relu": lambda x: op.nn.relu(x),
        "tanh": lambda x: op.tanh(x),
        "sigmoid": lambda x: op.sigmoid(x),
        "softsign": lambda x: op.divide(x, op.add(op.abs(x), const(1.0, x))),
        "softplus": lambda x: op.log(op.add(op.exp(x), const(1.0, x))),
        "affine": lambda x: op.add(op.multiply(x, const(alpha, x)), const(beta, x)),
        "leakyrelu": lambda x: op.where(op.less(x, const(0.0, x)), op.multiply(x, const(alpha, x)), x),
        "thresholdedrelu": lambda x: op.where(op.greater(x, const(alpha, x)), x, const(0.0, x)),
        "scaledtanh": lambda x: op.multiply(op.tanh(op.multiply(x, const(beta, x))), const(alpha, x)),
        "hardsigmoid": lambda x: op.clip(op.add(op.multiply(x, const(alpha, x)), const(beta, x)), 0.0, 1.0),
        "elu": lambda x: op.where(
            op.less(x, const(0.0, x)), op.multiply(op.subtract(op.exp(x), const(1.0, x)), const(alpha, x)), x
        ),
    }[name]


def _activations(attr: dict, defaults: list[str], directions: int, dtype: str) -> list[list]:
    """Per direction, the activation functions (f, g[, h]) with their alpha/beta, as the spec
    says: alpha/beta values are consumed in order by the activations that take them."""
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in attr.get("activations", ())]
    names = [n.lower() for n in names] or defaults * directions
    if len(names) != len(defaults) * directions:
        raise RecurrentError(f"expected {len(defaults) * directions} activations, got {len(names)}")
    alphas, betas = list(attr.get("activation_alpha", ())), list(attr.get("activation_beta", ()))
    funcs = []
    for name in names:
        if name not in _KNOWN:
            raise RecurrentError(f"activation '{name}' is not one the ONNX spec defines")
        alpha, beta = _PARAMS.get(name, (None, None))
        if name in _PARAMS:
            alpha = alphas.pop(0) if alphas else alpha
            if beta is not None:
                beta = betas.pop(0) if betas else beta
        funcs.append(_activation(name, alpha, beta, dtype))
    return [funcs[i * len(defaults) : (i + 1) * len(defaults)] for i in range(directions)]


class _Recurrent(_frontend.OnnxOpConverter):
    """Shared unrolling: subclasses give the gate count, default activations and one cell step."""

    gates = 1
    default_activations: list[str] = []
    op_name = "RNN"

    @classmethod
    def _impl_v7(cls, bb, inputs, attr, params):
        try:
            return cls._convert(bb, inputs, attr, params)
        except RecurrentError as err:
            raise RecurrentError(f"{cls.op_name}: {err}") from None

    @classmethod
    def _convert(cls, bb, inputs, attr, params):
        op = relax.op
        x, w, r, b, seq_lens, init_h = (inputs[i] for i in range(6))
        extra = [inputs[i] for i in range(6, 8)]
        hidden = int(attr["hidden_size"]) if "hidden_size" in attr else None
        direction = attr.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else str(direction)
        if direction not in ("forward", "reverse", "bidirectional"):
            raise RecurrentError(f"unknown direction '{direction}'")
        dirs = 2 if direction == "bidirectional" else 1
        layout = int(attr.get("layout", 0))
        clip = attr.get("clip")

        if layout == 1:  # [batch, seq, input] -> [seq, batch, input]; states [batch, dir, h] -> [dir, batch, h]
            x = bb.normalize(op.permute_dims(x, [1, 0, 2]))
            init_h = bb.normalize(op.permute_dims(init_h, [1, 0, 2])) if init_h is not None else None
            extra = [bb.normalize(op.permute_dims(e, [1, 0, 2])) if e is not None and e.ty.ndim == 3 else e
                     for e in extra]
        shape = x.ty.shape.values if isinstance(x.ty.shape, relax.ShapeExpr) else None
        if shape is None or len(shape) != 3:
            raise RecurrentError("the input X needs a known rank-3 shape")
        if not isinstance(shape[0], tvm.tirx.IntImm):
            raise RecurrentError(
                f"the sequence length ({shape[0]}) must be static to unroll the recurrence; "
                "fix it with --input-shape"
            )
        steps, batch = int(shape[0]), shape[1]
        if hidden is None:
            hidden = int(r.ty.shape.values[-1])
        _check_full_length(seq_lens, steps, params)
        dtype = x.ty.dtype
        acts = _activations(attr, cls.default_activations, dirs, dtype)

        outputs, finals = [], []
        for d in range(dirs):
            w_d, r_d = _direction(bb, w, d), _direction(bb, r, d)  # [G*H, I], [G*H, H]
            bias = _direction(bb, b, d) if b is not None else None  # [2*G*H]
            wb = rb = None
            if bias is not None:
                parts = bb.normalize(op.split(bias, 2, axis=0))
                wb, rb = (bb.normalize(relax.TupleGetItem(parts, i)) for i in range(2))
            # X @ W^T + Wb for every step at once: [S, B, G*H]
            xw = op.matmul(x, op.permute_dims(w_d, [1, 0]))
            xw = bb.normalize(op.add(xw, wb) if wb is not None else xw)
            r_t = bb.normalize(op.permute_dims(r_d, [1, 0]))
            state = [
                _direction(bb, s, d) if s is not None else bb.normalize(op.zeros((batch, hidden), dtype))
                for s in ([init_h] + cls.extra_states(extra))
            ]
            context = cls.prepare(bb, d, extra, attr)
            backwards = direction == "reverse" or (direction == "bidirectional" and d == 1)
            order = range(steps - 1, -1, -1) if backwards else range(steps)
            ys: dict[int, relax.Expr] = {}
            for t in order:
                x_t = bb.normalize(op.squeeze(op.strided_slice(xw, axes=[0], begin=[t], end=[t + 1]), axis=[0]))
                state = cls.step(bb, x_t, state, r_t, rb, context, acts[d], clip)
                ys[t] = state[0]
            outputs.append(bb.normalize(op.stack([ys[t] for t in range(steps)], axis=0)))  # [S, B, H]
            finals.append(state)

        y = bb.normalize(op.stack(outputs, axis=1))  # [S, dirs, B, H]
        results = [y] + [bb.normalize(op.stack([f[i] for f in finals], axis=0)) for i in range(len(finals[0]))]
        if layout == 1:
            results = [bb.normalize(op.permute_dims(results[0], [2, 0, 1, 3]))] + [
                bb.normalize(op.permute_dims(s, [1, 0, 2])) for s in results[1:]
            ]
        return relax.Tuple(results)

    @classmethod
    def extra_states(cls, extra: list) -> list:
        return []

    @classmethod
    def prepare(cls, bb, d: int, extra: list, attr: dict):
        """What a step of direction `d` needs besides the states (peepholes, attributes)."""
        return attr

    @classmethod
    def step(cls, bb, x_t, state, r_t, rb, context, acts, clip) -> list:
        """One time step: x_t = Xt*W^T + Wb [B, G*H], state [H(, C)] -> the new state."""
        raise NotImplementedError


def _direction(bb, tensor, d: int):
    """tensor[d] for a [num_directions, ...] input."""
    op = relax.op
    return bb.normalize(op.squeeze(op.strided_slice(tensor, axes=[0], begin=[d], end=[d + 1]), axis=[0]))


def _check_full_length(seq_lens, steps: int, params) -> None:
    if seq_lens is None:
        return
    seq_lens = _frontend.get_constant(seq_lens, params)
    if isinstance(seq_lens, tvm.ir.GenericConst) and bool(np.all(seq_lens.value.numpy() == steps)):
        return
    raise RecurrentError(
        "sequence_lens other than the full sequence length for every batch entry (padded batches) "
        "are not supported; export without packed sequences"
    )


def _clip(x, clip):
    return relax.op.clip(x, -float(clip), float(clip)) if clip is not None else x


def _gates(bb, pre, count: int) -> list:
    parts = bb.normalize(relax.op.split(pre, count, axis=-1))
    return [bb.normalize(relax.TupleGetItem(parts, i)) for i in range(count)]


class RNN(_Recurrent):
    """Ht = f(Xt*Wi^T + Ht-1*Ri^T + Wbi + Rbi)."""

    gates, default_activations, op_name = 1, ["tanh"], "RNN"

    @classmethod
    def step(cls, bb, x_t, state, r_t, rb, context, acts, clip):
        op = relax.op
        pre = op.add(x_t, op.matmul(state[0], r_t))
        pre = op.add(pre, rb) if rb is not None else pre
        return [bb.normalize(acts[0](_clip(pre, clip)))]


class GRU(_Recurrent):
    """Gates z, r, h (ONNX order); `linear_before_reset` (torch exports 1) applies r after Rh."""

    gates, default_activations, op_name = 3, ["sigmoid", "tanh"], "GRU"

    @classmethod
    def step(cls, bb, x_t, state, r_t, rb, context, acts, clip):
        op = relax.op
        f, g = acts
        h_prev = state[0]
        xz, xr, xh = _gates(bb, x_t, 3)
        rz_w, rr_w, rh_w = _gates(bb, r_t, 3)  # R^T split along its output columns
        rbz = rbr = rbh = None
        if rb is not None:
            rbz, rbr, rbh = _gates(bb, rb, 3)

        def plus(a, b):
            return op.add(a, b) if b is not None else a

        z = f(_clip(plus(op.add(xz, op.matmul(h_prev, rz_w)), rbz), clip))
        r = f(_clip(plus(op.add(xr, op.matmul(h_prev, rr_w)), rbr), clip))
        if int(context.get("linear_before_reset", 0)):
            hh = op.add(xh, op.multiply(r, plus(op.matmul(h_prev, rh_w), rbh)))
        else:
            hh = plus(op.add(xh, op.matmul(op.multiply(r, h_prev), rh_w)), rbh)
        h_tilde = g(_clip(hh, clip))
        one = relax.const(1.0, h_prev.ty.dtype)
        h = op.add(op.multiply(op.subtract(one, z), h_tilde), op.multiply(z, h_prev))
        return [bb.normalize(h)]


class LSTM(_Recurrent):
    """Gates i, o, f, c (ONNX order); optional initial_c, peepholes P (i, o, f), input_forget."""

    gates, default_activations, op_name = 4, ["sigmoid", "tanh", "tanh"], "LSTM"

    @classmethod
    def extra_states(cls, extra: list) -> list:
        return [extra[0]]  # initial_c (None -> zeros)

    @classmethod
    def prepare(cls, bb, d, extra, attr):
        peep = extra[1]
        peepholes = _gates(bb, _direction(bb, peep, d), 3) if peep is not None else [None] * 3  # pi, po, pf
        return peepholes, int(attr.get("input_forget", 0)) != 0

    @classmethod
    def step(cls, bb, x_t, state, r_t, rb, context, acts, clip):
        op = relax.op
        f, g, h_act = acts
        h_prev, c_prev = state
        pre = op.add(x_t, op.matmul(h_prev, r_t))
        pre = bb.normalize(op.add(pre, rb) if rb is not None else pre)
        xi, xo, xf, xc = _gates(bb, pre, 4)
        (pi, po, pf), input_forget = context

        def peep(a, p, c):
            return op.add(a, op.multiply(p, c)) if p is not None else a

        i = bb.normalize(f(_clip(peep(xi, pi, c_prev), clip)))
        if input_forget:
            forget = op.subtract(relax.const(1.0, h_prev.ty.dtype), i)
        else:
            forget = f(_clip(peep(xf, pf, c_prev), clip))
        c_tilde = g(_clip(xc, clip))
        c = bb.normalize(op.add(op.multiply(forget, c_prev), op.multiply(i, c_tilde)))
        o = f(_clip(peep(xo, po, c), clip))
        h = bb.normalize(op.multiply(o, h_act(c)))
        return [h, c]


CONVERTERS: dict[str, type[_frontend.OnnxOpConverter]] = {"RNN": RNN, "GRU": GRU, "LSTM": LSTM}
