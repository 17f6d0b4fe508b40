#ifndef WAN_CFUSE_SHIM_H
#define WAN_CFUSE_SHIM_H

// 3.12 API level. Do not write 35 here: that means 3.5 and turns
// fuse_session_loop_mt into a macro Swift cannot call.
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#endif
