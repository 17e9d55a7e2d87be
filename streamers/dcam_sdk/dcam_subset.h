/*
 * dcam_subset.h - detector-daq's own declarations of the part of Hamamatsu's DCAM-API 4
 * that acquisition from an ORCA camera needs.
 *
 * This is not Hamamatsu's header and contains none of it. We may not ship dcamapi4.h or
 * dcamprop.h (they are Hamamatsu's copyright), so this file declares, in our own words,
 * only the functions, structures and constants detector-daq calls, from the public facts
 * collected in docs/camera-sdk-facts.md, section 3. Each group below names the
 * source keys of those notes it comes from (H1: a public copy of the SDK's headers,
 * H2: the SDK's function reference, H3: the per-camera property tables, H5: Hamamatsu's
 * Python sample). Names, numeric values, argument lists and structure layouts must stay
 * binary-compatible with the real libdcamapi.so, since streamers/dcam_sdk/binding.py
 * loads that library with these declarations at a site; sim/dcam_fake/fake_dcam.c (a
 * simulator for tests) is compiled against them.
 *
 * Linux only: there int32 is int, and the functions use the default C calling
 * convention (research notes 3.1).
 *
 * Conventions of the API (3.1, 3.2, 3.7):
 * - every function returns a DCAMERR; a failure is a negative value (the sign bit set),
 *   and success is any value of 0 or more, not only DCAMERR_SUCCESS (1);
 * - a structure argument has its size member (size or cbSize) set to sizeof the
 *   structure and every other member zeroed before the call, then the inputs set.
 *
 * Only the declarations between the cffi markers are read by the binding; keep them
 * free of preprocessor lines.
 */
#ifndef DETECTOR_DAQ_DCAM_SUBSET_H
#define DETECTOR_DAQ_DCAM_SUBSET_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The SDK's headers declare everything under 8-byte packing (3.1); every member below is
   naturally aligned, so the layouts are the same either way (the sizes are checked in
   fake_dcam.c and tests/test_dcam_sdk.py). */
#pragma pack(push, 8)

/* cffi-begin */

/* ---- handles and the result type (3.1, H1) -------------------------------------- */

typedef struct dcam_device *HDCAM;    /* an opened device; opaque */
typedef struct dcam_wait *HDCAMWAIT;  /* a wait session on an opened device; opaque */
typedef int32_t DCAMERR;              /* stored as a 4-byte enum by the SDK: read it signed */

/* ---- DCAMERR values (3.4, H1; descriptions H2) ---------------------------------- */

/* The failure bit: 0x80000000 as a signed 32-bit value. The codes below are written as
   DCAMSUBSET_FAILED | <the low bits> so that each stays an int (C and cffi both keep an
   enum of ints signed); the comment gives the code as the SDK documents it, in hex. */
enum { DCAMSUBSET_FAILED = -0x7FFFFFFF - 1 };

enum {
    DCAMERR_NONE = 0,
    DCAMERR_SUCCESS = 1,

    /* status */
    DCAMERR_BUSY = DCAMSUBSET_FAILED | 0x00000101,             /* 0x80000101 */
    DCAMERR_NOTREADY = DCAMSUBSET_FAILED | 0x00000103,         /* 0x80000103 */
    DCAMERR_NOTSTABLE = DCAMSUBSET_FAILED | 0x00000104,        /* 0x80000104 */
    DCAMERR_NOTBUSY = DCAMSUBSET_FAILED | 0x00000107,          /* 0x80000107 */
    DCAMERR_EXCLUDED = DCAMSUBSET_FAILED | 0x00000110,         /* 0x80000110 */

    /* waiting */
    DCAMERR_ABORT = DCAMSUBSET_FAILED | 0x00000102,            /* 0x80000102 */
    DCAMERR_TIMEOUT = DCAMSUBSET_FAILED | 0x00000106,          /* 0x80000106 */

    /* resources and devices */
    DCAMERR_NORESOURCE = DCAMSUBSET_FAILED | 0x00000201,       /* 0x80000201 */
    DCAMERR_NOMEMORY = DCAMSUBSET_FAILED | 0x00000203,         /* 0x80000203 */
    DCAMERR_NOMODULE = DCAMSUBSET_FAILED | 0x00000204,         /* 0x80000204 */
    DCAMERR_NODRIVER = DCAMSUBSET_FAILED | 0x00000205,         /* 0x80000205 */
    DCAMERR_NOCAMERA = DCAMSUBSET_FAILED | 0x00000206,         /* 0x80000206, "no device" */
    DCAMERR_INVALIDMODULE = DCAMSUBSET_FAILED | 0x00000211,    /* 0x80000211 */

