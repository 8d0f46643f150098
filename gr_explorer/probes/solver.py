"""The batched solver behind the linear probe: many L2-regularised softmax regressions in lockstep.

Every (cut, task, C) is one *problem*:

    min_{W, b}  mean_n CE(softmax(x_n W + b), y_n) + 1 / (2 C n) * ||W||^2

(scikit-learn's ``LogisticRegression(C=C)`` objective divided by n, bias
unpenalised). ``lbfgs_softmax`` is an L-BFGS in which every problem has its
own history, curvature pairs, initial scaling, Armijo step (vectorised
backtracking) and convergence flag (gradient inf-norm < tol, as sklearn, or a
relative loss change at float precision); all problems advance together with
two batched matmuls per function evaluation. Finished problems are frozen and
problem columns no cut of a block still needs are dropped from the matmuls.

Preconditioning: the two-loop's initial inverse Hessian is, per problem,
``V diag(1 / (c ev + lam)) V^T`` from the eigen-decomposition of the cut's
feature second moments (c = current mean softmax curvature). Real features
have power-law spectra, which makes plain L-BFGS (and sklearn's lbfgs) crawl;
this cuts the iterations several-fold for one small eigh per cut.

A block may also be a `rows.PackedRows`, which exists only chunk by chunk: every
function evaluation then sums the loss, gradient and curvature over row chunks,
so the [N, problems, classes] activations never exist whole (a million images).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from . import matmul
from .rows import Block, PackedRows, row_chunks, strided_rows


@dataclass
class SolveResult:
    theta: torch.Tensor  # [G, 1 + D_max, Q, K]; row 0 is the bias, rows past a cut's D stay 0
    loss: torch.Tensor  # [G, Q] final objective
    grad_inf: torch.Tensor  # [G, Q] final gradient inf-norm
    converged: torch.Tensor  # [G, Q] bool: gradient or loss-change criterion met
    n_iter: torch.Tensor  # [G, Q] iterations used per problem
    n_evals: int  # batched function evaluations (each = 2 matmuls per block)


Blocks = Sequence[Block]


def _as_blocks(X: Block | Blocks) -> list[Block]:
    return [X] if isinstance(X, (torch.Tensor, PackedRows)) else list(X)


def feature_eigen(X: Block | Blocks, max_rows: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per block: eigen-decomposition (eigvals [G_b, r], eigvecs [G_b, D_b, r]) of the feature
    second-moment matrix X^T X / n (bias column excluded), from an evenly strided subsample of
    at most `max_rows` rows (default max(1024, 4 D)). Used to precondition the solver.

    With fewer rows n than dims D (wide cuts, raw pixels) the matrix has rank <= n: its nonzero
    eigenpairs come from the n x n Gram matrix instead (r = n eigenvectors V = F^T U / sqrt(n ev),
    a zero column where ev vanishes), which costs n^3 instead of D^3."""
    out = []
    for X_b in _as_blocks(X):
        G_b, N, D1 = X_b.shape
        d = D1 - 1
        rows = max(1024, 4 * d) if max_rows is None else max_rows
        step = max(1, N // rows)
        F_ = strided_rows(X_b, step)[:, :, 1:]
        n = F_.shape[1]
        try:
            if n < d:
                ev, U = matmul.eigh(matmul.bmm(F_, F_.transpose(1, 2)) / n)
                ok = ev > ev.amax(1, keepdim=True).clamp_min(1e-30) * 1e-8
                V = matmul.bmm(F_.transpose(1, 2), U) / torch.where(ok, (n * ev).clamp_min(1e-30).sqrt(),
                                                                   torch.ones_like(ev))[:, None, :]
                V = V * ok[:, None, :]
            else:
                ev, V = matmul.eigh(matmul.bmm(F_.transpose(1, 2), F_) / n)
        except RuntimeError:  # ill-posed eigh (very rare): fall back to no preconditioning for this block
            ev = torch.ones((G_b, d), dtype=X_b.dtype, device=X_b.device)
            V = torch.eye(d, dtype=X_b.dtype, device=X_b.device).expand(G_b, d, d).contiguous()
        out.append((ev.clamp_min(0), V))
    return out


class _Objective:
    """Batched softmax cross-entropy + per-problem L2 (bias row 0 unpenalised), with gradient.

    Blocks are consecutive groups of cuts, block b covering cuts g0..g1 with X_b [G_b, N, 1 + D_b];
    the parameters of all cuts live in one padded tensor [G, 1 + D_max, Q, K] whose rows past
    1 + D_b are never touched by the data terms (so they stay 0).
    """

    def __init__(self, blocks: list[torch.Tensor], labels: torch.Tensor, class_mask: torch.Tensor, lam: torch.Tensor):
        self.blocks = []
        g0 = 0
        for X_b in blocks:
            self.blocks.append((g0, g0 + X_b.shape[0], X_b))
            g0 += X_b.shape[0]
        X0 = blocks[0]
        self.G, self.N = g0, X0.shape[1]
        self.D1 = max(X_b.shape[2] for X_b in blocks)
        self.Q, self.K = class_mask.shape
        self.device, self.dtype = X0.device, X0.dtype
        self.lab = labels.to(self.device).view(1, self.N, self.Q, 1)
        self.neg_mask = ~class_mask.to(self.device)  # [Q, K]
        self.any_masked = bool(self.neg_mask.any())
        self.n_cls = class_mask.sum(1).to(device=self.device, dtype=self.dtype)  # [Q]
        self.lam = lam.to(device=self.device, dtype=self.dtype)  # [G, Q]
        self.n_evals = 0

    def __call__(self, theta: torch.Tensor, need: torch.Tensor | None = None):
        """(loss [G, Q], grad like theta, curvature scale [G, Q]); blocks with no `need`ed problem are skipped."""
        self.n_evals += 1
        N, Q, K = self.N, self.Q, self.K
        loss = torch.zeros((self.G, Q), dtype=self.dtype, device=self.device)
        curv = torch.zeros_like(loss)
        grad = torch.zeros_like(theta)
        for g0, g1, X_b in self.blocks:
            # Only the problem columns still needed by some cut of the block are evaluated.
            cols = None
            if need is not None:
                colmask = need[g0:g1].any(0)
                if not bool(colmask.any()):
                    continue
                if not bool(colmask.all()):
                    cols = colmask.nonzero().squeeze(1)
            G_b, _, d1 = X_b.shape
            th = theta[g0:g1, :d1]
            lab, neg_mask, n_cls = self.lab, self.neg_mask, self.n_cls
            if cols is not None:
                th = th.index_select(2, cols)
                lab, neg_mask, n_cls = lab[:, :, cols], neg_mask[cols], n_cls[cols]
            Qc = th.shape[2]
            th = th.reshape(G_b, d1, Qc * K)
            l_b = c_b = g_b = None
            for r0, r1, X in row_chunks(X_b):  # one chunk: the whole block
                n = r1 - r0
                Z = matmul.bmm(X, th).view(G_b, n, Qc, K)
                if self.any_masked:
                    Z.masked_fill_(neg_mask, float("-inf"))
                # In-place softmax (much faster than log_softmax over a short last dim):
                # loss_n = log sum_k exp(z_k - m) - (z_y - m), P = softmax(z).
                Z.sub_(Z.amax(-1, keepdim=True))
                lab_c = lab[:, r0:r1].expand(G_b, n, Qc, 1)
                z_y = Z.gather(-1, lab_c)
                P = Z.exp_()
                s = P.sum(-1, keepdim=True)
                loss_c = (s.log() - z_y).sum(1).view(G_b, Qc)
                P.div_(s)
                curv_c = (1 - P.square().sum(-1)).sum(1)
                P.scatter_add_(-1, lab_c, torch.full(lab_c.shape, -1.0, dtype=P.dtype, device=P.device))  # softmax - onehot
                grad_c = matmul.bmm(X.transpose(1, 2), P.view(G_b, n, Qc * K)).view(G_b, d1, Qc, K)
                l_b, c_b, g_b = (loss_c, curv_c, grad_c) if l_b is None else (l_b + loss_c, c_b + curv_c, g_b.add_(grad_c))
            l_b, c_b, g_b = l_b / N, c_b / (N * n_cls), g_b.div_(N)
            if cols is None:
                loss[g0:g1], curv[g0:g1], grad[g0:g1, :d1] = l_b, c_b, g_b
            else:
                loss[g0:g1, cols], curv[g0:g1, cols], grad[g0:g1, :d1, cols] = l_b, c_b, g_b
        W = theta[:, 1:]
        loss += 0.5 * self.lam * W.square().sum((1, 3))
        grad[:, 1:].add_(self.lam[:, None, :, None] * W)
        return loss, grad, curv


class _Precond:
    """Initial inverse Hessian H0 of the L-BFGS two-loop: per problem, on a cut's features,
    V diag(1 / (c * ev + lam)) V^T with (ev, V) the eigen-decomposition of the feature second
    moments and c the current mean softmax curvature (so H0 ~ the inverse Hessian of the
    objective when the curvature is spread evenly); 1 / c on the unpenalised bias row.

    Rows of feature columns that are all zero in X (padding, constant features) are zeroed:
    their optimal weight is exactly 0, and rounding in eigh must not make it drift."""

    def __init__(self, blocks, eigen, lam: torch.Tensor, Q: int, K: int):
        self.parts = []
        g0 = 0
        for X_b, (ev, V) in zip(blocks, eigen):
            live = None
            for _, _, X in row_chunks(X_b):
                seen = torch.stack([(X[g, :, 1:] != 0).any(0) for g in range(X.shape[0])])  # [G_b, D_b]
                live = seen if live is None else live | seen
            live = None if bool(live.all()) else live[:, :, None, None].to(X_b.dtype)
            self.parts.append((g0, g0 + X_b.shape[0], ev, V, live))
            g0 += X_b.shape[0]
        self.lam, self.Q, self.K = lam, Q, K

    def __call__(self, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        Q, K = self.Q, self.K
        r = torch.zeros_like(q)
        r[:, 0] = q[:, 0] / c[:, :, None]
        for g0, g1, ev, V, live in self.parts:
            G_b, d, k = V.shape
            lam = self.lam[g0:g1, None, :, None]
            qb = q[g0:g1, 1 : 1 + d].reshape(G_b, d, Q * K)
            u = matmul.bmm(V.transpose(1, 2), qb).view(G_b, k, Q, K)
            scaled = u / (c[g0:g1, None, :, None] * ev[:, :, None, None] + lam)
            rb = matmul.bmm(V, scaled.view(G_b, k, Q * K)).view(G_b, d, Q, K)
            if k < d:  # thin basis (wide cut): the rest of the space is only regularised, H0 = 1 / lam there
                rb += (qb.view(G_b, d, Q, K) - matmul.bmm(V, u.view(G_b, k, Q * K)).view(G_b, d, Q, K)) / lam
            r[g0:g1, 1 : 1 + d] = rb if live is None else rb * live
        return r


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-problem inner product of [G, D1, Q, K] tensors -> [G, Q]."""
    return (a * b).sum((1, 3))


def _bc(m: torch.Tensor) -> torch.Tensor:
    """[G, Q] -> [G, 1, Q, 1] for broadcasting against parameters."""
    return m[:, None, :, None]


def lbfgs_softmax(
    X: Block | Blocks,
    labels: torch.Tensor,
    class_mask: torch.Tensor,
    lam: torch.Tensor,
    *,
    init: torch.Tensor | None = None,
    precondition: bool | list = False,
    max_iter: int = 1000,
    tol: float = 1e-4,
    ftol: float | None = None,
    history: int = 10,
    max_ls: int = 30,
    callback: Callable[[int], None] | None = None,
) -> SolveResult:
    """Solve G x Q L2-regularised multinomial logistic regressions together.

    X: [G, N, 1 + D] features whose column 0 is all ones (the unpenalised bias), or a list of
       such blocks covering consecutive cuts (their D may differ; parameters are padded).
    labels: [N, Q] class id of each sample for each problem column.
    class_mask: [Q, K] bool, which classes exist for each column (others get -inf logits).
    lam: [G, Q] L2 strength 1/(C n) of each problem.
    init: optional warm start [G, 1 + D_max, Q, K].
    precondition: False (plain L-BFGS, H0 = gamma I), True (H0 from the feature eigen-
       decomposition, computed here) or the output of `feature_eigen(X)` to reuse one.
    callback: called after every iteration with the iterations done so far; it may raise (a cancel) to stop.

    A problem stops when its gradient inf-norm is below `tol` (scikit-learn's criterion),
    its relative loss decrease in one step is below `ftol` (default 10 x machine epsilon
    of the dtype), its line search cannot decrease the loss any more (precision limit),
    or after `max_iter` iterations. All problems advance in lockstep; finished ones are
    frozen and blocks whose problems have all finished are no longer evaluated.
    """
    blocks = _as_blocks(X)
    Q, K = class_mask.shape
    fg = _Objective(blocks, labels, class_mask, lam)
    G, D1 = fg.G, fg.D1
    dev, dt = fg.device, fg.dtype
    eps = torch.finfo(dt).eps
    if ftol is None:
        ftol = 10 * eps
    H0 = None
    if precondition is not False and precondition is not None:
        eigen = feature_eigen(blocks) if precondition is True else precondition
        H0 = _Precond(blocks, eigen, fg.lam, Q, K)
    x = torch.zeros((G, D1, Q, K), dtype=dt, device=dev) if init is None else init.to(device=dev, dtype=dt).clone()
    f, g, curv = fg(x)
    ginf = g.abs().amax((1, 3))
    done = ginf <= tol
    converged = done.clone()
    n_iter = torch.zeros((G, Q), dtype=torch.long, device=dev)
    memory = _Memory(history, G, D1, Q, K, dt, dev, H0)
    for _it in range(max_iter):
        active = ~done
        if not bool(active.any()):
            break
        d, gd = memory.direction(g, curv.clamp_min(1e-6), active)
        x_new, f_new, g_new, c_new, stalled = _line_search(fg, x, f, g, curv, d, gd, active, max_ls, eps)
        moved = active & ~stalled  # a failed line search: we are at the precision limit
        n_iter += moved.long()
        memory.push(x_new - x, g_new - g, moved, c_new)
        # --- convergence ---
        ginf_new = g_new.abs().amax((1, 3))
        small_g = moved & (ginf_new <= tol)
        small_f = moved & ((f - f_new) <= ftol * torch.maximum(torch.maximum(f.abs(), f_new.abs()), torch.ones_like(f)))
        converged |= small_g | small_f
        done = done | small_g | small_f | stalled
        x, f, g, curv = x_new, f_new, g_new, c_new
        ginf = torch.where(moved, ginf_new, ginf)
        if callback is not None:
            callback(_it + 1)
    return SolveResult(theta=x, loss=f, grad_inf=ginf, converged=converged, n_iter=n_iter, n_evals=fg.n_evals)


class _Memory:
    """L-BFGS memory of every problem: the last `history` curvature pairs (ring buffer, all problems in lockstep),
    the two-loop recursion that turns a gradient into a direction, and the H0 scaling."""

    def __init__(self, history: int, G: int, D1: int, Q: int, K: int, dt: torch.dtype, dev: torch.device, H0):
        self.history, self.H0, self.eps = history, H0, torch.finfo(dt).eps
        self.S = torch.zeros((history, G, D1, Q, K), dtype=dt, device=dev)
        self.Y = torch.zeros_like(self.S)
        self.rho = torch.zeros((history, G, Q), dtype=dt, device=dev)
        self.order: list[int] = []  # ring-buffer slots, oldest first
        self.gamma = torch.ones((G, Q), dtype=dt, device=dev)
        self.has_hist = torch.zeros((G, Q), dtype=torch.bool, device=dev)

    def direction(self, g: torch.Tensor, c: torch.Tensor, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(descent direction, its slope g.d) by the two-loop recursion (slots with rho = 0 contribute nothing)."""
        q = g.clone()
        alphas = {}
        for j in reversed(self.order):
            a = self.rho[j] * _dot(self.S[j], q)
            alphas[j] = a
            q.sub_(_bc(a) * self.Y[j])
        gnorm = g.square().sum((1, 3)).sqrt()
        if self.H0 is None:
            r = q.mul_(_bc(torch.where(self.has_hist, self.gamma, 1.0 / gnorm.clamp_min(1.0))))
        else:
            r = self.H0(q, c).mul_(_bc(torch.where(self.has_hist, self.gamma, torch.ones_like(self.gamma))))
        for j in self.order:
            b = self.rho[j] * _dot(self.Y[j], r)
            r.add_(_bc(alphas[j] - b) * self.S[j])
        d = r.neg_()
        gd = _dot(g, d)
        # Not a descent direction (should not happen with rho > 0 pairs): reset to steepest descent.
        bad = active & ~(gd < 0)
        if bool(bad.any()):
            sd = -g * _bc(1.0 / gnorm.clamp_min(1.0))
            d = torch.where(_bc(bad), sd, d)
            self.rho[:, bad] = 0
            self.has_hist = self.has_hist & ~bad
            gd = _dot(g, d)
        return d, gd

    def push(self, s: torch.Tensor, yv: torch.Tensor, moved: torch.Tensor, c_new: torch.Tensor) -> None:
        """Store the step's curvature pair where it is valid (sy > eps y.H0.y), and the H0 scale gamma = sy / yHy."""
        sy = _dot(s, yv)
        yHy = _dot(yv, yv) if self.H0 is None else _dot(yv, self.H0(yv, c_new.clamp_min(1e-6)))
        valid = moved & (sy > self.eps * yHy) & (yHy > 0)
        slot = len(self.order) if len(self.order) < self.history else self.order.pop(0)
        self.order.append(slot)
        self.S[slot] = s
        self.Y[slot] = yv
        self.rho[slot] = torch.where(valid, 1.0 / torch.where(valid, sy, torch.ones_like(sy)), torch.zeros_like(sy))
        self.gamma = torch.where(valid, sy / torch.where(valid, yHy, torch.ones_like(yHy)), self.gamma)
        self.has_hist = self.has_hist | valid


def _line_search(fg, x, f, g, curv, d, gd, active, max_ls: int, eps: float):
    """Vectorised backtracking Armijo line search of every active problem along d.

    Returns (x, f, g, curvature) after the step, and which problems found no acceptable step (stalled)."""
    c1 = 1e-4
    t = torch.where(active, torch.ones_like(f), torch.zeros_like(f))
    pending = active.clone()
    x_new, f_new, g_new, c_new = x.clone(), f.clone(), g.clone(), curv.clone()
    slack = 4 * eps * f.abs()  # accept a non-increase within rounding
    for _ls in range(max_ls):
        x_try = torch.where(_bc(pending), x + _bc(t) * d, x_new)
        f_try, g_try, c_try = fg(x_try, pending)
        ok = pending & torch.isfinite(f_try) & (f_try <= f + c1 * t * gd + slack)
        okb = _bc(ok)
        x_new = torch.where(okb, x_try, x_new)
        g_new = torch.where(okb, g_try, g_new)
        f_new = torch.where(ok, f_try, f_new)
        c_new = torch.where(ok, c_try, c_new)
        pending = pending & ~ok
        if not bool(pending.any()):
            break
        # Quadratic interpolation of the step, safeguarded to [0.1 t, 0.5 t].
        denom = 2 * (f_try - f - gd * t)
        t_q = torch.where(torch.isfinite(denom) & (denom > 0), -gd * t * t / denom, 0.5 * t)
        t = torch.where(pending, torch.minimum(torch.maximum(t_q, 0.1 * t), 0.5 * t), t)
    return x_new, f_new, g_new, c_new, pending


def predict(X: Block | Blocks, theta: torch.Tensor, class_mask: torch.Tensor) -> torch.Tensor:
    """Argmax class [G, N, Q] of the (masked) logits; X packed like the solver's input."""
    Q, K = class_mask.shape
    neg = ~class_mask.to(theta.device)
    preds, g0 = [], 0
    for X_b in _as_blocks(X):
        G_b, N, d1 = X_b.shape
        th = theta[g0 : g0 + G_b, :d1].reshape(G_b, d1, Q * K)
        parts = []
        for r0, r1, X_c in row_chunks(X_b):
            Z = matmul.bmm(X_c, th).view(G_b, r1 - r0, Q, K)
            Z.masked_fill_(neg, float("-inf"))
            parts.append(Z.argmax(-1))
        preds.append(parts[0] if len(parts) == 1 else torch.cat(parts, 1))
        g0 += G_b
    return torch.cat(preds, 0)



__all__ = ["SolveResult", "feature_eigen", "lbfgs_softmax", "predict"]
