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

/// fuse_session_loop_mt is a macro for the versioned symbol in this libfuse build.
static inline int wan_fuse_session_loop_mt(struct fuse_session *se, struct fuse_loop_config *config) {
    return fuse_session_loop_mt(se, config);
}

/// Replies to a read with `size` bytes of `fd` at `pos` (spliced from the file when the
/// kernel and libfuse can, copied otherwise) — the data never passes through our buffers.
static inline int wan_fuse_reply_fd(fuse_req_t req, int fd, off_t pos, size_t size, int splice_move) {
    struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
    buf.buf[0].flags = (enum fuse_buf_flags)(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    buf.buf[0].fd = fd;
    buf.buf[0].pos = pos;
    return fuse_reply_data(req, &buf, splice_move ? FUSE_BUF_SPLICE_MOVE : FUSE_BUF_NO_SPLICE);
}

static inline void wan_fi_set_keep_cache(struct fuse_file_info *fi, unsigned v) { fi->keep_cache = v; }
static inline void wan_fi_set_direct_io(struct fuse_file_info *fi, unsigned v) { fi->direct_io = v; }
static inline void wan_fi_set_cache_readdir(struct fuse_file_info *fi, unsigned v) { fi->cache_readdir = v; }

#endif
