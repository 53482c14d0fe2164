"""Enhancement and separation metrics: SI-SDR / SI-SNR, permutation-invariant matching, PESQ, STOI.

* **SI-SDR** (scale-invariant signal-to-distortion ratio, Le Roux et al., "SDR - half-baked or
  well done?", ICASSP 2019): the reference scaled to best fit the estimate is the target,
  the rest is distortion, ``10 log10(|target|^2 / |distortion|^2)``. With both signals made
  zero-mean first this is the **SI-SNR** of Conv-TasNet (Luo and Mesgarani, 2019); SUPERB's
  separation task reports SI-SDR improvement (estimate vs the mixture as the estimate).
* **PIT** (permutation-invariant training / scoring, Yu et al. 2017; utterance-level, Kolbaek et
  al. 2017): estimates are matched to references by the permutation with the best total
  score, found by the Hungarian algorithm (scipy's ``linear_sum_assignment``).
* **PESQ** (ITU-T P.862.2 wide-band) and **STOI** (Taal et al. 2011) through the maintained
  ``pesq`` and ``pystoi`` packages, with the input checks they need (rate, length).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from audiossl.errors import DataError

#: PESQ is defined at 16 kHz (wide-band, P.862.2) and 8 kHz (narrow-band); we score wide-band.
PESQ_RATE = 16000
#: Shortest signal PESQ accepts (the pesq package refuses anything under a quarter second).
PESQ_MIN_SECONDS = 0.25
_EPS = 1e-8


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor, zero_mean: bool = True) -> torch.Tensor:
    """SI-SDR in dB of ``estimate`` against ``reference``, both (..., T) (broadcast); returns (...).

    ``zero_mean`` removes each signal's mean first (then it is SI-SNR). Differentiable.
    """
    if estimate.shape[-1] != reference.shape[-1]:
        raise ValueError(f"estimate {tuple(estimate.shape)} and reference {tuple(reference.shape)} differ in length")
    estimate, reference = torch.broadcast_tensors(estimate.double(), reference.double())
    if zero_mean:
        estimate = estimate - estimate.mean(dim=-1, keepdim=True)
        reference = reference - reference.mean(dim=-1, keepdim=True)
    scale = (estimate * reference).sum(-1, keepdim=True) / (reference.square().sum(-1, keepdim=True) + _EPS)
    target = scale * reference  # (..., T)
    distortion = estimate - target
    ratio = (target.square().sum(-1) + _EPS) / (distortion.square().sum(-1) + _EPS)
    return 10.0 * torch.log10(ratio)


def si_snr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """SI-SNR in dB (zero-mean SI-SDR), (..., T) -> (...)."""
    return si_sdr(estimate, reference, zero_mean=True)


def best_permutation(scores: np.ndarray | torch.Tensor, maximize: bool = True) -> list[int]:
    """``perm`` such that estimate ``perm[k]`` goes with reference ``k``, from ``scores`` (K_est, K_ref).

    ``scores[i, j]`` scores estimate ``i`` against reference ``j``; the permutation maximises
    (or minimises) the total. The Hungarian algorithm: exact, polynomial in K.
    """
    matrix = scores.detach().cpu().double().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"scores must be square (K, K), got {matrix.shape}")
    rows, cols = linear_sum_assignment(matrix, maximize=maximize)
    perm = [0] * matrix.shape[0]
    for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
        perm[col] = row
    return perm


def pit_loss(pairwise: torch.Tensor) -> tuple[torch.Tensor, list[list[int]]]:
    """Utterance-level PIT: ``pairwise`` (B, K_est, K_ref) losses -> per-item best mean loss (B,) and permutations.

    Item ``b``'s loss is the mean over references ``k`` of ``pairwise[b, perm[k], k]`` for the
    permutation with the least total; gradients flow through the chosen entries.
    """
    losses, perms = [], []
    for item in pairwise:  # (K, K)
        perm = best_permutation(item, maximize=False)
        perms.append(perm)
        losses.append(torch.stack([item[perm[k], k] for k in range(item.shape[1])]).mean())
    return torch.stack(losses), perms


def _as_numpy(signal: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(signal, torch.Tensor):
        signal = signal.detach().cpu().numpy()
    return np.asarray(signal, dtype=np.float64).reshape(-1)


def _resampled(signal: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return signal
    import torchaudio.functional

    return torchaudio.functional.resample(torch.from_numpy(signal), rate, target).numpy()


def pesq_wb(reference: torch.Tensor | np.ndarray, degraded: torch.Tensor | np.ndarray, sample_rate: int) -> float:
    """Wide-band PESQ (P.862.2, MOS-LQO, about 1.0 to 4.64) of ``degraded`` against ``reference`` (T,).

    Signals at another rate are resampled to 16 kHz first (torchaudio). A signal shorter than
    :data:`PESQ_MIN_SECONDS` is a :class:`DataError`; one the package finds no speech in scores NaN.
    """
    from pesq import NoUtterancesError, pesq

    ref = _resampled(_as_numpy(reference), sample_rate, PESQ_RATE)
    deg = _resampled(_as_numpy(degraded), sample_rate, PESQ_RATE)
    if min(ref.size, deg.size) < PESQ_MIN_SECONDS * PESQ_RATE:
        raise DataError(
            f"PESQ needs at least {PESQ_MIN_SECONDS} s of audio, got {min(ref.size, deg.size) / PESQ_RATE:.3f} s"
        )
    try:
        return float(pesq(PESQ_RATE, ref, deg, "wb"))
    except NoUtterancesError:
        return math.nan


def stoi(
    reference: torch.Tensor | np.ndarray, degraded: torch.Tensor | np.ndarray, sample_rate: int, extended: bool = False
) -> float:
    """STOI (0 to 1; ``extended``: ESTOI, Jensen and Taal 2016) of ``degraded`` against ``reference`` (T,).

    pystoi returns 1e-5 with a warning when fewer than 30 frames (384 ms) of the reference are
    left after its silent-frame removal; that is no score, so it is NaN here (left out of means).
    """
    import warnings

    from pystoi import stoi as _stoi

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(_stoi(_as_numpy(reference), _as_numpy(degraded), sample_rate, extended=extended))
    if any("Not enough STFT frames" in str(warning.message) for warning in caught):
        return math.nan
    return value
