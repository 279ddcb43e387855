"""kernels: the CUDA C templates (elementwise.cu, reduce.cu) shipped as package data.

`fastad.codegen.cuda` reads them with importlib.resources, so they are found
wherever the package is installed (site-packages, --user, --prefix, --target,
a zip). Each .cu also compiles on its own: `nvcc --ptx -arch=sm_90 reduce.cu`.
"""
