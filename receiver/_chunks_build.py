"""cffi build script of ``receiver._chunks``: the receiver's two small loops in C.

``bslz4_blocks_end`` walks the block sizes of a bslz4 chunk from the wire
(receiver.protocols.bslz4.check_blocks): a Python loop costs about 25 us per
1 MB frame in every worker, this one well under 1 us. ``write_chunks`` is a
loop of HDF5 direct chunk writes.

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
    long long bslz4_blocks_end(const unsigned char *chunk, size_t length, size_t blocks);
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

    /* Follows the big-endian uint32 size in front of each of `blocks` blocks, from the end
       of the 12-byte header. Returns the offset just past the last block, or -(i + 1) when
       block i's size field lies beyond `length` (a truncated chunk). */
    long long bslz4_blocks_end(const unsigned char *chunk, size_t length, size_t blocks)
    {
        size_t position = 12;
        for (size_t i = 0; i < blocks; i++) {
            if (position + 4 > length)
                return -(long long)(i + 1);
            const unsigned char *p = chunk + position;
            size_t size = ((size_t)p[0] << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
            position += 4 + size;
        }
        return (long long)position;
    }
    """,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
