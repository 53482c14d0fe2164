"""audiossl voice-conversion plugin: kNN-VC-style matching of SSL features and trainable vocoders.

Public API: :class:`~audiossl_vc.convert.Converter` and :func:`~audiossl_vc.convert.convert_file`,
:func:`~audiossl_vc.matching.knn_match`, :func:`~audiossl_vc.pool.target_source` /
:func:`~audiossl_vc.pool.build_pool`, :func:`~audiossl_vc.train.train_vocoder` /
:func:`~audiossl_vc.vocoder.load_vocoder`, :func:`~audiossl_vc.evaluate.evaluate_conversions`.
Submodules are imported on use, so importing the package (as plugin discovery does) is cheap.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
