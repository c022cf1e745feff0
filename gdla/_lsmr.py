"""LSMR (Fong and Saunders, 2011): least squares with a monotone normal residual.

LSMR runs on the Golub–Kahan bidiagonalisation of LSQR (:class:`gdla._lsqr.GolubKahan`,
two products per step) but chooses x_k in the same Krylov subspace to minimise
``‖Aᴴ(b − A x_k)‖`` instead of ``‖b − A x_k‖``: it is MINRES on the normal equations,
as LSQR is CG on them.  So ``‖Aᴴ r_k‖`` decreases monotonically (and, Fong and Saunders
prove, so does ``‖r_k‖``), and a rule that stops on ``‖Aᴴr‖`` stops safely early:
the iterate is never worse, by that measure, than an earlier one.

Like LSQR it runs every column of every matrix of a batch in parallel with its own
real scalars (tensors of shape (*, 1, k)), and from ``x0 = 0`` converges to the
minimum-norm least-squares solution.  Without damping (λ = 0), the rotation
``Q̂`` of the paper is the identity and is left out.

The ``"lsmr"`` method of :func:`gdla.solve` runs it through
:func:`gdla._lsqr.golub_kahan_method`, whose stopping rule is Fong and Saunders' with
``atol = btol = rtol``: stop when ``‖r‖ ≤ rtol (‖A‖‖x‖ + ‖b‖)`` or
``‖Aᴴr‖ ≤ rtol ‖A‖‖r‖`` (:func:`gdla._lsqr.backward_error`), with the exact ``‖A‖_F``
for ``‖A‖``, confirmed on ``b − Ax`` itself.
"""

from __future__ import annotations

import torch

from ._lsqr import GolubKahan, _divide

__all__ = ["LSMR"]


def _rotation(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``c, s, r`` with ``[c s; −s c] [a; b] = [r; 0]``, ``r = hypot(a, b) ≥ 0``
    (``c = s = 0`` where ``a = b = 0``)."""
    r = torch.hypot(a, b)
    return _divide(a, r), _divide(b, r), r


class LSMR:
    """The state of LSMR on ``min ‖A x − B‖`` from ``x = 0``, one column per right-hand side.

    After each :meth:`step` the attributes hold LSMR's estimates from its recurrences
    (Fong and Saunders, 2011, sections 2 and 3): ``ar_norm`` = ``|ζ̄|`` of
    ``‖Aᴴ(b − Ax)‖`` (exact in exact arithmetic, and monotonically decreasing),
    ``r_norm`` of ``‖b − Ax‖``, and ``A_norm`` of ``‖A‖_F`` (the Frobenius norm of the
    bidiagonal matrix so far, a lower bound), all of shape (*, 1, k).  It has the
    attributes and constructor of :class:`gdla._lsqr.LSQR` (a :class:`GolubKahan`
    started from ``B``), so the two are interchangeable.
    """

    name = "LSMR"

    def __init__(self, bidiagonal: GolubKahan) -> None:
        self.bidiagonal = bidiagonal
        beta, alpha = self.bidiagonal.beta, self.bidiagonal.alpha
        one, zero = torch.ones_like(beta), torch.zeros_like(beta)
        self.x = torch.zeros_like(self.bidiagonal.v)
        self.h, self.hbar = self.bidiagonal.v.clone(), torch.zeros_like(self.x)
        self.zetabar, self.alphabar = alpha * beta, alpha
        self.rho, self.rhobar, self.cbar, self.sbar, self.zeta = one, one, one, zero, zero
        # The recurrences that estimate ‖r‖ (section 3.1 of the paper).
        self.betadd, self.betad, self.rhodold = beta, zero, one
        self.tautildeold, self.thetatilde = zero, zero
        self.b_norm = beta
        self.r_norm, self.ar_norm = beta, alpha * beta
        self.A_norm_squared = alpha.square()

    @property
    def A_norm(self) -> torch.Tensor:
        return self.A_norm_squared.sqrt()

    def step(self) -> None:
        """One Golub–Kahan step, two rotations, and the update of ``x`` (section 2.6)."""
        self.bidiagonal.step()
        alpha, beta, v = self.bidiagonal.alpha, self.bidiagonal.beta, self.bidiagonal.v
        # Q_k turns the lower bidiagonal B_k into the upper bidiagonal R_k.
        rho_old = self.rho
        c, s, self.rho = _rotation(self.alphabar, beta)
        theta = s * alpha
        self.alphabar = c * alpha
        # Qbar_k turns R_kᴴ into the upper bidiagonal Rbar_k.
        rhobar_old, zeta_old = self.rhobar, self.zeta
        thetabar = self.sbar * self.rho
        self.cbar, self.sbar, self.rhobar = _rotation(self.cbar * self.rho, theta)
        self.zeta = self.cbar * self.zetabar
        self.zetabar = -self.sbar * self.zetabar
        # x moves along hbar, itself updated from h (the columns of V_k R_k^{-1}).
        self.hbar = self.h - _divide(thetabar * self.rho, rho_old * rhobar_old) * self.hbar
        self.x = self.x + _divide(self.zeta, self.rho * self.rhobar) * self.hbar
        self.h = v - _divide(theta, self.rho) * self.h
        # ‖r‖ from the rotations applied to beta₁ e₁ (section 3.1).
        betahat = c * self.betadd
        self.betadd = -s * self.betadd
        thetatilde_old = self.thetatilde
        ctilde, stilde, rhotilde = _rotation(self.rhodold, thetabar)
        self.thetatilde = stilde * self.rhobar
        self.rhodold = ctilde * self.rhobar
        self.betad = -stilde * self.betad + ctilde * betahat
        self.tautildeold = _divide(zeta_old - thetatilde_old * self.tautildeold, rhotilde)
        taud = _divide(self.zeta - self.thetatilde * self.tautildeold, self.rhodold)
        self.r_norm = torch.hypot(self.betad - taud, self.betadd)
        self.ar_norm = self.zetabar.abs()
        self.A_norm_squared = self.A_norm_squared + beta.square() + alpha.square()
