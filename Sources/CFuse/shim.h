#ifndef WAN_CFUSE_SHIM_H
#define WAN_CFUSE_SHIM_H

// 3.12 API level. Do not write 35 here: that means 3.5 and turns
// fuse_session_loop_mt into a macro Swift cannot call.
#define FUSE_USE_VERSION 312
#include <stddef.h>
#include <sys/stat.h>
#include <fuse_lowlevel.h>

// Function-like macros and bitfields Swift cannot use directly, as small inline functions.

/// FUSE_ARGS_INIT
static inline struct fuse_args wan_fuse_args(int argc, char **argv) {
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    return args;
}

/// fuse_session_new is a macro from libfuse 3.17 on (it passes the version compiled against).
static inline struct fuse_session *wan_fuse_session_new(struct fuse_args *args, const struct fuse_lowlevel_ops *op,
                                                        size_t op_size, void *userdata) {
    return fuse_session_new(args, op, op_size, userdata);
}

/// fuse_session_loop_mt is a macro for the versioned symbol in this libfuse build.
static inline int wan_fuse_session_loop_mt(struct fuse_session *se, struct fuse_loop_config *config) {
    return fuse_session_loop_mt(se, config);
}

/// Serves the session over `fd`, a /dev/fuse descriptor it did not open (a mount taken
/// over), or over its own after mounting, through our read/writev/splice functions.
static inline int wan_fuse_session_custom_io(struct fuse_session *se, const struct fuse_custom_io *io, int fd) {
    return fuse_session_custom_io(se, io, fd);
}

#include <unistd.h>
#include <sys/syscall.h>
#include <sys/mount.h>
/// splice(2) (declared by fcntl.h only with _GNU_SOURCE).
extern ssize_t splice(int fd_in, __off64_t *off_in, int fd_out, __off64_t *off_out, size_t len, unsigned int flags);
static inline ssize_t wan_splice(int fd_in, __off64_t *off_in, int fd_out, __off64_t *off_out, size_t len, unsigned int flags) {
    return splice(fd_in, off_in, fd_out, off_out, len, flags);
}

/// The calling thread's kernel id.
static inline pid_t wan_gettid(void) { return (pid_t)syscall(SYS_gettid); }

/// Replies to a read with `size` bytes of `fd` at `pos` (spliced from the file when the
/// kernel and libfuse can, copied otherwise) — the data never passes through our buffers.
static inline int wan_fuse_reply_fd(fuse_req_t req, int fd, off_t pos, size_t size, int splice_move) {
    struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
    buf.buf[0].flags = (enum fuse_buf_flags)(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    buf.buf[0].fd = fd;
    buf.buf[0].pos = pos;
    return fuse_reply_data(req, &buf, splice_move ? FUSE_BUF_SPLICE_MOVE : FUSE_BUF_NO_SPLICE);
}

// FUSE passthrough (libfuse >= 3.17, kernel >= 6.9): the kernel serves reads and mmap of an
// open file straight from a backing file of ours. With an older libfuse these report "not
// available" and the mount serves every read itself.
#if FUSE_VERSION >= FUSE_MAKE_VERSION(3, 17)
#define WAN_FUSE_PASSTHROUGH 1
#else
#define WAN_FUSE_PASSTHROUGH 0
#endif

/// Whether this build of libfuse can do passthrough at all.
static inline int wan_fuse_passthrough_built(void) { return WAN_FUSE_PASSTHROUGH; }

/// In init: asks for passthrough when the kernel offers it; returns whether it was asked for.
/// Backing files may sit on a stacked filesystem (overlayfs, as in containers): depth 1.
static inline int wan_fuse_want_passthrough(struct fuse_conn_info *conn) {
#if WAN_FUSE_PASSTHROUGH
    if (!(conn->capable & FUSE_CAP_PASSTHROUGH)) return 0;
    conn->want |= FUSE_CAP_PASSTHROUGH;
    conn->max_backing_stack_depth = 1;
    return 1;
#else
    (void)conn;
    return 0;
#endif
}

/// Whether this build of libfuse knows FUSE_DIRECT_IO_ALLOW_MMAP (libfuse >= 3.16).
static inline int wan_fuse_direct_io_mmap_built(void) {
#ifdef FUSE_CAP_DIRECT_IO_ALLOW_MMAP
    return 1;
#else
    return 0;
#endif
}

/// Asks for mmap of direct-I/O opens (FUSE_DIRECT_IO_ALLOW_MMAP, Linux >= 6.6, libfuse >= 3.16):
/// 1 when the kernel offers it, 0 otherwise (then a MAP_SHARED mmap of a direct-I/O open fails).
static inline int wan_fuse_want_direct_io_mmap(struct fuse_conn_info *conn) {
#ifdef FUSE_CAP_DIRECT_IO_ALLOW_MMAP
    if (!(conn->capable & FUSE_CAP_DIRECT_IO_ALLOW_MMAP)) return 0;
    conn->want |= FUSE_CAP_DIRECT_IO_ALLOW_MMAP | (conn->capable & FUSE_CAP_ASYNC_DIO);
    return 1;
#else
    (void)conn;
    return 0;
#endif
}

/// Registers `fd` as a backing file; a positive backing id, or <= 0 when refused (say,
/// without CAP_SYS_ADMIN).
static inline int wan_fuse_passthrough_open(fuse_req_t req, int fd) {
#if WAN_FUSE_PASSTHROUGH
    return fuse_passthrough_open(req, fd);
#else
    (void)req; (void)fd;
    return 0;
#endif
}

static inline void wan_fuse_passthrough_close(fuse_req_t req, int backing_id) {
#if WAN_FUSE_PASSTHROUGH
    fuse_passthrough_close(req, backing_id);
#else
    (void)req; (void)backing_id;
#endif
}

/// Marks an open reply as passthrough to `backing_id` (no-op without passthrough).
static inline void wan_fi_set_backing_id(struct fuse_file_info *fi, int backing_id) {
#if WAN_FUSE_PASSTHROUGH
    fi->backing_id = backing_id;
#else
    (void)fi; (void)backing_id;
#endif
}

static inline void wan_fi_set_keep_cache(struct fuse_file_info *fi, unsigned v) { fi->keep_cache = v; }
static inline void wan_fi_set_direct_io(struct fuse_file_info *fi, unsigned v) { fi->direct_io = v; }
static inline void wan_fi_set_cache_readdir(struct fuse_file_info *fi, unsigned v) { fi->cache_readdir = v; }

#endif
