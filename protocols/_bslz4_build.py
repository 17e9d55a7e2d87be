"""cffi build script of ``protocols._bslz4``: the walk over a bslz4 chunk's block sizes in C.

``bslz4_blocks_end`` checks a chunk from the wire before anything decodes it
(``protocols.bslz4.check_blocks``): a Python loop costs about 25 us per 1 MB
frame in every receiving worker, this one well under 1 us. It is apart from
the writer's compiled code so that senders and readers of the codec need
none of the receiver's.
"""

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef(
    "long long bslz4_blocks_end(const unsigned char *chunk, size_t length, size_t blocks);"
)
ffibuilder.set_source(
    "protocols._bslz4",
    r"""
    #include <stddef.h>

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
