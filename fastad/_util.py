"""_util: small helpers shared across layers."""
import numpy as np


def contiguous(a):
    """`a` as a C-contiguous array, keeping 0-d arrays 0-d (np.ascontiguousarray makes them 1-d)."""
    return a if a.flags.c_contiguous else np.array(a, order="C")
