"""An independent float64 reference for the infinite-width NNGP and NTK of `.arch` CNNs.

Written straight from the formulas of DESIGN.md section 1 on FULL 4-D covariance tensors
S[h1, w1, h2, w2] (position (h1, w1) of image a against (h2, w2) of image b). It shares no
code with the `ntkc` package and never imports it, so the package can be tested against it.

A network is a list of layers `(name, params)`; `params` is a dict with every parameter
resolved (use `layer()` to fill in the defaults). A residual block is the layer
`("residual", {"scale": c, "body": [layers]})`: y = x + c f(x), f the body. `parse_arch()` is a deliberately tiny reader
for `.arch` text (only what the tests write) and `arch_text()` writes a layer list back out, so
the tests can build both the package's input and the reference's from one description.

Everything is numpy float64; the code is written for clarity, not speed (a 7x7 map has 49^2
entries per pair, a few thousand numbers).
"""
from __future__ import annotations

import math
import re

import numpy as np

ACTIVATIONS = ("relu", "erf", "identity")  # the closed forms valid for any variance
# abrelu / leaky_relu (closed forms), gelu and the user-rule example sine (quadrature, checked for
# variances up to 4 only, so not drawn by the random-network tests)
MORE_ACTIVATIONS = ("abrelu", "leaky_relu", "gelu", "sine")

DEFAULTS = {
    "conv": {"size": 3, "stride": 1, "padding": "same", "w_std": 1.0, "b_std": 0.0, "trainable": True,
             "dilation": 1},
    "dense": {"w_std": 1.0, "b_std": 0.0, "trainable": True},
    "avgpool": {"size": None, "stride": None},  # size is required; stride defaults to size
    "relu": {},
    "erf": {},
    "identity": {},
    "abrelu": {"a": 0.0, "b": 1.0},
    "leaky_relu": {"slope": 0.01},
    "gelu": {},
    "sine": {"freq": 1.0},  # the user-rule example (examples/user_rules/sine.py)
    "lap": {"size": 3, "padding": "same"},
    "flip": {},
    "gap": {},
    "flatten": {},
    "residual": {"scale": 1.0, "body": None},
}


def layer(name: str, **params) -> tuple[str, dict]:
    """One layer with its defaults filled in."""
    if name not in DEFAULTS:
        raise ValueError(f"unknown layer {name!r}")
    full = dict(DEFAULTS[name])
    unknown = set(params) - set(full)
    if unknown:
        raise ValueError(f"{name}: unknown parameters {sorted(unknown)}")
    full.update(params)
    if name == "residual":
        if not full["body"]:
            raise ValueError("residual needs a non-empty body=[layers]")
        full["body"] = [layer(n, **p) for n, p in full["body"]]
        full["scale"] = float(full["scale"])
    if name == "avgpool":
        if full["size"] is None:
            raise ValueError("avgpool needs size=")
        if full["stride"] is None:
            full["stride"] = full["size"]
    for key in ("w_std", "b_std", "a", "b", "slope", "freq"):
        if key in full:
            full[key] = float(full[key])
    for key in ("size", "stride", "dilation"):
        if key in full:
            full[key] = int(full[key])
    return (name, full)


# ----------------------------------------------------------------------------------------------
# geometry, one spatial axis at a time


