"""Spectral norm ``||J(x)||_2`` of the Jacobian of an MLP tail ``h_L``, per sample, batched.

Theorem 4.2's bound decreases when ``||J||`` grows, so an *under*-estimate would inflate the bound.
Every method here therefore returns the exact value or a guaranteed *over*-estimate:

``exact``
    eigenvalues of the per-sample Gram matrix ``J J^T`` (or ``J^T J``, whichever is smaller) in
    float64, plus a rounding slack. Cubic in the width; used automatically for small tails.
``certified``
    (default for wide tails, e.g. LeNet's 800 -> 500 layer.) Batched Lanczos gives an estimate
    ``theta ~ lambda_max(A)`` of ``A = J J^T`` cheaply: for one hidden layer ``A v = g * (G (g * v))``
    with the shared Gram matrix ``G = W W^T``, so every step is one matrix-matrix product over the
    whole batch. Then ``mu = theta (1 + eta)`` is *certified* to satisfy ``lambda_max(A) <= mu`` by a
    Cholesky factorisation of ``mu I - A`` (it succeeds iff ``mu I - A`` is positive definite).
    ``eta`` climbs the ladder ``CERTIFY_MARGINS`` for the samples that fail; samples that never
    certify fall back to ``trace(A) >= lambda_max(A)``. A backward-error slack for float64 rounding is added
    (``C + E = L L^T`` with ``||E|| <= gamma_{m+1} ||L||_F^2``, Higham, Thm 10.3), so the result is
    an upper bound on the exact spectral norm. The over-estimate is at most ``sqrt(1 + eta)``,
    i.e. about 5e-6 relative at the first level (where nearly all samples certify).
``frobenius``
    ``||J||_F >= ||J||_2``: cheap and always valid, but loose.

Rows of ``J`` whose activation derivative is exactly zero (inactive ReLUs) do not change
``J J^T``'s non-zero spectrum, so they are dropped before the cubic step.

Extreme magnitudes. ``J = D_L W_L ... D_1 W_1`` is formed from *power-of-two normalised* factors:
every weight matrix ``W_l`` is divided by ``2^{e_l}`` (one exponent per layer, ``max |W_l| / 2^{e_l}`` in
``[1/2, 1)``) and every derivative vector ``D_l`` by ``2^{e_{l,b}}`` (one per layer and sample). Scaling by
a power of two is exact in binary floating point, and ``||J|| = 2^{E_b} ||J~||`` with
``E_b = sum_l (e_l + e_{l,b})``, so the norm of the normalised ``J~`` (whose Gram matrix can neither
overflow nor underflow for weights of any size, e.g. 1e150 or 1e-150) is scaled back at the very end.
Every slack above is relative, so the guarantee carries over. A true norm above the float64 range is
returned as ``inf`` (still an over-estimate); non-finite weights or activations (an overflowing
forward pass) raise ``ValueError``.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ._common import BOUND_DTYPE, UNIT_ROUNDOFF_F64

#: relative margins tried, in order, when certifying ``lambda_max <= theta * (1 + eta)``
CERTIFY_MARGINS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)

#: below this Gram size the exact eigenvalue route is cheaper than Lanczos + Cholesky
EXACT_MAX_SIZE = 64

#: memory budget (bytes) for one block of per-sample float64 Gram matrices. On the CPU it is small
#: enough to stay in cache through gather -> shift -> Cholesky (memory-bound otherwise); on a GPU
#: large blocks keep the batched kernels busy.
_GRAM_BLOCK_BYTES = {"cpu": 1 << 24, "cuda": 1 << 29}

JACOBIAN_NORM_METHODS = ("auto", "exact", "certified", "frobenius")

#: intra-op CPU threads while computing ``||J||`` (None: leave torch's setting alone). The work is
#: many small per-sample problems (factorisations of <= ~500-wide matrices, Lanczos vectors): threads
#: buy little, and on a shared CPU they cost a lot -- on the 2-core CI machine under load, batched
#: Cholesky was 12x and the whole LeNet bound 2.3x slower with 2 threads than with 1. torch's setting
#: is process-global; it is restored on exit. Set to None on a large idle CPU with wide tails.
SPECTRAL_CPU_THREADS: int | None = 1


@contextlib.contextmanager
def _cpu_threads(device: torch.device):
    if device.type != "cpu" or SPECTRAL_CPU_THREADS is None or torch.get_num_threads() == SPECTRAL_CPU_THREADS:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(SPECTRAL_CPU_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _gamma(k: int) -> float:
    u = UNIT_ROUNDOFF_F64
    return k * u / (1.0 - k * u)


def activation_derivative(activation: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """``g'(z)`` of a supported activation module, elementwise (``ReLU'(0) = 0`` as in torch, 4.2)."""
    if isinstance(activation, nn.ReLU):
        return (z > 0).to(z.dtype)
    if isinstance(activation, nn.Tanh):
        return 1.0 - torch.tanh(z) ** 2
    if isinstance(activation, nn.Sigmoid):
        s = torch.sigmoid(z)
        return s * (1.0 - s)
    if isinstance(activation, nn.Softplus):
        # torch's softplus is linear (slope 1) where beta * z > threshold
        bz = activation.beta * z
        return torch.where(bz > activation.threshold, torch.ones_like(z), torch.sigmoid(bz))
    raise TypeError(f"no derivative known for activation {type(activation).__name__}")


def tail_forward(linears, activations, x: torch.Tensor):
    """Float64 forward pass through ``act_l(W_l h + b_l)``; returns ``(h_L, [g'_1, ..., g'_L])``."""
    h = x.to(BOUND_DTYPE)
    derivatives = []
    for linear, activation in zip(linears, activations):
        z = h @ linear.weight.to(BOUND_DTYPE).t()
        if linear.bias is not None:
            z = z + linear.bias.to(BOUND_DTYPE)
        derivatives.append(activation_derivative(activation, z))
        h = activation(z)
    return h, derivatives


def explicit_jacobian(linears, derivatives) -> torch.Tensor:
    """``J = D_L W_L ... D_1 W_1`` per sample, ``[B, n, d]`` (float64)."""
    return _jacobian_from_factors([linear.weight.to(BOUND_DTYPE) for linear in linears], derivatives)


def _jacobian_from_factors(weights, derivatives) -> torch.Tensor:
    """``D_L W_L ... D_1 W_1`` from float64 weight matrices and derivative vectors ``[B, width]``."""
    jac = derivatives[0].unsqueeze(2) * weights[0].unsqueeze(0)
    for weight, g in zip(weights[1:], derivatives[1:]):
        jac = g.unsqueeze(2) * torch.matmul(weight, jac)
    return jac


def power_of_two_exponent(values: torch.Tensor, dim=None) -> torch.Tensor:
    """Integer ``e`` with ``max |values| / 2^e`` in ``[1/2, 1)`` (over ``dim``, or all entries); ``e = 0``
    where the maximum is 0. Dividing by ``2^e`` (``torch.ldexp``) is exact in binary floating point."""
    amax = values.abs().amax() if dim is None else values.abs().amax(dim=dim)
    return torch.frexp(amax).exponent.to(torch.int64)


def scale_by_power_of_two(values: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """``values * 2^exponent``, exact unless the result leaves the float64 range; ``exponent`` is a scalar
    or one integer per leading row. Applied in two halves: ``2^exponent`` alone may overflow (a
    subnormal value times ``2^1029``) although the product is representable."""
    e = exponent.to(torch.int64)
    if e.dim() > 0:
        e = e.reshape(e.shape + (1,) * (values.dim() - e.dim()))
    half = torch.div(e, 2, rounding_mode="floor")
    return torch.ldexp(torch.ldexp(values, half.to(values.dtype)), (e - half).to(values.dtype))


def _normalise(values: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """``values / 2^exponent`` (exact); ``exponent`` is a scalar or one per leading row."""
    return scale_by_power_of_two(values, -exponent)


def _gram_of_explicit(jac: torch.Tensor) -> torch.Tensor:
    return jac @ jac.transpose(1, 2) if jac.shape[1] <= jac.shape[2] else jac.transpose(1, 2) @ jac


def _lambda_max_exact(gram: torch.Tensor, inner_dim: int) -> torch.Tensor:
    """Largest eigenvalue of PSD ``gram`` ``[b, m, m]`` (float64) plus a rounding slack."""
    m = gram.shape[-1]
    lam = torch.linalg.eigvalsh(gram)[:, -1].clamp_min(0)
    frob = torch.linalg.matrix_norm(gram)
    trace = gram.diagonal(dim1=-2, dim2=-1).sum(-1)
    # eigensolver backward error ~ m u ||A||_F; forming the Gram ~ gamma_{d} trace(A)
    return lam + 4 * _gamma(m + 2) * frob + _gamma(inner_dim + 3) * trace


def _certify(gram: torch.Tensor, theta: torch.Tensor, inner_dim: int, refine_steps: int = 160) -> torch.Tensor:
    """Smallest certified ``mu >= lambda_max(gram)`` on the ladder ``theta (1 + eta)``, else the trace.

    Samples that fail the first rung get a longer Lanczos run on their own Gram matrix (fresh start,
    ``refine_steps``) before the margin grows -- an unconverged estimate is the usual cause.
    """
    m = gram.shape[-1]
    trace = gram.diagonal(dim1=-2, dim2=-1).sum(-1)
    slack_gram = _gamma(inner_dim + 3) * trace  # error of the computed Gram matrix itself
    result = trace + slack_gram  # trace(A) >= lambda_max(A) for PSD A: always valid
    pending = trace > 0  # a zero matrix has norm 0 = trace; nothing to certify
    theta = theta.clamp_min(0).clone()
    margins = (CERTIFY_MARGINS[0],) + tuple(CERTIFY_MARGINS)
    for rung, eta in enumerate(margins):
        index = pending.nonzero().squeeze(1)
        if index.numel() == 0:
            break
        if rung == 1:  # refine the estimate of the samples that failed the first rung
            sub = gram[index]
            start = 1.0 + 0.5 * _seeded_unit_noise(m, gram.device, index.numel())
            refined = _lanczos_top_ritz(lambda v: torch.bmm(sub, v.unsqueeze(2)).squeeze(2), start, refine_steps)
            theta[index] = torch.maximum(theta[index], refined)
        mu = theta[index] * (1.0 + eta) + 1e-12 * trace[index]
        shifted = gram.neg() if index.numel() == gram.shape[0] else gram[index].neg_()
        shifted.diagonal(dim1=-2, dim2=-1).add_(mu[:, None])  # mu I - A
        factor, info = torch.linalg.cholesky_ex(shifted)
        ok = info == 0
        if ok.any():
            done = index[ok]
            # C + E = L L^T, |E| <= gamma_{m+1} |L||L^T|  =>  lambda_min(C) >= -gamma_{m+1} ||L||_F^2
            fro_sq = torch.linalg.vector_norm(factor[ok], dim=(-2, -1)) ** 2
            slack = _gamma(m + 1) * fro_sq + 2 * UNIT_ROUNDOFF_F64 * mu[ok]
            result[done] = torch.minimum(result[done], mu[ok] + slack + slack_gram[done])
            pending[done] = False
    return result


def _lanczos_top_ritz(apply, v0: torch.Tensor, steps: int) -> torch.Tensor:
    """Largest Ritz value after ``steps`` batched Lanczos steps (three-term recurrence).

    ``apply`` maps ``[B, k] -> [B, k]`` (the per-sample PSD operator), ``v0`` ``[B, k]`` the start.
    Convergence to ``lambda_max`` depends on the square root of the relative gap, so 40 steps reach
    ~1e-7 even for the clustered spectra of randomly initialised layers, where plain power iteration
    stalls. There is no reorthogonalisation: losing orthogonality only duplicates converged Ritz
    values, and the value is merely an *estimate* that is certified afterwards -- which is also why
    the iteration may run in float32. The tridiagonal eigenproblem is solved in float64.
    """
    batch, k = v0.shape
    steps = max(1, min(int(steps), k))
    q = v0 / torch.linalg.vector_norm(v0, dim=1, keepdim=True).clamp_min(1e-30)
    q_prev = torch.zeros_like(q)
    beta_prev = v0.new_zeros(batch)
    alphas, betas = [], []
    for _ in range(steps):
        w = apply(q)
        alpha = torch.linalg.vecdot(w, q)
        w.addcmul_(alpha[:, None], q, value=-1.0).addcmul_(beta_prev[:, None], q_prev, value=-1.0)
        beta = torch.linalg.vector_norm(w, dim=1)
        alphas.append(alpha)
        betas.append(beta)
        q_prev, beta_prev = q, beta
        q = w.div_(beta.clamp_min(1e-30)[:, None])  # breakdown (invariant subspace) -> q = 0, harmless
    diag = torch.stack(alphas, 1).to(BOUND_DTYPE)
    off = torch.stack(betas, 1)[:, :-1].to(BOUND_DTYPE)
    tri = torch.diag_embed(diag) + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
    return torch.linalg.eigvalsh(tri)[:, -1]


def _top_singular_vector(weight64: torch.Tensor, rows: bool, iterations: int = 30) -> torch.Tensor:
    """Approximate top left (``rows``) or right singular vector of the shared ``W`` by power iteration
    (only a starting point, so its accuracy does not matter for the guarantee)."""
    gram = weight64 @ weight64.t() if rows else weight64.t() @ weight64
    v = torch.ones(gram.shape[0], dtype=BOUND_DTYPE, device=weight64.device)
    for _ in range(iterations):
        v = gram @ v
        v = v / torch.linalg.vector_norm(v).clamp_min(1e-300)
    return v


def _seeded_unit_noise(k: int, device: torch.device, batch: int | None = None) -> torch.Tensor:
    generator = torch.Generator(device="cpu").manual_seed(20170601)
    shape = (k,) if batch is None else (batch, k)
    noise = torch.randn(*shape, generator=generator, dtype=BOUND_DTYPE)
    return (noise / torch.linalg.vector_norm(noise, dim=-1, keepdim=True)).to(device)


def _start_vectors(weight64: torch.Tensor, g: torch.Tensor, gram_rows: bool) -> torch.Tensor:
    """Deterministic start: the top singular vector of the shared ``W`` (masked by ``g`` on the row
    side) plus a small fixed pseudo-random part, so no sample starts orthogonal to its top vector."""
    top = _top_singular_vector(weight64, gram_rows)
    noise = _seeded_unit_noise(top.shape[0], weight64.device)
    if gram_rows:
        return g * (top + 0.1 * noise)
    return (top + 0.1 * noise).expand(g.shape[0], top.shape[0]).clone()


@torch.no_grad()
def jacobian_spectral_norm(linears, activations, x: torch.Tensor, *, method: str = "auto",
                           lanczos_steps: int = 40) -> torch.Tensor:
    """``||J_{h_L}(x)||_2`` per sample ``[B]`` (float64), exact or a guaranteed over-estimate.

    ``linears``/``activations``: the hidden layers of the tail (``h_L = act_L(W_L ... act_1(W_1 x))``),
    ``x``: ``[B, d]``. ``method``: one of ``JACOBIAN_NORM_METHODS`` (see the module docstring);
    ``auto`` uses ``exact`` when the Gram matrix is at most ``EXACT_MAX_SIZE`` wide, else ``certified``.
    On the CPU it runs with ``SPECTRAL_CPU_THREADS`` intra-op threads.
    """
    with _cpu_threads(x.device):
        return _jacobian_spectral_norm(linears, activations, x, method=method, lanczos_steps=lanczos_steps)


def _jacobian_spectral_norm(linears, activations, x: torch.Tensor, *, method: str,
                            lanczos_steps: int) -> torch.Tensor:
    if method not in JACOBIAN_NORM_METHODS:
        raise ValueError(f"method must be one of {JACOBIAN_NORM_METHODS}, got {method!r}")
    linears, activations = list(linears), list(activations)
    raw_weights = [linear.weight.detach().to(BOUND_DTYPE) for linear in linears]
    if not all(bool(torch.isfinite(w).all()) for w in raw_weights):
        raise ValueError("jacobian_spectral_norm: the tail has non-finite weights")
    _, raw_derivatives = tail_forward(linears, activations, x)
    if not all(bool(torch.isfinite(g).all()) for g in raw_derivatives):
        raise ValueError("jacobian_spectral_norm: non-finite activation derivatives (the tail's forward pass "
                         "overflows in float64); no finite bound on ||J|| can be computed")
    batch = x.shape[0]
    n, d = linears[-1].out_features, linears[0].in_features
    # exact power-of-two normalisation (module docstring): J = 2^exponent * J~, J~ built from the
    # normalised factors, so its Gram matrix neither overflows nor underflows
    weight_exponents = [power_of_two_exponent(w) for w in raw_weights]
    derivative_exponents = [power_of_two_exponent(g, dim=1) for g in raw_derivatives]
    weights = [_normalise(w, e) for w, e in zip(raw_weights, weight_exponents)]
    derivatives = [_normalise(g, e) for g, e in zip(raw_derivatives, derivative_exponents)]
    exponent = sum(weight_exponents) + sum(derivative_exponents)  # [B]
    normalised = _jacobian_spectral_norm_normalised(weights, derivatives, x, method=method,
                                                    lanczos_steps=lanczos_steps, n=n, d=d, batch=batch)
    # scale back; overflow to inf (true norm beyond float64) is still a valid over-estimate, and a positive
    # norm below the float64 range becomes the smallest subnormal rather than 0 (an under-estimate)
    norm = scale_by_power_of_two(normalised, exponent)
    smallest = torch.full_like(norm, torch.finfo(BOUND_DTYPE).smallest_normal * 2.0**-52)
    return torch.where((normalised > 0) & (norm == 0), smallest, norm)


def _jacobian_spectral_norm_normalised(weights, derivatives, x: torch.Tensor, *, method: str, lanczos_steps: int,
                                       n: int, d: int, batch: int) -> torch.Tensor:
    """The norm of ``D_L W_L ... D_1 W_1`` for already normalised float64 factors (see the caller)."""
    if method == "frobenius":
        if len(weights) == 1:
            row_sq = weights[0].square().sum(1)
            fro_sq = (derivatives[0].square() * row_sq).sum(1)
        else:
            fro_sq = _jacobian_from_factors(weights, derivatives).square().sum(dim=(1, 2))
        return (fro_sq * (1 + _gamma(d + 3))).sqrt()

    single = len(weights) == 1
    weight64 = weights[0]
    if single:
        g = derivatives[0]
        gram_rows = n <= d
        active = g != 0
        m_max = int(active.sum(1).max().item()) if gram_rows else d
        size = max(m_max, 1)
    else:
        size = min(n, d)
    use_exact = method == "exact" or (method == "auto" and size <= EXACT_MAX_SIZE)

    if single and not use_exact:
        # estimate lambda_max for the whole chunk with shared-weight GEMMs (float32)
        w32 = weight64.to(torch.float32)
        g32 = g.to(torch.float32)
        if gram_rows:  # A = D G D with the shared G = W W^T (n x n)
            gram32 = w32 @ w32.t()

            def apply(v):
                return g32 * ((g32 * v) @ gram32)
        else:  # A = W^T D^2 W (d x d)
            g2 = g32 * g32

            def apply(v):
                return ((v @ w32.t()) * g2) @ w32

        start = _start_vectors(weight64, g, gram_rows).to(torch.float32)
        theta_all = _lanczos_top_ritz(apply, start, lanczos_steps)
    block = max(1, _GRAM_BLOCK_BYTES.get(x.device.type, 1 << 24) // (8 * size * size))
    out = torch.empty(batch, dtype=BOUND_DTYPE, device=x.device)
    shared_gram = weight64 @ weight64.t() if (single and gram_rows) else None
    for lo in range(0, batch, block):
        hi = min(lo + block, batch)
        if single:
            gb = g[lo:hi]
            if gram_rows:
                # keep only rows with g' != 0 (zero rows add only zero eigenvalues)
                order = torch.argsort((gb != 0).to(gb.dtype), dim=1, descending=True, stable=True)[:, :size]
                gs = gb.gather(1, order)
                gram = shared_gram[order.unsqueeze(2), order.unsqueeze(1)]
                gram.mul_(gs.unsqueeze(2)).mul_(gs.unsqueeze(1))
            else:
                gram = (weight64.t().unsqueeze(0) * gb.square().unsqueeze(1)) @ weight64
            inner = d if gram_rows else n
        else:
            jac = _jacobian_from_factors(weights, [dv[lo:hi] for dv in derivatives])
            gram = _gram_of_explicit(jac)
            inner = max(n, d) * len(weights)
        if use_exact:
            lam = _lambda_max_exact(gram, inner)
        else:
            if single:
                theta = theta_all[lo:hi]
            else:
                start = 1.0 + 0.1 * _seeded_unit_noise(gram.shape[-1], x.device, hi - lo)
                theta = _lanczos_top_ritz(lambda v, a=gram: torch.bmm(a, v.unsqueeze(2)).squeeze(2), start,
                                          lanczos_steps)
            lam = _certify(gram, theta, inner)
        out[lo:hi] = lam.clamp_min(0).sqrt()
    return out


def exact_jacobian_norm_reference(linears, activations, x: torch.Tensor) -> torch.Tensor:
    """Plain ``svdvals`` of the explicit Jacobian (float64), for tests and small problems."""
    _, derivatives = tail_forward(list(linears), list(activations), x)
    return torch.linalg.svdvals(explicit_jacobian(list(linears), derivatives))[:, 0]


__all__ = [
    "CERTIFY_MARGINS",
    "JACOBIAN_NORM_METHODS",
    "activation_derivative",
    "exact_jacobian_norm_reference",
    "explicit_jacobian",
    "jacobian_spectral_norm",
    "power_of_two_exponent",
    "scale_by_power_of_two",
    "tail_forward",
]