    /* frames */
    DCAMERR_LOSTFRAME = DCAMSUBSET_FAILED | 0x00000301,        /* 0x80000301 */
    DCAMERR_NOTRIGGER = DCAMSUBSET_FAILED | 0x00000303,        /* 0x80000303 */
    DCAMERR_TOOFREQUENTTRIGGER = DCAMSUBSET_FAILED | 0x00000305, /* 0x80000305 */

    /* arguments, handles and properties */
    DCAMERR_INVALIDCAMERA = DCAMSUBSET_FAILED | 0x00000806,    /* 0x80000806 */
    DCAMERR_INVALIDHANDLE = DCAMSUBSET_FAILED | 0x00000807,    /* 0x80000807 */
    DCAMERR_INVALIDPARAM = DCAMSUBSET_FAILED | 0x00000808,     /* 0x80000808 */
    DCAMERR_INVALIDVALUE = DCAMSUBSET_FAILED | 0x00000821,     /* 0x80000821 */
    DCAMERR_OUTOFRANGE = DCAMSUBSET_FAILED | 0x00000822,       /* 0x80000822 */
    DCAMERR_NOTWRITABLE = DCAMSUBSET_FAILED | 0x00000823,      /* 0x80000823 */
    DCAMERR_NOTREADABLE = DCAMSUBSET_FAILED | 0x00000824,      /* 0x80000824 */
    DCAMERR_INVALIDPROPERTYID = DCAMSUBSET_FAILED | 0x00000825, /* 0x80000825 */
    DCAMERR_INVALIDSUBARRAY = DCAMSUBSET_FAILED | 0x0000082B,  /* 0x8000082b */
    DCAMERR_ACCESSDENY = DCAMSUBSET_FAILED | 0x0000082C,       /* 0x8000082c */
    DCAMERR_WRONGPROPERTYVALUE = DCAMSUBSET_FAILED | 0x0000082E, /* 0x8000082e */
    DCAMERR_INVALIDFRAMEINDEX = DCAMSUBSET_FAILED | 0x00000833, /* 0x80000833 */
    DCAMERR_NODEVICEBUFFER = DCAMSUBSET_FAILED | 0x0000083B,   /* 0x8000083b */

    /* the device and its connection */
    DCAMERR_UNREACH = DCAMSUBSET_FAILED | 0x00000F01,          /* 0x80000f01 */
    DCAMERR_NOTIMPLEMENT = DCAMSUBSET_FAILED | 0x00000F02,     /* 0x80000f02 */
    DCAMERR_NOTSUPPORT = DCAMSUBSET_FAILED | 0x00000F03,       /* 0x80000f03 */
    DCAMERR_MISSINGFRAME_TROUBLE = DCAMSUBSET_FAILED | 0x00000F06, /* 0x80000f06 */
    DCAMERR_NOCONNECTION = DCAMSUBSET_FAILED | 0x00000F07,     /* 0x80000f07 */
    DCAMERR_FAILOPEN = DCAMSUBSET_FAILED | 0x00001001,         /* 0x80001001 */
    DCAMERR_FAILOPENCAMERA = DCAMSUBSET_FAILED | 0x02001001,   /* 0x82001001 */
    DCAMERR_DEVICEPROBLEM = DCAMSUBSET_FAILED | 0x02001002,    /* 0x82001002 */
    DCAMERR_INVALIDWAITHANDLE = DCAMSUBSET_FAILED | 0x04002001 /* 0x84002001 */
};

/* ---- structures (3.2, H1; the direction of each member from H2) ------------------ */

typedef struct {
    uint32_t Data1;
    unsigned short Data2;
    unsigned short Data3;
    unsigned char Data4[8];
} DCAM_GUID;

typedef struct {
    int32_t size;                 /* in: sizeof(DCAMAPI_INIT) */
    int32_t iDeviceCount;         /* out: devices found */
    int32_t reserved;
    int32_t initoptionbytes;      /* in: bytes of the initoption array, 0 for none */
    const int32_t *initoption;    /* in: DCAMAPI_INITOPTION values, or NULL */
    const DCAM_GUID *guid;        /* in: NULL */
} DCAMAPI_INIT;

