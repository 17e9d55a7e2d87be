"""cffi build script of ``receiver._zmqbatch``: a worker's ZeroMQ receive loop in C.

Why C: pyzmq gives the GIL back and takes it again around every part it
receives and wraps each part in a Python object; at tens of thousands of
frames per second, with the collector and the writer wanting the GIL too,
that is a large share of a worker's cost. Measured (docs/performance.md,
A/B, 20 kB frames, 1 worker): the receiver's CPU per frame fell from 22.9
to 19.0 us without writing (50 700 -> 53 400 frames/s). One
call here receives a whole batch of messages with the GIL released once and
leaves the parts in ZeroMQ's own buffers (no copy); ``receiver.zmq_batch``
gives them to Python as buffers that keep the batch alive.

libzmq is not linked: the caller passes the addresses of the few functions
used, from the libzmq that pyzmq has loaded, so both use one library and one
socket. pyzmq's ``recv_multipart`` stays the reference (tests/test_zmq_batch.py).
"""

from cffi import FFI

# The addresses of the libzmq functions used, filled in by receiver.zmq_batch.
ZMQ_API = """
    typedef struct zmq_api {
        void *msg_init;
        void *msg_recv;
        void *msg_close;
        void *msg_data;
        void *msg_size;
        void *msg_more;
        void *errno_of;
    } zmq_api;
"""

ffibuilder = FFI()
ffibuilder.cdef(
    ZMQ_API
    + """

    typedef struct batch batch;

    batch *batch_new(const zmq_api *api, int capacity);
    int batch_recv(batch *b, void *socket, int max_messages, size_t max_bytes, int max_parts,
                   int *message_parts, char **data, size_t *sizes);
    void batch_free(batch *b);
    """
)
ffibuilder.set_source(
    "receiver._zmqbatch",
    r"""
    #include <stdlib.h>
    #include <stddef.h>
"""
    + ZMQ_API
    + r"""

    /* libzmq's zmq_msg_t: 64 opaque bytes aligned as a pointer. */
    typedef struct { void *_[8]; } zmq_msg;

    typedef int (*msg_fn)(zmq_msg *);
    typedef int (*recv_fn)(zmq_msg *, void *, int);
    typedef void *(*data_fn)(zmq_msg *);
    typedef size_t (*size_fn)(const zmq_msg *);
    typedef int (*more_fn)(const zmq_msg *);
    typedef int (*errno_fn)(void);

    #define ZMQ_DONTWAIT 1

    typedef struct batch {
        zmq_api api;
        int capacity;   /* parts */
        int count;      /* parts received and open */
        zmq_msg parts[];
    } batch;

    batch *batch_new(const zmq_api *api, int capacity)
    {
        batch *b = malloc(sizeof(batch) + (size_t)capacity * sizeof(zmq_msg));
        if (b == NULL)
            return NULL;
        b->api = *api;
        b->capacity = capacity;
        b->count = 0;
        return b;
    }

    /* Receives one part into parts[count]; returns 0, or -errno (nothing kept). */
    static int recv_part(batch *b, void *socket, int flags)
    {
        zmq_msg *msg = &b->parts[b->count];
        ((msg_fn)b->api.msg_init)(msg);
        if (((recv_fn)b->api.msg_recv)(msg, socket, flags) < 0) {
            int error = ((errno_fn)b->api.errno_of)();
            ((msg_fn)b->api.msg_close)(msg);
            return -error;
        }
        b->count++;
        return 0;
    }

    /* Discards the rest of a message that has more than max_parts parts. */
    static void drop_rest(batch *b, void *socket)
    {
        zmq_msg scratch;
        int more = 1;
        while (more) {
            ((msg_fn)b->api.msg_init)(&scratch);
            if (((recv_fn)b->api.msg_recv)(&scratch, socket, 0) < 0) {
                ((msg_fn)b->api.msg_close)(&scratch);
                return;
            }
            more = ((more_fn)b->api.msg_more)(&scratch);
            ((msg_fn)b->api.msg_close)(&scratch);
        }
    }

    /* Receives whole messages: the first waits up to the socket's receive timeout, the
       others are taken only while ZeroMQ already holds them, up to max_messages, max_bytes
       or the batch's capacity (a message may have up to max_parts parts). Fills, for
       each message, its number of parts (negative: it had more than max_parts, the rest
       was dropped) and, for each part, its data and size. Returns the number of
       messages, or -errno when the first receive failed (-EAGAIN: nothing came). One
       call per batch. */
    int batch_recv(batch *b, void *socket, int max_messages, size_t max_bytes, int max_parts,
                   int *message_parts, char **data, size_t *sizes)
    {
        int messages = 0;
        size_t nbytes = 0;
        int flags = 0;
        while (messages < max_messages && nbytes < max_bytes
               && b->count + max_parts <= b->capacity) {
            int first = b->count;
            int error = recv_part(b, socket, flags);
            if (error < 0)
                return messages > 0 ? messages : error;
            int too_many = 0;
            while (((more_fn)b->api.msg_more)(&b->parts[b->count - 1])) {
                if (b->count - first == max_parts) {
                    drop_rest(b, socket);
                    too_many = 1;
                    break;
                }
                if (recv_part(b, socket, 0) < 0)
                    break;
            }
            for (int i = first; i < b->count; i++) {
                data[i] = (char *)((data_fn)b->api.msg_data)(&b->parts[i]);
                sizes[i] = ((size_fn)b->api.msg_size)(&b->parts[i]);
                nbytes += sizes[i];
            }
            message_parts[messages++] = too_many ? -(b->count - first) : b->count - first;
            flags = ZMQ_DONTWAIT;
        }
        return messages;
    }

    /* Closes the parts (ZeroMQ frees or unshares their buffers) and the batch. */
    void batch_free(batch *b)
    {
        for (int i = 0; i < b->count; i++)
            ((msg_fn)b->api.msg_close)(&b->parts[i]);
        free(b);
    }
    """,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
