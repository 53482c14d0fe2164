"""Label stores: frame (or utterance) labels of a whole corpus in flat binary files, read lazily.

At LibriLight scale (60k hours, 10.8 billion frames at 50 Hz) a dict of label tensors per
process no longer fits in RAM; fairseq keeps HuBERT's ``.km`` text in memory and recent
toolkits (e.g. the memory-mapped token datasets of Megatron/fairseq's ``mmap`` indexed
datasets) keep one flat binary array plus an index instead. A label store does the same for
audiossl. A store dir holds:

* ``labels.npy``: every label of every utterance in one flat array, utterances in id order,
  ``uint8`` when ``n_clusters <= 256``, else ``uint16`` (up to 65,536 clusters; more is refused).
  A per-utterance store (pseudo-speakers) holds one value per utterance and may use ``uint32``;
* ``offsets.npy``: (N + 1,) int64, utterance ``i`` owns ``labels[offsets[i]:offsets[i + 1]]``
  (absent in per-utterance stores);
* ``ids``: the utterance ids, sorted by their UTF-8 bytes, one per line (readable with ``less``);
* ``id_offsets.npy``: (N + 1,) int64 byte offsets of each id's line in ``ids``;
* ``info.json``: ``"format": "labelstore"``, the version, dtype, ``n_clusters``, counts and the
  caller's info (k-means dir, features); written last, so a dir with it is complete;
* ``frame_rate``: the label rate in Hz (as in the older text label dirs).

Opening a store reads the headers and every 256th id (4,000 for a million utterances) and
nothing else: an utterance is found by bisecting those, then one block of 256 ids, and its
labels are one positional read of the flat array, so resident memory does not grow with the
corpus nor with the utterances read (:class:`LabelStore` says why reads are not map slices).
Every ``.npy`` file is standard NumPy (``numpy.load(path, mmap_mode="r")`` maps it).

:class:`LabelStoreWriter` appends utterances in any order in bounded memory and sorts them
when it closes; :func:`merge_label_stores` merges stores written per shard into one whose
files are byte-identical to a single writer fed every utterance.
"""

from __future__ import annotations

from audiossl.data.labelstore_read import (
    FORMAT,
    MAX_CLUSTERS,
    STORE_FILES,
    VERSION,
    LabelStore,
    is_label_store,
    label_dtype,
    open_labels,
)
from audiossl.data.labelstore_write import LabelStoreWriter, merge_label_stores, write_label_store

__all__ = [
    "FORMAT",
    "MAX_CLUSTERS",
    "STORE_FILES",
    "VERSION",
    "LabelStore",
    "LabelStoreWriter",
    "is_label_store",
    "label_dtype",
    "merge_label_stores",
    "open_labels",
    "write_label_store",
]
