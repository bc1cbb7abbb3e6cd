"""kernels_ext: paged-KV attention, KV append/gather and 4-bit KV pack/unpack.

FlashInfer on CUDA (imported lazily), a torch reference on CPU that is also the test oracle.
"""

__all__: list[str] = []
