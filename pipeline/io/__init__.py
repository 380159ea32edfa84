"""Readers and writers for the media the pipeline consumes: untrusted dataset pkls and videos/frames."""

from pipeline.io.safe_pickle import PickleLoadError, UnsafePickleError, frame_length, load_array, load_pickle

__all__ = ["PickleLoadError", "UnsafePickleError", "frame_length", "load_array", "load_pickle"]
