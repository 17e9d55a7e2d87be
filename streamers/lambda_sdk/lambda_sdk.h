/*
 * lambda_sdk.h - the C API detector-daq binds for an XSpectrum Lambda system.
 *
 * The vendor library (libxsp) is C++ (xsp::System, xsp::lambda::Detector,
 * one xsp::Receiver per module). A site compiles a small shim that
 * implements this header over libxsp (docs/lambda.md, "The shim over libxsp");
 * sim/lambda_fake implements the same header for tests and demos. Python
 * binds it once, in ABI mode (streamers/lambda_sdk/binding.py), so the real
 * shim and the fake are loaded the same way, by path.
 *
 * Conventions: every call returns LSDK_OK (0) or a negative LSDK_ERR_*;
 * after a failure, lsdk_last_error() gives the library's own text for the
 * calling thread. One system may be used from several threads as long as
 * each module is read by one thread at a time (one reader per module, as
 * libxsp's receivers are).
 *
 * Only the declarations between the cffi markers are read by the binding;
 * keep them free of preprocessor lines.
 */
#ifndef DETECTOR_DAQ_LAMBDA_SDK_H
#define DETECTOR_DAQ_LAMBDA_SDK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cffi-begin */
typedef struct lsdk_system lsdk_system;

enum {
    LSDK_OK = 0,
    LSDK_ERR_TIMEOUT = -1,       /* no frame within the timeout: not a failure by itself */
    LSDK_ERR_ARGUMENT = -2,      /* a value the library refuses (text says which and why) */
    LSDK_ERR_STATE = -3,         /* not allowed now (setting while busy, reading before start) */
    LSDK_ERR_HARDWARE = -4,      /* the detector or a module failed (connection, firmware) */
    LSDK_ERR_RESOURCE = -5       /* configuration file, memory, network */
};

/* xsp::lambda::TrigMode */
enum {
    LSDK_TRIGGER_SOFTWARE = 0,     /* internal: start begins the frames at the shutter time */
    LSDK_TRIGGER_EXT_SEQUENCE = 1, /* one external trigger starts all frames */
    LSDK_TRIGGER_EXT_FRAMES = 2    /* each external trigger takes one frame */
};

/* xsp::FrameStatusCode */
enum {
    LSDK_FRAME_OK = 0,
    LSDK_FRAME_MISSING = 1,        /* packets lost: the frame's pixels are not all there */
    LSDK_FRAME_CORRUPT = 2         /* the frame failed the module's own checks */
};

typedef struct {
    char id[64];                   /* the system file's name of the detector */
    int32_t module_count;          /* modules this system (one DCU) serves */
    int32_t detector_modules;      /* modules of the whole detector (several DCUs) */
    int32_t full_height;           /* rows of the whole detector's assembled image */
    int32_t full_width;            /* columns of it */
} lsdk_system_info;

typedef struct {
    char id[64];                   /* receiver id of the module */
    int32_t index;                 /* position of the module in the whole detector, 0-based */
    int32_t height;                /* rows of the module's frame */
    int32_t width;                 /* columns of the module's frame */
    int32_t depth;                 /* bits per pixel counted: 1, 6, 12 or 24 */
    int32_t bytes_per_pixel;       /* 1, 2 or 4: how frames are stored in memory */
    int32_t x;                     /* column of the full image where the turned module starts */
    int32_t y;                     /* row of it */
    int32_t rotation;              /* quarter turns counter-clockwise, as numpy.rot90 */
} lsdk_module_info;

typedef struct {
    int64_t number;                /* 0-based frame number of the series */
    int32_t status;                /* LSDK_FRAME_* */
    const void *data;              /* height x width pixels, C order; valid until released */
    size_t size;                   /* bytes at data */
} lsdk_frame;

const char *lsdk_version(void);
const char *lsdk_last_error(void);

int lsdk_open(const char *config_path, lsdk_system **system);
void lsdk_close(lsdk_system *system);

int lsdk_system_info_get(lsdk_system *system, lsdk_system_info *info);
int lsdk_module_info_get(lsdk_system *system, int32_t module, lsdk_module_info *info);

int lsdk_set_frame_count(lsdk_system *system, int64_t frames);
int lsdk_set_shutter_time(lsdk_system *system, double milliseconds);
int lsdk_set_trigger_mode(lsdk_system *system, int32_t mode);

int lsdk_start(lsdk_system *system);
int lsdk_stop(lsdk_system *system);
int lsdk_is_busy(lsdk_system *system, int32_t *busy);

int lsdk_next_frame(lsdk_system *system, int32_t module, int32_t timeout_ms, lsdk_frame *frame);
int lsdk_release_frame(lsdk_system *system, int32_t module, const lsdk_frame *frame);
/* cffi-end */

#ifdef __cplusplus
}
#endif

#endif
