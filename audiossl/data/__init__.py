"""Kaldi-style data directories, datasets, samplers and the embedded synthetic corpus."""