typedef struct {
    int32_t size;                 /* in: sizeof(DCAMDEV_OPEN) */
    int32_t index;                /* in: 0 .. iDeviceCount - 1 */
    HDCAM hdcam;                  /* out */
} DCAMDEV_OPEN;

typedef struct {
    int32_t size;                 /* in: sizeof(DCAMDEV_STRING) */
    int32_t iString;              /* in: a DCAM_IDSTR_* or a DCAMERR value */
    char *text;                   /* in: the caller's buffer; filled NUL-terminated, cut to fit */
    int32_t textbytes;            /* in: bytes at text */
} DCAMDEV_STRING;

typedef struct {
    int32_t size;                 /* in: sizeof(DCAMWAIT_OPEN) */
    int32_t supportevent;         /* out: the DCAMWAIT_* events the device can signal */
    HDCAMWAIT hwait;              /* out */
    HDCAM hdcam;                  /* in */
} DCAMWAIT_OPEN;

typedef struct {
    int32_t size;                 /* in: sizeof(DCAMWAIT_START) */
    int32_t eventhappened;        /* out: the one event of eventmask that ended the wait */
    int32_t eventmask;            /* in: DCAMWAIT_* events to wait for */
    int32_t timeout;              /* in: milliseconds, or DCAMWAIT_TIMEOUT_INFINITE */
} DCAMWAIT_START;

typedef struct {
    uint32_t sec;
    int32_t microsec;
} DCAM_TIMESTAMP;

/* For dcambuf_lockframe: set size and iFrame (iKind, option, left, top 0); the call fills
   buf, rowbytes, type, width, height, timestamp, framestamp and camerastamp (H1, H2). */
typedef struct {
    int32_t size;                 /* in: sizeof(DCAMBUF_FRAME) */
    int32_t iKind;                /* in: 0 */
    int32_t option;               /* in: 0 */
    int32_t iFrame;               /* in: buffer index, or -1 for the newest frame */
    void *buf;                    /* out: the frame in the SDK's memory */
    int32_t rowbytes;             /* out: bytes from one row to the next */
    int32_t type;                 /* out: DCAM_PIXELTYPE_* (a 4-byte enum in the SDK) */
    int32_t width;                /* out */
    int32_t height;               /* out */
    int32_t left;                 /* in: 0 */
    int32_t top;                  /* in: 0 */
    DCAM_TIMESTAMP timestamp;     /* out */
    int32_t framestamp;           /* out: the frame's number */
    int32_t camerastamp;          /* out */
} DCAMBUF_FRAME;

typedef struct {
    int32_t size;                 /* in: sizeof(DCAMCAP_TRANSFERINFO) */
    int32_t iKind;                /* in: DCAMCAP_TRANSFERKIND_FRAME */
    int32_t nNewestFrameIndex;    /* out: buffer index of the newest frame */
    int32_t nFrameCount;          /* out: frames captured since dcamcap_start, not wrapped */
} DCAMCAP_TRANSFERINFO;

/* For dcamprop_getattr: zero it, set cbSize and iProp (H2). */
typedef struct {
    int32_t cbSize;               /* in: sizeof(DCAMPROP_ATTR) */
    int32_t iProp;                /* in: DCAM_IDPROP_* */
    int32_t option;
    int32_t iReserved1;
    int32_t attribute;            /* out: DCAMPROP_ATTR_* flags | DCAMPROP_TYPE_* */
    int32_t iGroup;
    int32_t iUnit;                /* out: DCAMPROP_UNIT_* */
    int32_t attribute2;
    double valuemin;              /* out, with DCAMPROP_ATTR_HASRANGE */
    double valuemax;
    double valuestep;             /* out, with DCAMPROP_ATTR_HASSTEP */
    double valuedefault;          /* out, with DCAMPROP_ATTR_HASDEFAULT */
    int32_t nMaxChannel;
    int32_t iReserved3;
    int32_t nMaxView;
    int32_t iProp_NumberOfElement;
    int32_t iProp_ArrayBase;
    int32_t iPropStep_Element;
} DCAMPROP_ATTR;

/* ---- constants of the calls (3.5, H1) ------------------------------------------- */

enum { DCAMCAP_START_SEQUENCE = -1, DCAMCAP_START_SNAP = 0 };

