"""Preparation of public speech corpora into Kaldi data dirs, one module per corpus.

Each module reads the corpus in the layout its distributor ships (no renaming or conversion by
hand) and writes data dirs with absolute wav.scp paths, speaker-prefixed utterance ids sorted
in byte order, utt2spk, text where the corpus has transcripts, and utt2dur from the audio
headers. ``download.py`` fetches the corpora that are public.
"""
