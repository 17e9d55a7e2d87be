"""cffi build script of ``receiver._chunks``: the writer's loop of HDF5 direct chunk writes in C.

Why C: h5py gives the GIL back and takes it again around every chunk it
writes, and with the receiving workers busy, taking it back costs up to a
GIL switch interval per frame (daq-bench: about 4 ms per 20 kB frame against
a busy thread). One C call writes a whole batch with the GIL released once.
HDF5 itself is not linked: the caller passes the address of
``H5Dwrite_chunk`` from the library h5py has loaded, so both use one HDF5.
"""

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef(
    """
    int write_chunks(void *write_chunk, int64_t dataset, uint32_t filter_mask, int rank, int count,
                     const unsigned long long *offsets, const size_t *sizes, const void **buffers);
    """
)
ffibuilder.set_source(
    "receiver._chunks",
    r"""
    #include <stdint.h>
    #include <stddef.h>

    typedef int (*write_chunk_fn)(int64_t, int64_t, uint32_t, const unsigned long long *,
                                  size_t, const void *);

    /* Returns the number of chunks written: count, or the index of the one that failed. */
    int write_chunks(void *write_chunk, int64_t dataset, uint32_t filter_mask, int rank, int count,
                     const unsigned long long *offsets, const size_t *sizes, const void **buffers)
    {
        write_chunk_fn write = (write_chunk_fn)write_chunk;
        for (int i = 0; i < count; i++) {
            if (write(dataset, 0, filter_mask, offsets + (size_t)i * rank, sizes[i], buffers[i]) < 0)
                return i;
        }
        return count;
    }
    """,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