enum {
    DCAMCAP_STATUS_ERROR = 0x0000,
    DCAMCAP_STATUS_BUSY = 0x0001,     /* capturing */
    DCAMCAP_STATUS_READY = 0x0002,    /* a buffer, not capturing */
    DCAMCAP_STATUS_STABLE = 0x0003,   /* no buffer */
    DCAMCAP_STATUS_UNSTABLE = 0x0004
};

enum {
    DCAMWAIT_CAPEVENT_TRANSFERRED = 0x0001,
    DCAMWAIT_CAPEVENT_FRAMEREADY = 0x0002,
    DCAMWAIT_CAPEVENT_CYCLEEND = 0x0004,  /* the last frame of the buffer was filled */
    DCAMWAIT_CAPEVENT_EXPOSUREEND = 0x0008,
    DCAMWAIT_CAPEVENT_STOPPED = 0x0010
};

enum { DCAMWAIT_TIMEOUT_INFINITE = -0x7FFFFFFF - 1 }; /* 0x80000000 in the int32 timeout */

enum {
    DCAM_PIXELTYPE_NONE = 0,
    DCAM_PIXELTYPE_MONO8 = 1,
    DCAM_PIXELTYPE_MONO16 = 2,
    DCAM_PIXELTYPE_MONO12 = 3,   /* 2 pixels in 3 bytes, high bits first (3.9) */
    DCAM_PIXELTYPE_MONO12P = 5   /* 2 pixels in 3 bytes, low bits first (3.9) */
};

enum { DCAMBUF_ATTACHKIND_FRAME = 0 };
enum { DCAMCAP_TRANSFERKIND_FRAME = 0 };

enum {
    DCAM_IDSTR_BUS = 0x04000101,
    DCAM_IDSTR_CAMERAID = 0x04000102,
    DCAM_IDSTR_VENDOR = 0x04000103,
    DCAM_IDSTR_MODEL = 0x04000104,
    DCAM_IDSTR_CAMERAVERSION = 0x04000105,
    DCAM_IDSTR_DRIVERVERSION = 0x04000106,
    DCAM_IDSTR_MODULEVERSION = 0x04000107,
    DCAM_IDSTR_DCAMAPIVERSION = 0x04000108,
    DCAM_IDSTR_CAMERA_SERIESNAME = 0x0400012C
};

/* ---- properties (3.6, H1 dcamprop.h; the same numbers in H5) ---------------------- */

enum {
    DCAM_IDPROP_TRIGGERSOURCE = 0x00100110,
    DCAM_IDPROP_TRIGGERACTIVE = 0x00100120,
    DCAM_IDPROP_TRIGGER_MODE = 0x00100210,
    DCAM_IDPROP_EXPOSURETIME = 0x001F0110,
    DCAM_IDPROP_SUBARRAYHPOS = 0x00402110,
    DCAM_IDPROP_SUBARRAYHSIZE = 0x00402120,
    DCAM_IDPROP_SUBARRAYVPOS = 0x00402130,
    DCAM_IDPROP_SUBARRAYVSIZE = 0x00402140,
    DCAM_IDPROP_SUBARRAYMODE = 0x00402150,
    DCAM_IDPROP_TIMING_READOUTTIME = 0x00403010,
    DCAM_IDPROP_INTERNALFRAMERATE = 0x00403810,
    DCAM_IDPROP_INTERNAL_FRAMEINTERVAL = 0x00403820,
    DCAM_IDPROP_TRANSFERINFO_FRAMECOUNT = 0x00410B10,
    DCAM_IDPROP_TRANSFERINFO_LOSTCOUNT = 0x00410B11,
    DCAM_IDPROP_BITSPERCHANNEL = 0x00420130,
    DCAM_IDPROP_IMAGE_WIDTH = 0x00420210,
    DCAM_IDPROP_IMAGE_HEIGHT = 0x00420220,
    DCAM_IDPROP_IMAGE_ROWBYTES = 0x00420230,
    DCAM_IDPROP_IMAGE_FRAMEBYTES = 0x00420240,
    DCAM_IDPROP_IMAGE_PIXELTYPE = 0x00420270,
    DCAM_IDPROP_IMAGEDETECTOR_PIXELWIDTH = 0x00420810,
    DCAM_IDPROP_IMAGEDETECTOR_PIXELHEIGHT = 0x00420820,
    DCAM_IDPROP_IMAGEDETECTOR_PIXELNUMHORZ = 0x00420830,
    DCAM_IDPROP_IMAGEDETECTOR_PIXELNUMVERT = 0x00420840
};

