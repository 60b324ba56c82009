"""zstd: the standard library's from Python 3.14, before that the backport rosbags depends on."""

try:
    from compression import zstd
except ImportError:
    from backports import zstd

__all__ = ["zstd"]
