"""Near-duplicate detection for curate-data: MinHash sketches, LSH banding, verification.

A row is a near duplicate of an earlier one when both its prompt and its answer are at
least ``threshold`` similar (Jaccard of their word-anchored 8-byte shingles after
lower-casing and collapsing whitespace). Both, because a prompt can be mostly shared context (two tasks on
the same large file) and an answer can be short and common (``src/app.py``): either alone
would drop real examples.

Own code, not datasketch, for a measured reason: datasketch's ``MinHash`` applies
``num_perm`` permutations to every shingle (O(shingles x perms), 239 us per 1.3 kB row
here, eight times a plain JSON read + write of the row), and ``MinHashLSH`` keeps several
Python objects per row and band (hundreds of MB at 200,000 rows). Here a batch of rows is
sketched at once with numpy by *one permutation hashing* with rotation densification
(P. Li, A. Owen, C.-H. Zhang, "One Permutation Hashing", NIPS 2012; A. Shrivastava and
P. Li, "Densifying One Permutation Hashing via Rotation", ICML 2014): one hash per
shingle, the minimum per bin, empty bins filled from the next non-empty one; each bin
collides with probability equal to the Jaccard similarity, as a MinHash value does. Bands
and rows per band are chosen as datasketch's ``MinHashLSH`` chooses them (minimising
false positive + false negative probability mass, Leskovec et al., *Mining of Massive
Datasets*, §3.4). A candidate (a row sharing a band with an earlier row) is verified by
the b-bit estimate of both similarities (P. Li and A. C. König, "b-Bit Minwise Hashing",
WWW 2010) from 8 bits per bin, so the state kept per row is a few hundred bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np

SHINGLE = 8  # bytes per shingle: one uint64 window of the normalised UTF-8 text, at a word start
BINS = 64  # per part (prompt, answer)
_EMPTY = np.uint32(0xFFFFFFFF)
_ROTATE = np.uint32(0x9E3779B1)  # the densification offset per bin of distance
_M1, _M2, _GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def normalise(text: str) -> bytes:
    """Lower-cased, whitespace collapsed, UTF-8: the text shingles are cut from."""
    return " ".join(text.lower().split()).encode("utf-8")


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 with good avalanche."""
    z = x + _GOLD
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def sketch(texts: Sequence[bytes], *, bins: int = BINS, seed: int = 0) -> np.ndarray:
    """One-permutation-hashing signatures, shape (len(texts), bins), uint32, of normalised texts.

    The shingles are the 8-byte windows that start at a word (the text's start or after a
    space): content-defined, so two texts share a shingle wherever they share the words,
    and about one per word instead of one per byte.
    """
    if bins & (bins - 1) or not 2 <= bins <= 1024:
        raise ValueError("bins must be a power of two between 2 and 1024")
    n = len(texts)
    pad = b"\0" * (SHINGLE - 1)  # a window never runs into the next text
    blob = b"\n" + (pad + b"\n").join(t or b"\x01" for t in texts) + pad + b"\0"
    raw = np.frombuffer(blob, dtype=np.uint8)
    after = raw[:-SHINGLE]
    pos = np.flatnonzero((after == 0x20) | (after == 0x0A)) + 1
    pos = pos[raw[pos] != 0]
    newline = np.flatnonzero(raw == 0x0A) + 1
    row = np.searchsorted(newline, pos, side="right") - 1
    windows = np.ndarray((len(blob) - SHINGLE + 1,), dtype="<u8", buffer=blob, strides=(1,))
    h = _mix(windows[pos] ^ np.uint64(seed))
    shift = np.uint64(64 - (bins.bit_length() - 1))
    key = row * bins + (h >> shift).astype(np.int64)
    sig = np.full(n * bins, _EMPTY, dtype=np.uint32)
    np.minimum.at(sig, key, (h & np.uint64(0xFFFFFFFF)).astype(np.uint32))
    filled = np.zeros(n * bins, dtype=bool)
    filled[key] = True
    sig = sig.reshape(n, bins)
    filled = filled.reshape(n, bins)
    if not filled.all():
        idx = np.arange(2 * bins)
        nxt = np.where(np.tile(filled, 2), idx, 2 * bins)
        nxt = np.minimum.accumulate(nxt[:, ::-1], axis=1)[:, ::-1][:, :bins]
        dist = (nxt - idx[:bins]).astype(np.uint32)
        donor = np.take_along_axis(sig, nxt % bins, axis=1)
        sig = np.where(filled, sig, donor + dist * _ROTATE)
    return sig


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of two full signatures."""
    return float(np.mean(a == b))


@cache
def lsh_params(threshold: float, bins: int = BINS) -> tuple[int, int]:
    """(bands, rows per band) for rows whose two parts must *both* reach ``threshold``:
    a band spans the same rows of both parts, so it collides with probability (Jp * Ja)^r,
    and the parameters are those of ordinary LSH at threshold^2 (weights 0.5 / 0.5)."""
    target = threshold * threshold
    s = np.linspace(0.0, 1.0, 2001)
    best: tuple[float, int, int] | None = None
    for bands in range(1, bins + 1):
        for rows in range(1, bins // bands + 1):
            p = 1 - (1 - s ** rows) ** bands
            fp = np.trapezoid(np.where(s < target, p, 0.0), s)
            fn = np.trapezoid(np.where(s >= target, 1 - p, 0.0), s)
            err = 0.5 * fp + 0.5 * fn
            if best is None or err < best[0] - 1e-12:
                best = (err, bands, rows)
    assert best is not None
    return best[1], best[2]


def band_keys(prompt: np.ndarray, answer: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """uint64 key per (row, band) over the same bins of both parts, shape (n, bands)."""
    n = prompt.shape[0]
    keys = np.empty((n, bands), dtype=np.uint64)
    for b in range(bands):
        h = np.full(n, np.uint64(b), dtype=np.uint64)
        for part in (prompt, answer):
            for col in range(b * rows, (b + 1) * rows):
                h = _mix(h ^ part[:, col].astype(np.uint64))
        keys[:, b] = h
    return keys


def low_bits(prompt: np.ndarray, answer: np.ndarray) -> np.ndarray:
    """The low 8 bits of every bin of both parts, shape (n, 2 * bins): what verification reads."""
    return np.concatenate([prompt, answer], axis=1).astype(np.uint8)


def _bbit(p_equal: np.ndarray) -> np.ndarray:
    """Jaccard from the share of equal 8-bit values (b-bit minwise hashing, b = 8)."""
    c = 1.0 / 256
    return (p_equal - c) / (1 - c)


def near_duplicates(keys: np.ndarray, bits: np.ndarray, threshold: float,
                    rows: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask over ``rows`` (indices into ``keys``/``bits``, in stream order; default
    all): which are near duplicates of an earlier one of them.

    A row is a candidate when one of its bands equals the same band of an earlier row; the
    earliest such row is the one it is checked against, and it is a duplicate when both
    parts' estimated similarity reach ``threshold``. The earliest row of a group is kept.
    Only one band's keys and the candidates' bits are copied at a time.
    """
    rows = np.arange(keys.shape[0]) if rows is None else rows
    n = len(rows)
    dup = np.zeros(n, dtype=bool)
    if n < 2:
        return dup
    half = bits.shape[1] // 2
    for b in range(keys.shape[1]):
        band = keys[rows, b]
        order = np.argsort(band, kind="stable")
        sorted_keys = band[order]
        del band
        new_group = np.empty(n, dtype=bool)
        new_group[0] = True
        new_group[1:] = sorted_keys[1:] != sorted_keys[:-1]
        group_first = order[np.maximum.accumulate(np.where(new_group, np.arange(n), 0))]
        cand = ~new_group
        mine, firsts = order[cand], group_first[cand]
        if not mine.size:
            continue
        same = bits[rows[mine]] == bits[rows[firsts]]
        jp = _bbit(same[:, :half].mean(axis=1))
        ja = _bbit(same[:, half:].mean(axis=1))
        dup[mine[(jp >= threshold) & (ja >= threshold)]] = True
    return dup
