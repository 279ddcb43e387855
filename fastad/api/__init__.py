"""api: the array API standard's functions, one module per section of the specification.

`fastad.tensor` holds the `Tensor` class and the helpers every section uses (`_apply`,
promotion, broadcasting); the modules here build on it and `fastad/__init__.py`
exports them. Sections: elementwise (and where/clip/astype), reductions (sum, prod,
max, min, mean), manipulation, indexing, linear_algebra, utility (all, any, diff),
data_types (result_type, can_cast, finfo, iinfo), info (`__array_namespace_info__`),
fft (the fft extension); linalg, sorting, searching, sets and statistics hold the
rest of the standard. methods attaches Tensor's PyTorch-style methods.
"""