enum {
    DCAMPROP_TRIGGERSOURCE__INTERNAL = 1,
    DCAMPROP_TRIGGERSOURCE__EXTERNAL = 2,
    DCAMPROP_TRIGGERSOURCE__SOFTWARE = 3,
    DCAMPROP_TRIGGERSOURCE__MASTERPULSE = 4
};

enum {
    DCAMPROP_TRIGGERACTIVE__EDGE = 1,
    DCAMPROP_TRIGGERACTIVE__LEVEL = 2,       /* a gate: the exposure is the pulse width */
    DCAMPROP_TRIGGERACTIVE__SYNCREADOUT = 3  /* each pulse ends one exposure, starts the next */
};

enum { DCAMPROP_TRIGGER_MODE__NORMAL = 1, DCAMPROP_TRIGGER_MODE__START = 6 };

enum { DCAMPROP_MODE__OFF = 1, DCAMPROP_MODE__ON = 2 };

/* DCAMPROP_ATTR.attribute: flags, and the value type in the low four bits. */
enum {
    DCAMPROP_ATTR_HASRANGE = -0x7FFFFFFF - 1,  /* 0x80000000 */
    DCAMPROP_ATTR_HASSTEP = 0x40000000,
    DCAMPROP_ATTR_HASDEFAULT = 0x20000000,
    DCAMPROP_ATTR_AUTOROUNDING = 0x00800000,
    DCAMPROP_ATTR_WRITABLE = 0x00020000,
    DCAMPROP_ATTR_READABLE = 0x00010000,
    DCAMPROP_ATTR_ACCESSREADY = 0x00002000,    /* writable in READY; else DCAMERR_NOTSTABLE */
    DCAMPROP_ATTR_ACCESSBUSY = 0x00001000,     /* writable in BUSY; else DCAMERR_BUSY */
    DCAMPROP_TYPE_NONE = 0,
    DCAMPROP_TYPE_MODE = 1,
    DCAMPROP_TYPE_LONG = 2,
    DCAMPROP_TYPE_REAL = 3,
    DCAMPROP_TYPE_MASK = 0xF
};

enum {
    DCAMPROP_UNIT_SECOND = 1,
    DCAMPROP_UNIT_PERSECOND = 5,
    DCAMPROP_UNIT_MICROMETER = 7
};

/* ---- functions (3.3, H1 = H2) ---------------------------------------------------- */

DCAMERR dcamapi_init(DCAMAPI_INIT *param);
DCAMERR dcamapi_uninit(void);

DCAMERR dcamdev_open(DCAMDEV_OPEN *param);
DCAMERR dcamdev_close(HDCAM h);
DCAMERR dcamdev_getstring(HDCAM h, DCAMDEV_STRING *param);

DCAMERR dcamprop_getattr(HDCAM h, DCAMPROP_ATTR *param);
DCAMERR dcamprop_getvalue(HDCAM h, int32_t iProp, double *pValue);
DCAMERR dcamprop_setvalue(HDCAM h, int32_t iProp, double fValue);
DCAMERR dcamprop_setgetvalue(HDCAM h, int32_t iProp, double *pValue, int32_t option);

DCAMERR dcambuf_alloc(HDCAM h, int32_t framecount);
DCAMERR dcambuf_release(HDCAM h, int32_t iKind);
DCAMERR dcambuf_lockframe(HDCAM h, DCAMBUF_FRAME *pFrame);

DCAMERR dcamcap_start(HDCAM h, int32_t mode);
DCAMERR dcamcap_stop(HDCAM h);
DCAMERR dcamcap_status(HDCAM h, int32_t *pStatus);
DCAMERR dcamcap_transferinfo(HDCAM h, DCAMCAP_TRANSFERINFO *param);
DCAMERR dcamcap_firetrigger(HDCAM h, int32_t iKind);

DCAMERR dcamwait_open(DCAMWAIT_OPEN *param);
DCAMERR dcamwait_close(HDCAMWAIT hWait);
DCAMERR dcamwait_start(HDCAMWAIT hWait, DCAMWAIT_START *param);
DCAMERR dcamwait_abort(HDCAMWAIT hWait);
/* cffi-end */

#pragma pack(pop)

#ifdef __cplusplus
}
#endif

#endif
