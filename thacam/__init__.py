"""thacam: one drawing of an anime character becomes a live VTuber avatar (THA3 + MediaPipe)."""

__version__ = "0.1.0"
