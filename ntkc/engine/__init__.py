"""The engine: runs a Plan on images. `kernel.CompiledKernel` is what `ntkc.compile` returns
(input checks, backend choice, results); `tiling` cuts a Gram matrix into tiles of pairs for a
backend, with symmetry, exact self pairs and a variance-map cache; `augment` averages a kernel
over image transforms (`flip`)."""