def conv_geometry(n: int, k: int, s: int, padding: str, dilation: int = 1) -> tuple[int, int]:
    """(output size, lo) of a conv along an axis of input size n.

    Output position o reads input positions s*o + r*d - lo, d in [0, k), r the dilation; the
    window spans k' = r (k - 1) + 1 positions, and k' stands for k below.
    same/circular: out = ceil(n/s), pad_total = max((out-1)*s + k - n, 0), lo = pad_total // 2
    (the TF/JAX 'SAME' rule); valid: out = (n-k)//s + 1, lo = 0.
    """
    k = dilation * (k - 1) + 1
    if padding == "valid":
        if k > n:
            raise ValueError(f"valid conv of size {k} on a map of size {n}")
        return (n - k) // s + 1, 0
    if padding in ("same", "circular"):
        out = -(-n // s)
        pad_total = max((out - 1) * s + k - n, 0)
        return out, pad_total // 2
    raise ValueError(f"unknown padding {padding!r}")


def conv_taps(n: int, k: int, s: int, padding: str, dilation: int = 1) -> np.ndarray:
    """A[d, o, i] = 1 when tap d of output o reads input i (zero rows for taps in the padding)."""
    out, lo = conv_geometry(n, k, s, padding, dilation)
    A = np.zeros((k, out, n))
    for d in range(k):
        for o in range(out):
            i = s * o + dilation * d - lo
            if padding == "circular":
                A[d, o, i % n] = 1.0
            elif 0 <= i < n:
                A[d, o, i] = 1.0
    return A


def pool_matrix(n: int, k: int, s: int) -> np.ndarray:
    """M[o, i] = 1/k for i in [s*o, s*o + k): windows inside the map only."""
    if k > n:
        raise ValueError(f"avgpool of size {k} on a map of size {n}")
    out = (n - k) // s + 1
    M = np.zeros((out, n))
    for o in range(out):
        M[o, s * o: s * o + k] = 1.0 / k
    return M


def lap_matrix(n: int, k: int, padding: str) -> np.ndarray:
    """M[o, i]: the k-window average around o (stride 1, size kept); zeros outside the map
    (`same`, the divisor stays k) or wrapping around (`circular`). Low pad (k - 1) // 2."""
    lo = (k - 1) // 2
    M = np.zeros((n, n))
    for o in range(n):
        for e in range(k):
            i = o + e - lo
            if padding == "circular":
                M[o, i % n] += 1.0 / k
            elif 0 <= i < n:
                M[o, i] += 1.0 / k
    return M


# ----------------------------------------------------------------------------------------------
# the layer maps on one pair


def _relu(u, v1, v2):
    r = np.sqrt(np.maximum(v1 * v2 - u * u, 0.0))
    theta = np.arctan2(r, u)
    return (r + (math.pi - theta) * u) / (2 * math.pi), (math.pi - theta) / (2 * math.pi)


def _erf(u, v1, v2):
    prod = (1 + 2 * v1) * (1 + 2 * v2)
    value = (2 / math.pi) * np.arcsin(np.clip(2 * u / np.sqrt(prod), -1.0, 1.0))
    factor = (4 / math.pi) / np.sqrt(prod - 4 * u * u)
    return value, factor


def _identity(u, v1, v2):
    return u, np.ones_like(u)


def _abrelu_with(a, b):
    """a min(x, 0) + b max(x, 0), from four relu quadrants: min(x, 0) = -relu(-x), and
    (-X, Y) has covariance -u, so E[min(X,0) max(Y,0)] = -J(-u) with J the relu kernel."""
    def act(u, v1, v2):
        j_pos, p_pos = _relu(u, v1, v2)
        j_neg, p_neg = _relu(-u, v1, v2)
        return (a * a + b * b) * j_pos - 2 * a * b * j_neg, (a * a + b * b) * p_pos + 2 * a * b * p_neg
    return act


_GL_Z, _GL_W = np.polynomial.legendre.leggauss(96)
_GH_Z = 11.0 * _GL_Z  # z in [-11, 11]; the Gaussian weight outside is < 1e-26
_GH_W = 11.0 * _GL_W * np.exp(-_GH_Z ** 2 / 2) / math.sqrt(2 * math.pi)


def _gelu(u, v1, v2):
    """x Phi(x) by 96 x 96-point Gauss-Legendre quadrature of the standard-normal integral over
    [-11, 11]^2 (the integrand is smooth, so this converges to rounding)."""
    u, v1, v2 = np.broadcast_arrays(np.asarray(u, dtype=np.float64), v1, v2)
    if max(np.max(v1), np.max(v2)) > 4.0:  # the kink of x Phi(x) at scale 1 needs more nodes
        raise ValueError("the reference's gelu quadrature is checked only for variances <= 4")
    rho = np.clip(u / np.sqrt(v1 * v2), -1.0, 1.0)[..., None, None]
    z1, z2 = _GH_Z[:, None], _GH_Z[None, :]
    x = np.sqrt(v1)[..., None, None] * z1
    y = np.sqrt(v2)[..., None, None] * (rho * z1 + np.sqrt(1 - rho * rho) * z2)
    cdf = lambda t: 0.5 * (1 + _erf_fn(t / math.sqrt(2)))  # noqa: E731
    pdf = lambda t: np.exp(-t * t / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    ww = _GH_W[:, None] * _GH_W[None, :]
    value = np.sum(ww * (x * cdf(x)) * (y * cdf(y)), axis=(-2, -1))
    factor = np.sum(ww * (cdf(x) + x * pdf(x)) * (cdf(y) + y * pdf(y)), axis=(-2, -1))
    return value, factor


_erf_fn = np.vectorize(math.erf, otypes=[float])


def _sine(u, v1, v2, freq=1.0):
    """sin(freq x) (the user-rule example, examples/user_rules/sine.py), by the same quadrature:
    smooth, so exact to rounding for freq^2 v <= 4."""
    u, v1, v2 = np.broadcast_arrays(np.asarray(u, dtype=np.float64), v1, v2)
    if freq * freq * max(np.max(v1), np.max(v2)) > 4.0:
        raise ValueError("the reference's sine quadrature is checked only for freq^2 v <= 4")
    rho = np.clip(u / np.sqrt(v1 * v2), -1.0, 1.0)[..., None, None]
    z1, z2 = _GH_Z[:, None], _GH_Z[None, :]
    x = np.sqrt(v1)[..., None, None] * z1
    y = np.sqrt(v2)[..., None, None] * (rho * z1 + np.sqrt(1 - rho * rho) * z2)
    ww = _GH_W[:, None] * _GH_W[None, :]
    value = np.sum(ww * np.sin(freq * x) * np.sin(freq * y), axis=(-2, -1))
    factor = np.sum(ww * freq * freq * np.cos(freq * x) * np.cos(freq * y), axis=(-2, -1))
    return value, factor


_ACT = {"relu": _relu, "erf": _erf, "identity": _identity, "gelu": _gelu}


def _activation(name, p):
    if name == "abrelu":
        return _abrelu_with(p["a"], p["b"])
    if name == "leaky_relu":
        return _abrelu_with(p["slope"], 1.0)
    if name == "sine":
        return lambda u, v1, v2: _sine(u, v1, v2, p["freq"])
    return _ACT[name]


def _diagonal(S):
    """v[p] = S[p, p] of a self pair (a 2-D map, or the scalar itself after the readout)."""
    return S if S.ndim == 0 else np.einsum("ijij->ij", S)


def _run(layers, S, T, var_a, var_b, recorded, n_act, probe):
    """(S, T) after `layers`, from (S, T); `n_act[0]` counts the activations passed so far (across
    nested residual blocks), `recorded` collects the variances of a self pair."""
    for name, p in layers:
        if name == "conv":
            if S.ndim == 0:
                raise ValueError("conv after the readout")
            Ah = conv_taps(S.shape[0], p["size"], p["stride"], p["padding"], p["dilation"])
            Aw = conv_taps(S.shape[1], p["size"], p["stride"], p["padding"], p["dilation"])
            scale = p["w_std"] ** 2 / p["size"] ** 2

            # sum over taps d = (x, y), the SAME tap on both sides: S[s p + d - lo, s q + d - lo]
            def conv(X):
                return scale * np.einsum("xai,ybj,xcl,yem,ijlm->abce", Ah, Aw, Ah, Aw, X, optimize=True)

            S_new = conv(S) + p["b_std"] ** 2
            T = conv(T) + (S_new if p["trainable"] else 0.0)
            S = S_new
        elif name == "avgpool":
            if S.ndim == 0:
                raise ValueError("avgpool after the readout")
            Mh = pool_matrix(S.shape[0], p["size"], p["stride"])
            Mw = pool_matrix(S.shape[1], p["size"], p["stride"])

            def pool(X):
                return np.einsum("ai,bj,cl,em,ijlm->abce", Mh, Mw, Mh, Mw, X, optimize=True)

            S, T = pool(S), pool(T)
        elif name == "lap":
            if S.ndim == 0:
                raise ValueError("lap after the readout")
            Mh = lap_matrix(S.shape[0], p["size"], p["padding"])
            Mw = lap_matrix(S.shape[1], p["size"], p["padding"])
            S = np.einsum("ai,bj,cl,em,ijlm->abce", Mh, Mw, Mh, Mw, S, optimize=True)
            T = np.einsum("ai,bj,cl,em,ijlm->abce", Mh, Mw, Mh, Mw, T, optimize=True)
        elif name == "flip":
            raise ValueError("flip must be the first layer (reference_kernels handles it)")
        elif name in ACTIVATIONS or name in MORE_ACTIVATIONS:
            if var_a is None:
                v1 = v2 = _diagonal(S)
                recorded.append(v1)
            else:
                v1, v2 = var_a[n_act[0]], var_b[n_act[0]]
            n_act[0] += 1
            if S.ndim == 4:
                v1 = v1[:, :, None, None]
                v2 = v2[None, None, :, :]
            if probe is not None:
                probe(name, S, v1, v2)
            S, factor = _activation(name, p)(S, v1, v2)
            T = factor * T
        elif name == "residual":
            # y = x + c f(x): the branch starts from x's (S, T); x and f(x) are uncorrelated
            # (f ends in fresh zero-mean weights), so the covariances add, f's scaled by c^2
            S_f, T_f = _run(p["body"], S, T, var_a, var_b, recorded, n_act, probe)
            S, T = S + p["scale"] ** 2 * S_f, T + p["scale"] ** 2 * T_f
        elif name == "gap":
            if S.ndim == 0:
                raise ValueError("second readout")
            S, T = S.mean(), T.mean()
        elif name == "flatten":
            if S.ndim == 0:
                raise ValueError("second readout")
            S, T = _diagonal(S).mean(), _diagonal(T).mean()
        elif name == "dense":
            if S.ndim != 0:
                raise ValueError("dense before the readout")
            S_new = p["w_std"] ** 2 * S + p["b_std"] ** 2
            T = p["w_std"] ** 2 * T + (S_new if p["trainable"] else 0.0)
            S = S_new
        else:
            raise ValueError(f"unknown layer {name!r}")
    return S, T


def _pair(layers, xa, xb, var_a=None, var_b=None, probe=None):
    """Propagate (S, T) of the pair (xa, xb) through `layers`.

    var_a / var_b: the variances v at the input of each activation, from the self pairs. When
    they are None this IS a self pair (xa is xb) and the variances are read off its own
    diagonal and returned, so the caller can run the self pairs first and reuse them.
    probe(name, u, v1, v2), if given, sees the input of every activation.
    """
    C = xa.shape[0]
    S = np.einsum("cij,ckl->ijkl", xa, xb) / C
    T = np.zeros_like(S)
    recorded = []
    S, T = _run(layers, S, T, var_a, var_b, recorded, [0], probe)
    if S.ndim != 0:
        raise ValueError("the network has no readout (gap or flatten)")
    return float(S), float(T), recorded


def reference_kernels(layers, x1, x2=None):
    """(nngp [n1, n2], ntk [n1, n2]) in float64 for images x1 [n1, C, H, W], x2 [n2, C, H, W].

    x2=None means x2 = x1. A leading `flip` layer gives the kernels of the flip-averaged network
    f(x) + f(mirror x) over 2: the mean of K(g a, h b) over the four mirror combinations.
    """
    x1 = np.asarray(x1, dtype=np.float64)
    x2 = x1 if x2 is None else np.asarray(x2, dtype=np.float64)
    if layers and layers[0][0] == "flip":
        rest = list(layers[1:])
        parts = [reference_kernels(rest, a, b) for a in (x1, x1[..., ::-1]) for b in (x2, x2[..., ::-1])]
        return sum(p[0] for p in parts) / 4, sum(p[1] for p in parts) / 4
    layers = [layer(name, **params) for name, params in layers]
    var1 = [_pair(layers, x, x)[2] for x in x1]
    var2 = var1 if x2 is x1 else [_pair(layers, x, x)[2] for x in x2]
    nngp = np.zeros((len(x1), len(x2)))
    ntk = np.zeros((len(x1), len(x2)))
    for i, a in enumerate(x1):
        for j, b in enumerate(x2):
            nngp[i, j], ntk[i, j], _ = _pair(layers, a, b, var1[i], var2[j])
    return nngp, ntk


def min_relu_decorrelation(layers, x1, x2=None):
    """min over the inputs of every relu of 1 - u^2 / (v1 v2), i.e. 1 - correlation^2, leaving
    out the exact self-correlations (position p of an image with itself).

    Near 0 the relu NTK factor (pi - theta) / (2 pi) is ill-conditioned: theta = atan2(r, u)
    with r = sqrt(v1 v2 - u^2), so a relative rounding e of the covariances moves theta by
    ~sqrt(e). Exactly collinear features (one input channel and only 1x1 convs before the relu,
    one-pixel one-channel images, ...) give 0 here, and any implementation working in a
    precision with unit roundoff eps can only promise ~sqrt(eps) relative accuracy for them.
    """
    x1 = np.asarray(x1, dtype=np.float64)
    x2 = x1 if x2 is None else np.asarray(x2, dtype=np.float64)
    if layers and layers[0][0] == "flip":  # every mirror combination is a pair that is computed
        x1 = np.concatenate([x1, x1[..., ::-1]])
        x2 = np.concatenate([x2, x2[..., ::-1]])
        layers = layers[1:]
    layers = [layer(name, **params) for name, params in layers]
    var1 = [_pair(layers, x, x)[2] for x in x1]
    var2 = [_pair(layers, x, x)[2] for x in x2]
    worst = [math.inf]

    for i, a in enumerate(x1):
        for j, b in enumerate(x2):
            same = a.shape == b.shape and np.array_equal(a, b)

            def probe(name, u, v1, v2):
                if name != "relu" or (same and np.ndim(u) == 0):
                    return
                dec = 1 - u * u / np.maximum(v1 * v2, 1e-300)
                if same:  # leave out p = q
                    n = u.shape[0] * u.shape[1]
                    dec = dec.reshape(n, n).copy()
                    np.fill_diagonal(dec, np.inf)
                worst[0] = min(worst[0], float(np.min(dec)))

            _pair(layers, a, b, var1[i], var2[j], probe)
    return worst[0]


def output_shape(layers, height, width):
    """The (h, w) map size before the readout (raises on an impossible geometry)."""
    h, w = height, width
    for name, p in layers:
        if name == "conv":
            h = conv_geometry(h, p["size"], p["stride"], p["padding"], p.get("dilation", 1))[0]
            w = conv_geometry(w, p["size"], p["stride"], p["padding"], p.get("dilation", 1))[0]
        elif name == "avgpool":
            h, w = pool_matrix(h, p["size"], p["stride"]).shape[0], pool_matrix(w, p["size"], p["stride"]).shape[0]
        elif name in ("gap", "flatten"):
            break
    return h, w


# ----------------------------------------------------------------------------------------------
# .arch text, both ways


def _format_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if value == math.sqrt(2):
        return "sqrt(2)"
    return repr(float(value))


def arch_text(layers, height, width, channels, explicit=True) -> str:
    """`.arch` source for `layers`. explicit=False leaves out parameters equal to their default."""
    lines = [f"input height={height} width={width} channels={channels}"]

    def write(layers, indent):
        for name, params in layers:
            name, full = layer(name, **params)
            if name == "residual":
                lines.append(f"{indent}residual scale={_format_value(full['scale'])} {{")
                write(full["body"], indent + "  ")
                lines.append(f"{indent}}}")
                continue
            lines.append(indent + _layer_text(name, full, explicit))

    write(layers, "")
    return "\n".join(lines) + "\n"


def _layer_text(name, full, explicit) -> str:
    shown = {
        key: value
        for key, value in full.items()
        if explicit or key == "size" and name == "avgpool" or DEFAULTS[name].get(key, object()) != value
    }
    if name == "avgpool" and not explicit and shown.get("stride") == full["size"]:
        del shown["stride"]
    return " ".join([name] + [f"{k}={_format_value(v)}" for k, v in shown.items()])


def _parse_value(text: str):
    m = re.fullmatch(r"sqrt\(\s*([-+0-9.eE]+)\s*\)", text)
    if m:
        return math.sqrt(float(m.group(1)))
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def parse_arch(text: str):
    """A tiny `.arch` reader: returns ((height, width, channels), layers with defaults filled).

    Enough for the hand-written networks of the tests: `#` comments, `repeat N {` ... `}` and
    `residual [scale=S] {` ... `}` blocks (nestable, braces as the tests write them), `key=value`
    with numbers, words and sqrt(x).
    """
    stack = [[]]  # open blocks: lists of statements
    opened = []   # per open block: ("repeat", count) or ("residual", scale)
    shape = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"repeat\s+(\d+)\s*\{", line)
        if m:
            opened.append(("repeat", int(m.group(1))))
            stack.append([])
            continue
        m = re.fullmatch(r"residual(?:\s+scale=(\S+))?\s*\{", line)
        if m:
            opened.append(("residual", 1.0 if m.group(1) is None else _parse_value(m.group(1))))
            stack.append([])
            continue
        if line == "}":
            body = stack.pop()
            kind, value = opened.pop()
            if kind == "repeat":
                stack[-1].extend(body * value)
            else:
                stack[-1].append(layer("residual", scale=value, body=body))
            continue
        name, *pairs = line.split()
        if name == "use":  # a rule module for the package; the reference has its own formulas
            continue
        params = {}
        for pair in pairs:
            key, value = pair.split("=", 1)
            params[key] = _parse_value(value)
        if name == "input":
            shape = (params["height"], params["width"], params["channels"])
            continue
        stack[-1].append(layer(name, **params))
    if len(stack) != 1 or shape is None:
        raise ValueError("unbalanced repeat block or no input line")
    return shape, [(name, dict(params)) for name, params in stack[0]]
