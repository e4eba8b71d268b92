"""Exact minimal L2 adversarial perturbations of linear classifiers (Chapter 3).

This is the ground truth that the bound of Lemma 3.5 and the FGS search are tested against.

Binary case (Lemma 3.1, eq. 3.7): ``r = -(w.x + b) / ||w||^2 * w``, ``||r|| = |w.x + b| / ||w||``.

Multiclass case (eqs. 3.9-3.10): for ``f(x) = c`` and each target ``t != c`` the minimal
perturbation into the (closed, convex) cell of ``t`` solves the least-distance problem

    minimise 1/2 ||r||^2   subject to   (w_t - w_j) . (x + r) + b_t - b_j >= 0   for all j != t,

and ``Delta_adv(x; f) = min_t ||r_t||``. A target whose cell is empty (a class that wins nowhere,
common when C > d + 1) is infeasible and gets ``+inf``. The infimum is attained on the boundary
(a tie between ``c`` and the target), so ``x + (1 + eta) r`` is misclassified for every ``eta > 0``.

The solver is the dual active-set method of Goldfarb & Idnani (1983) specialised to the identity
Hessian, run batched over all (sample, target) pairs. With ``A`` the constraint rows it only needs
the Gram matrix ``G = A A^T`` (``m x m``, ``m = C - 1``, shared by all samples for a given target)
and ``beta_j = z_j - z_t`` (logit differences): the iterate is ``r = A^T lam``. Goldfarb-Idnani
terminates after finitely many exact active-set changes (no step sizes to tune, no convergence
tolerance on the objective); at the end the multipliers of the active set are recomputed from a
single linear solve, so the result is exact to float64 rounding. Everything runs in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: A violated constraint is one whose signed distance (slack / ||row||) is below ``-FEAS_RTOL``
#: times the problem's scale (largest |beta_j| / ||row_j||).
FEAS_RTOL = 1e-12
#: A new constraint is linearly dependent on the active ones when its squared distance to their
#: span is below ``DEP_RTOL`` times its squared norm.
DEP_RTOL = 1e-10


@dataclass
class ExactResult:
    """Per-sample exact minimal perturbation.

    ``norm[B]`` (float64; ``inf`` if no other class can be reached), ``perturbation[B, d]``,
    ``target[B]`` (the class ``x + r`` ties with; -1 if none), ``orig_label[B]`` = ``f(x)``,
    ``target_norms[B, C]``: ``Delta_adv(x; f, t)`` per target (``inf`` for ``f(x)`` and empty
    cells); only filled by ``all_targets=True`` and by the binary closed form, else ``None``.
    """

    norm: torch.Tensor
    perturbation: torch.Tensor
    target: torch.Tensor
    orig_label: torch.Tensor
    target_norms: torch.Tensor | None = None

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(
            {
                "norm": self.norm.cpu().numpy(),
                "target": self.target.cpu().numpy(),
                "orig_label": self.orig_label.cpu().numpy(),
            }
        )


def binary_minimal_perturbation(w: torch.Tensor, b, x: torch.Tensor) -> ExactResult:
    """Lemma 3.1 for the rule ``f(x) = 1 if w.x + b >= 0 else 0`` (eq. 3.2); ``w[d]``, ``x[B, d]``.

    ``perturbation`` is eq. 3.7, which lands exactly on the hyperplane (the infimum of eqs. 3.3-3.4).
    """
    w64 = w.detach().to(torch.float64).reshape(-1)
    x64 = x.detach().to(device=w64.device, dtype=torch.float64)
    b64 = torch.as_tensor(b, dtype=torch.float64, device=w64.device).reshape(())
    g = x64 @ w64 + b64
    sq = w64.dot(w64)
    if sq == 0:
        raise ValueError("w is zero: the classifier is constant and has no adversarial perturbation")
    r = -(g / sq)[:, None] * w64[None, :]
    orig = (g >= 0).long()
    norm = g.abs() / sq.sqrt()
    target_norms = torch.full((x64.shape[0], 2), float("inf"), dtype=torch.float64, device=w64.device)
    target_norms.scatter_(1, (1 - orig)[:, None], norm[:, None])
    return ExactResult(norm=norm, perturbation=r, target=1 - orig, orig_label=orig, target_norms=target_norms)


def exact_minimal_perturbation_linear(
    weight: torch.Tensor,
    bias: torch.Tensor,
    x: torch.Tensor,
    *,
    all_targets: bool = False,
    max_chunk_elements: int = 16_000_000,
) -> ExactResult:
    """Exact ``Delta_adv(x; f)`` and a minimising ``r`` for ``f(x) = argmax(W x + b)``.

    ``weight[C, d]``, ``bias[C]``, ``x[B, d]``; results on ``weight``'s device, float64. ``f(x)``
    breaks ties towards the lower index, like ``torch.argmax``. ``C = 2`` uses the closed form of
    Lemma 3.1 with ``w = w_1 - w_0``; ``C > 2`` solves least-distance QPs.

    Not every target needs its QP: the distance to the pairwise boundary ``c | t`` (Lemma 3.4) is a
    lower bound on ``Delta_adv(x; f, t)``, so after solving the target with the smallest pairwise
    distance, only targets whose pairwise distance is below that solution can still win. Targets
    whose cell is empty (checked once per classifier; emptiness does not depend on ``x``) are
    skipped. This pruning is exact. ``all_targets=True`` solves every target instead and fills
    ``target_norms``. ``max_chunk_elements`` bounds the float64 working memory per chunk.
    """
    W = weight.detach().to(torch.float64)
    if W.dim() != 2 or W.shape[0] < 2:
        raise ValueError(f"weight must have shape [C, d] with C >= 2, got {tuple(W.shape)}")
    device = W.device
    bvec = bias.detach().to(device=device, dtype=torch.float64).reshape(-1)
    if bvec.shape[0] != W.shape[0]:
        raise ValueError(f"bias must have {W.shape[0]} entries, got {bvec.shape[0]}")
    x64 = x.detach().to(device=device, dtype=torch.float64)
    if x64.dim() != 2 or x64.shape[1] != W.shape[1]:
        raise ValueError(f"x must have shape [B, {W.shape[1]}], got {tuple(x64.shape)}")
    C, d = W.shape
    B = x64.shape[0]
    inf = float("inf")
    logits = x64 @ W.T + bvec
    orig = logits.argmax(dim=1)

    if C == 2:
        res = binary_minimal_perturbation(W[1] - W[0], bvec[1] - bvec[0], x64)
        # eq. 3.1 sends ties to class 1, argmax to class 0; labels and targets follow argmax.
        target = 1 - orig
        tn = torch.full((B, 2), inf, dtype=torch.float64, device=device)
        tn.scatter_(1, target[:, None], res.norm[:, None])
        return ExactResult(res.norm, res.perturbation, target, orig, tn)

    solver = _PairSolver(W, bvec, max_chunk_elements)
    rows_idx = torch.arange(B, device=device)
    if all_targets:
        samples = rows_idx.repeat_interleave(C)
        targets = torch.arange(C, device=device).repeat(B)
        sq, feasible, lam = solver.solve(x64, samples, targets)
        target_norms = torch.where(feasible, sq.sqrt(), torch.full_like(sq, inf)).reshape(B, C)
        target_norms[rows_idx, orig] = inf
        best_norm, best_t = target_norms.min(dim=1)
        best_lam = lam.reshape(B, C, -1)[rows_idx, best_t]
    else:
        target_norms = None
        # Lemma 3.4 lower bounds: distance to the pairwise boundary between f(x) and t.
        diff_norm = (W[:, None, :] - W[None, :, :]).norm(dim=2)  # [C, C]
        gap = logits.gather(1, orig[:, None]) - logits
        pair = gap / diff_norm[orig]
        pair = torch.where(diff_norm[orig] > 0, pair, torch.full_like(pair, inf))
        pair[rows_idx, orig] = inf
        pair[:, ~solver.cell_nonempty()] = inf
        # Round 1: the target with the smallest lower bound gives an upper bound on the minimum.
        first_bound, first_t = pair.min(dim=1)
        best_norm = torch.full((B,), inf, dtype=torch.float64, device=device)
        best_t = torch.full((B,), -1, dtype=torch.long, device=device)
        best_lam = torch.zeros(B, C - 1, dtype=torch.float64, device=device)
        reach = torch.isfinite(first_bound)
        if bool(reach.any()):
            s1 = rows_idx[reach]
            sq, feasible, lam = solver.solve(x64, s1, first_t[reach])
            best_norm[s1] = torch.where(feasible, sq.sqrt(), torch.full_like(sq, inf))
            best_t[s1] = torch.where(feasible, first_t[reach], torch.full_like(first_t[reach], -1))
            best_lam[s1] = lam
        # Round 2: every other target whose lower bound is below the current minimum.
        pair[rows_idx, first_t] = inf
        cand = pair < best_norm[:, None]
        if bool(cand.any()):
            s2, t2 = cand.nonzero(as_tuple=True)
            sq, feasible, lam = solver.solve(x64, s2, t2)
            norms = torch.where(feasible, sq.sqrt(), torch.full_like(sq, inf))
            # Per-sample minimum over the candidate pairs (scatter-reduce, then pick the argmin).
            cand_min = torch.full((B,), inf, dtype=torch.float64, device=device)
            cand_min.scatter_reduce_(0, s2, norms, reduce="amin")
            winner = (norms == cand_min[s2]) & (norms < best_norm[s2])
            w_idx = winner.nonzero().squeeze(1)
            best_norm[s2[w_idx]] = norms[w_idx]
            best_t[s2[w_idx]] = t2[w_idx]
            best_lam[s2[w_idx]] = lam[w_idx]
        best_t = torch.where(torch.isfinite(best_norm), best_t, torch.full_like(best_t, -1))

    reachable = torch.isfinite(best_norm)
    safe_t = torch.where(reachable, best_t, torch.zeros_like(best_t))
    r = torch.einsum("bm,bmd->bd", best_lam, solver.rows[safe_t])
    r = torch.where(reachable[:, None], r, torch.zeros_like(r))
    norm = torch.where(reachable, r.norm(dim=1), torch.full_like(best_norm, inf))
    target = torch.where(reachable, best_t, torch.full_like(best_t, -1))
    return ExactResult(norm=norm, perturbation=r, target=target, orig_label=orig, target_norms=target_norms)


class _PairSolver:
    """Least-distance QPs for (sample, target) pairs of one linear classifier."""

    def __init__(self, W: torch.Tensor, bvec: torch.Tensor, max_chunk_elements: int) -> None:
        C, d = W.shape
        self.C, self.d, self.m = C, d, C - 1
        dev = W.device
        # others[t] = the classes j != t in increasing order; rows[t, j] = w_t - w_others[t, j].
        self.others = torch.stack(
            [torch.cat([torch.arange(0, t), torch.arange(t + 1, C)]) for t in range(C)]
        ).to(dev)
        self.rows = W[:, None, :] - W[self.others]  # [C, m, d]
        self.gram = self.rows @ self.rows.transpose(1, 2)  # [C, m, m]
        self.bias_diff = bvec[:, None] - bvec[self.others]  # [C, m]: b_t - b_j
        self.chunk = max(1, max_chunk_elements // (self.m * (self.m + self.d)))

    def cell_nonempty(self) -> torch.Tensor:
        """``[C]`` bool: does class t win anywhere? (the QP at x = 0 is feasible)."""
        _, feasible = min_norm_polyhedron(self.gram, -self.bias_diff)
        return feasible

    def solve(self, x64, samples, targets):
        """Squared minimal norm, feasibility and multipliers for each pair ``(samples[i], targets[i])``."""
        sq_parts, feas_parts, lam_parts = [], [], []
        for start in range(0, samples.numel(), self.chunk):
            s = samples[start : start + self.chunk]
            t = targets[start : start + self.chunk]
            rows = self.rows[t]  # [n, m, d]
            # beta_j = -((w_t - w_j) . x + b_t - b_j), from the rows to avoid cancellation in z_j - z_t.
            beta = -(torch.einsum("nmd,nd->nm", rows, x64[s]) + self.bias_diff[t])
            gram = self.gram[t]
            lam, feasible = min_norm_polyhedron(gram, beta)
            sq = torch.einsum("nm,nmk,nk->n", lam, gram, lam).clamp_min(0)
            sq_parts.append(sq)
            feas_parts.append(feasible)
            lam_parts.append(lam)
        return torch.cat(sq_parts), torch.cat(feas_parts), torch.cat(lam_parts)


def min_norm_polyhedron(
    gram: torch.Tensor,
    beta: torch.Tensor,
    *,
    max_iter: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched ``min 1/2 ||r||^2 s.t. A r >= beta`` given only ``gram = A A^T`` ``[N, m, m]`` and
    ``beta`` ``[N, m]`` (float64). Returns ``(lam[N, m], feasible[N])`` with ``r = A^T lam``,
    ``lam >= 0`` the KKT multipliers (zero outside the active set); ``lam`` is meaningless where
    ``feasible`` is False (the polyhedron is empty).

    Goldfarb-Idnani dual method with identity Hessian. Start at the unconstrained minimiser
    ``r = 0`` with no active constraints; repeatedly take the most violated constraint ``p`` and
    move along the primal direction ``z`` (``a_p`` projected off the active rows) while the dual
    multipliers follow ``zeta = e_p - G_SS^{-1} G_Sp``. A *full step* makes ``p`` tight and adds it; a
    *partial step* drops the active constraint whose multiplier reaches zero first. If ``a_p`` lies in
    the span of the active rows and no multiplier can decrease, the problem is infeasible. Each
    problem advances one step per iteration, so all run in lock-step with masks.
    """
    gram = gram.to(torch.float64)
    beta = beta.to(torch.float64)
    N, m = beta.shape
    dev = beta.device
    if max_iter is None:
        max_iter = 20 * m + 100
    lam = torch.zeros(N, m, dtype=torch.float64, device=dev)
    active = torch.zeros(N, m, dtype=torch.bool, device=dev)
    p = torch.full((N,), -1, dtype=torch.long, device=dev)
    status = torch.zeros(N, dtype=torch.int8, device=dev)  # 0 running, 1 optimal, 2 infeasible
    RUNNING, OPTIMAL, INFEASIBLE = 0, 1, 2

    diag = gram.diagonal(dim1=1, dim2=2)
    row_norm = diag.clamp_min(0).sqrt()
    zero_row = row_norm == 0
    # A zero row reads 0 >= beta_j: infeasible if beta_j > 0, otherwise irrelevant.
    status[(zero_row & (beta > 0)).any(dim=1)] = INFEASIBLE
    safe_norm = torch.where(zero_row, torch.ones_like(row_norm), row_norm)
    dist = (beta.abs() / safe_norm).masked_fill(zero_row, 0)
    feas_tol = FEAS_RTOL * dist.max(dim=1).values.clamp_min(torch.finfo(torch.float64).tiny)

    for _ in range(max_iter):
        running = status == RUNNING
        if not bool(running.any()):
            break
        slack = torch.einsum("nij,nj->ni", gram, lam) - beta
        need = running & (p < 0)
        if bool(need.any()):
            violation = (-slack / safe_norm).masked_fill(active | zero_row, float("-inf"))
            worst, worst_idx = violation.max(dim=1)
            optimal = need & (worst <= feas_tol)
            status[optimal] = OPTIMAL
            p = torch.where(need & ~optimal, worst_idx, p)
        stepping = ((status == RUNNING) & (p >= 0)).nonzero().squeeze(1)
        if stepping.numel() == 0:
            continue
        G, lam_s, act_s, p_s, slack_s = gram[stepping], lam[stepping], active[stepping], p[stepping], slack[stepping]
        n = stepping.numel()
        ar = torch.arange(n, device=dev)
        g_p = G[ar, :, p_s]  # column p of G: a_j . a_p
        # Solve G_SS r_S = G_Sp on the active set (identity rows elsewhere keep the system square).
        both = act_s[:, :, None] & act_s[:, None, :]
        M = torch.where(both, G, torch.zeros_like(G)) + torch.diag_embed((~act_s).to(torch.float64))
        r_dual = torch.linalg.solve(M, torch.where(act_s, g_p, torch.zeros_like(g_p)).unsqueeze(-1)).squeeze(-1)
        r_dual = torch.where(act_s, r_dual, torch.zeros_like(r_dual))
        g_pp = g_p[ar, p_s]
        z_sq = g_pp - (g_p * r_dual).sum(dim=1)  # ||z||^2 = a_p . z, squared distance of a_p to span
        dependent = z_sq <= DEP_RTOL * g_pp
        s_p = slack_s[ar, p_s]
        inf = torch.full_like(s_p, float("inf"))
        t_full = torch.where(dependent, inf, -s_p / torch.where(dependent, torch.ones_like(z_sq), z_sq))
        ratios = torch.where(act_s & (r_dual > 0), lam_s / torch.where(r_dual > 0, r_dual, torch.ones_like(r_dual)),
                             torch.full_like(lam_s, float("inf")))
        t_partial, k = ratios.min(dim=1)
        t = torch.minimum(t_full, t_partial)
        infeasible = torch.isinf(t)
        t = torch.where(infeasible, torch.zeros_like(t), t)
        zeta = -r_dual
        zeta[ar, p_s] = 1.0
        lam_s = lam_s + t[:, None] * zeta
        full = ~infeasible & (t_full <= t_partial)
        partial = ~infeasible & ~full
        # Partial step: constraint k leaves the active set with a multiplier of exactly zero.
        part_idx = partial.nonzero().squeeze(1)
        lam_s[part_idx, k[part_idx]] = 0.0
        act_s[part_idx, k[part_idx]] = False
        # Full step: p becomes active; a new p is chosen next iteration.
        full_idx = full.nonzero().squeeze(1)
        act_s[full_idx, p_s[full_idx]] = True
        p_s = torch.where(full, torch.full_like(p_s, -1), p_s)
        lam_s = torch.where(act_s | (torch.arange(m, device=dev)[None, :] == p_s[:, None]),
                            lam_s.clamp_min(0), torch.zeros_like(lam_s))
        lam[stepping], active[stepping], p[stepping] = lam_s, act_s, p_s
        status[stepping[infeasible]] = INFEASIBLE
    else:
        if bool((status == RUNNING).any()):
            raise RuntimeError(
                f"min_norm_polyhedron: {int((status == RUNNING).sum())} of {N} problems did not "
                f"terminate in {max_iter} active-set changes (degenerate cycling?)"
            )

    # Polish: the optimal multipliers solve G_SS lam_S = beta_S on the final active set exactly.
    optimal = status == OPTIMAL
    if bool(optimal.any()):
        both = active[:, :, None] & active[:, None, :]
        M = torch.where(both, gram, torch.zeros_like(gram)) + torch.diag_embed((~active).to(torch.float64))
        polished = torch.linalg.solve(M, torch.where(active, beta, torch.zeros_like(beta)).unsqueeze(-1)).squeeze(-1)
        polished = torch.where(active, polished, torch.zeros_like(polished))
        ok = optimal & (polished >= -1e-12 * polished.abs().amax(dim=1, keepdim=True)).all(dim=1)
        lam = torch.where(ok[:, None], polished.clamp_min(0), lam)
    return lam, status == OPTIMAL
