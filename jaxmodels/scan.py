"""The recurrence of a cell that is linear in its state, as a parallel scan (``jax.lax.associative_scan``).

mingru's step is ``h_t = (1 - z_t) h_{t-1} + z_t h~_t`` with ``z_t`` and ``h~_t`` functions of the input alone,
and a poem start multiplies the state by ``keep_t`` (0 or 1) before the step: ``h_t = a_t h_{t-1} + b_t`` with
``a_t = (1 - z_t) keep_t`` and ``b_t = z_t h~_t``. Pairs ``(a, b)`` compose associatively
(``(a1, b1)`` then ``(a2, b2)`` is ``(a2 a1, a2 b1 + b2)``), so every h_t comes out of a scan of depth
log2(T) instead of T dependent steps (Feng et al. 2024, "Were RNNs all we needed?").

The products of ``a`` lie in [0, 1] and shrink towards zero: no overflow is possible and an underflow to 0 is
the true value rounded, so the plain form is as stable as the sequential one, and the log-space form (which that
paper uses for a positive ``h~``; here ``h~`` is a linear map of any sign) is not needed.

Which form runs is ``FORM``: ``auto`` (the default) the parallel scan on a GPU or TPU and the sequential
``lax.scan`` on the CPU, where one core gains nothing from the scan's parallelism and pays for its extra passes
over memory (docs/PERFORMANCE.md, "mingru as a parallel scan": 2.3x slower in the recurrence at T 256);
``parallel`` or ``sequential`` forced (``use_form``, ``bench.speed --linear-scan``; the tests hold each to the
other). The form is read when a function is traced, so a jitted function keeps the form it was traced with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import jax
import jax.numpy as jnp

State = tuple[jax.Array, ...]


def mingru_coefficients(projected: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(1 - z, z h~)`` of mingru's step (``jaxmodels.model.mingru_step``) from its input projections
    [..., 2H]."""
    a_z, h_tilde = jnp.split(projected, 2, axis=-1)
    z = jax.nn.sigmoid(a_z)
    return 1 - z, z * h_tilde


# the cells whose step is h' = a h + b, a and b functions of the step's input projection alone
LINEAR_CELLS: dict[str, Callable[[jax.Array], tuple[jax.Array, jax.Array]]] = {"mingru": mingru_coefficients}

FORMS = ("auto", "parallel", "sequential")
FORM = "auto"


def set_form(form: str) -> None:
    """Trace the linear cells' recurrence in ``form`` (one of ``FORMS``) from now on."""
    global FORM
    if form not in FORMS:
        raise ValueError(f"the scan's form is one of {', '.join(FORMS)}, got {form!r}")
    FORM = form


@contextmanager
def use_form(form: str) -> Iterator[None]:
    """Within this block, functions traced run the linear cells' recurrence in ``form``."""
    saved = FORM
    set_form(form)
    try:
        yield
    finally:
        set_form(saved)


def runs_parallel(cell: str) -> bool:
    """Whether ``cell``'s recurrence is traced as the parallel scan: a linear cell, in the form ``FORM`` says."""
    if cell not in LINEAR_CELLS:
        return False
    return FORM == "parallel" or (FORM == "auto" and jax.default_backend() != "cpu")


def compose(earlier: tuple[jax.Array, jax.Array], later: tuple[jax.Array, jax.Array]
            ) -> tuple[jax.Array, jax.Array]:
    """The map ``h -> a h + b`` of ``earlier`` followed by ``later``."""
    a_1, b_1 = earlier
    a_2, b_2 = later
    return a_2 * a_1, a_2 * b_1 + b_2


def parallel_recurrence(cell: str, projected: jax.Array, state: State, keep: jax.Array | None,
                        every_step: bool = True) -> tuple[jax.Array | None, State]:
    """What ``jaxmodels.model.carried_recurrence`` returns for a linear cell: every h_t [T, B, H] (None unless
    ``every_step``) and the final state, from time-major input projections [T, B, G*H], the state ``state`` and
    ``keep`` [T, B, 1] (0 where a poem starts) or None."""
    decay, drive = LINEAR_CELLS[cell](projected)
    if keep is not None:
        decay = decay * keep
    (h0,) = state
    # the incoming state folded into the first step (as the sequential form computes it), so the scan's result
    # is h_t itself
    drive = drive.at[0].set(decay[0] * h0 + drive[0])
    _, hs = jax.lax.associative_scan(compose, (decay, drive), axis=0)
    return (hs if every_step else None), (hs[-1],)
