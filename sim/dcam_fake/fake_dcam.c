/*
 * fake_dcam.c - A SIMULATOR FOR TESTS. It is not a DCAM-API implementation and contains
 * no Hamamatsu code.
 *
 * detector-daq's tests and demos need something behind the calls its binding
 * (streamers/dcam_sdk/binding.py) makes on a site's libdcamapi.so, so this file stands in
 * for one ORCA camera. It implements only the subset declared in our own
 * streamers/dcam_sdk/dcam_subset.h, with the rules of the public facts gathered in
 * docs/camera-sdk-facts.md (sections 3.7 to 3.10, keys H2 and H3 there), and adds its
 * own choices where those facts stop (each marked "the fake's choice"). It is built only
 * as part of detector-daq's test tree (sim/dcam_fake) and must not be offered as, or
 * used in place of, Hamamatsu's library.
 *
 * How it works:
 * - One device; dcamapi_init reads the camera to simulate from the file named by
 *   DCAM_FAKE_CONFIG (sim/dcam_fake/config_file.py writes it) and faults from
 *   DCAM_FAKE_FAULTS. Three models: ORCA-Flash4.0 V3, ORCA-Fusion, ORCA-Lightning.
 * - No producer thread: frame k of a capture is due at a time the trigger settings give
 *   (frame_due_ns), and every call first catches up (advance) with the frames due by now,
 *   writing them into the ring buffer in the caller's thread. dcamwait_start sleeps on a
 *   condition variable (CLOCK_MONOTONIC) until the next frame is due, its timeout, an
 *   abort or a stop.
 * - Pixel (r, c) of frame k, counted on the sensor, is (k*7 + r*3 + c) masked to
 *   BITSPERCHANNEL bits (sim.dcam_fake.expected_frame is the same formula in numpy),
 *   written in the pixel type's layout, each row padded with zeros to IMAGE_ROWBYTES.
 * - All state is behind one mutex: the fake is small, and one lock keeps the wait,
 *   abort and close paths simple.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strdup, strtok_r; Python.h defines it when cffi includes this file */
#endif
#include "../../streamers/dcam_sdk/dcam_subset.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FAKE_EXPORT __attribute__((visibility("default")))

#define CONFIG_ENV "DCAM_FAKE_CONFIG"
#define FAULTS_ENV "DCAM_FAKE_FAULTS"
#define LINE_SIZE 1024
#define ID_SIZE 64
#define MAX_DROPS 64
#define NEVER_NS (INT64_MAX / 4) /* a time no test reaches; adding to it cannot overflow */
#define ROW_ALIGN 8              /* the fake's choice: rows padded to a multiple of 8 bytes */
#define DEVICE_COUNT 1
#define INDEX_LIMIT 0x10000      /* an HDCAM below this is a device index (dcamdev_getstring) */

/* The layouts of research notes 3.2 (LP64): a mismatch would corrupt a real caller. */
_Static_assert(sizeof(DCAM_GUID) == 16, "DCAM_GUID");
_Static_assert(sizeof(DCAMAPI_INIT) == 32 && offsetof(DCAMAPI_INIT, initoption) == 16
                   && offsetof(DCAMAPI_INIT, guid) == 24, "DCAMAPI_INIT");
_Static_assert(sizeof(DCAMDEV_OPEN) == 16 && offsetof(DCAMDEV_OPEN, hdcam) == 8, "DCAMDEV_OPEN");
_Static_assert(sizeof(DCAMDEV_STRING) == 24 && offsetof(DCAMDEV_STRING, text) == 8
                   && offsetof(DCAMDEV_STRING, textbytes) == 16, "DCAMDEV_STRING");
_Static_assert(sizeof(DCAMWAIT_OPEN) == 24 && offsetof(DCAMWAIT_OPEN, hwait) == 8
                   && offsetof(DCAMWAIT_OPEN, hdcam) == 16, "DCAMWAIT_OPEN");
_Static_assert(sizeof(DCAMWAIT_START) == 16, "DCAMWAIT_START");
_Static_assert(sizeof(DCAM_TIMESTAMP) == 8, "DCAM_TIMESTAMP");
_Static_assert(sizeof(DCAMBUF_FRAME) == 64 && offsetof(DCAMBUF_FRAME, buf) == 16
                   && offsetof(DCAMBUF_FRAME, rowbytes) == 24
                   && offsetof(DCAMBUF_FRAME, type) == 28
                   && offsetof(DCAMBUF_FRAME, timestamp) == 48
                   && offsetof(DCAMBUF_FRAME, framestamp) == 56
                   && offsetof(DCAMBUF_FRAME, camerastamp) == 60, "DCAMBUF_FRAME");
_Static_assert(sizeof(DCAMCAP_TRANSFERINFO) == 16, "DCAMCAP_TRANSFERINFO");
_Static_assert(sizeof(DCAMPROP_ATTR) == 88 && offsetof(DCAMPROP_ATTR, valuemin) == 32
                   && offsetof(DCAMPROP_ATTR, valuedefault) == 56, "DCAMPROP_ATTR");

/* ---- the cameras ------------------------------------------------------------------ */

/* What the fake knows of one camera model. Sensor, pixel and subarray steps: research
   notes 3.10 and H3; exposure ranges and defaults: H3 (AREA mode, at the scan speed
   modelled); pixel types: 3.9. row_s is the readout time per row of the subarray in AREA
   mode, derived from 3.10: the Flash reads two rows per 9.744 us line (1024 lines for
   2048 rows), the Fusion one per 4.868 us (fast scan), the Lightning four per 12.608 us
   (648 lines for 2592 rows). */
typedef struct {
    const char *series;          /* DCAM_IDSTR_CAMERA_SERIESNAME, and the config's model */
    const char *number;          /* DCAM_IDSTR_MODEL: the model number */
    int32_t width, height;
    double pixel_um;
    int32_t hstep, vstep;        /* steps of HPOS/HSIZE and VPOS/VSIZE, also the least size */
    double row_s;
    double exposure_min, exposure_max, exposure_default;
    int32_t pixeltypes[3];       /* DCAM_PIXELTYPE_* it offers, the rest 0 */
    int32_t default_bits;        /* BITSPERCHANNEL with MONO16 */
    int bits_writable;           /* the Lightning's follows its HDR mode: read-only here */
    int trigger_mode_in_busy;    /* TRIGGER_MODE writable while capturing (Flash only, H3) */
} model;

static const model models[] = {
    {"ORCA-Flash4.0 V3", "C13440-20CU", 2048, 2048, 6.5, 4, 4, 9.744e-6 / 2, 0.001003669, 10.0,
     0.00999771, {DCAM_PIXELTYPE_MONO8, DCAM_PIXELTYPE_MONO16, DCAM_PIXELTYPE_MONO12}, 16, 1, 1},
    {"ORCA-Fusion", "C14440-20UP", 2304, 2304, 6.5, 4, 4, 4.868e-6, 0.000017632, 10.000004662,
     0.042947206, {DCAM_PIXELTYPE_MONO8, DCAM_PIXELTYPE_MONO16, DCAM_PIXELTYPE_MONO12P}, 16, 1,
     0},
    {"ORCA-Lightning", "C14120-20P", 4608, 2592, 5.5, 128, 4, 12.608e-6 / 4, 0.000012608,
     1.00000352, 0.0081952, {DCAM_PIXELTYPE_MONO16, DCAM_PIXELTYPE_MONO12P, 0}, 12, 0, 0},
};

#define MODEL_COUNT ((int)(sizeof models / sizeof models[0]))

/* ---- configuration and faults ------------------------------------------------------ */

typedef struct {
    const model *m;
    char camera_id[ID_SIZE];
    double trigger_period_ms;    /* the fake's pulse generator on the external trigger input */
    double trigger_delay_ms;     /* from dcamcap_start to its first pulse */
    double trigger_width_ms;     /* each pulse's width: the exposure with TRIGGERACTIVE LEVEL */
    int64_t drops[MAX_DROPS];    /* drop_frame: frames never written into the buffer */
    int drop_count;
    int64_t timeout_after;       /* frames after which nothing arrives, or -1 */
    int64_t vanish_after;        /* frames after which the device is gone, or -1 */
    int has_open_error;
    DCAMERR open_error;
} config;

/* Names of the codes this fake returns or accepts as open_error, and DCAMDEV_STRING text
   of a DCAMERR. */
static const struct {
    DCAMERR code;
    const char *name;
} error_names[] = {
    {DCAMERR_BUSY, "DCAMERR_BUSY"},
    {DCAMERR_NOTREADY, "DCAMERR_NOTREADY"},
    {DCAMERR_NOTSTABLE, "DCAMERR_NOTSTABLE"},
    {DCAMERR_NOTBUSY, "DCAMERR_NOTBUSY"},
    {DCAMERR_EXCLUDED, "DCAMERR_EXCLUDED"},
    {DCAMERR_ABORT, "DCAMERR_ABORT"},
    {DCAMERR_TIMEOUT, "DCAMERR_TIMEOUT"},
    {DCAMERR_NORESOURCE, "DCAMERR_NORESOURCE"},
    {DCAMERR_NOMEMORY, "DCAMERR_NOMEMORY"},
    {DCAMERR_NOMODULE, "DCAMERR_NOMODULE"},
    {DCAMERR_NODRIVER, "DCAMERR_NODRIVER"},
    {DCAMERR_NOCAMERA, "DCAMERR_NOCAMERA"},
    {DCAMERR_INVALIDMODULE, "DCAMERR_INVALIDMODULE"},
    {DCAMERR_LOSTFRAME, "DCAMERR_LOSTFRAME"},
    {DCAMERR_INVALIDCAMERA, "DCAMERR_INVALIDCAMERA"},
    {DCAMERR_INVALIDHANDLE, "DCAMERR_INVALIDHANDLE"},
    {DCAMERR_INVALIDPARAM, "DCAMERR_INVALIDPARAM"},
    {DCAMERR_INVALIDVALUE, "DCAMERR_INVALIDVALUE"},
    {DCAMERR_OUTOFRANGE, "DCAMERR_OUTOFRANGE"},
    {DCAMERR_NOTWRITABLE, "DCAMERR_NOTWRITABLE"},
    {DCAMERR_INVALIDSUBARRAY, "DCAMERR_INVALIDSUBARRAY"},
    {DCAMERR_INVALIDFRAMEINDEX, "DCAMERR_INVALIDFRAMEINDEX"},
    {DCAMERR_UNREACH, "DCAMERR_UNREACH"},
    {DCAMERR_NOTSUPPORT, "DCAMERR_NOTSUPPORT"},
    {DCAMERR_NOCONNECTION, "DCAMERR_NOCONNECTION"},
    {DCAMERR_FAILOPEN, "DCAMERR_FAILOPEN"},
    {DCAMERR_FAILOPENCAMERA, "DCAMERR_FAILOPENCAMERA"},
    {DCAMERR_DEVICEPROBLEM, "DCAMERR_DEVICEPROBLEM"},
    {DCAMERR_INVALIDWAITHANDLE, "DCAMERR_INVALIDWAITHANDLE"},
};

#define ERROR_NAME_COUNT ((int)(sizeof error_names / sizeof error_names[0]))

static const char *error_name(DCAMERR code)
{
    for (int k = 0; k < ERROR_NAME_COUNT; k++)
        if (error_names[k].code == code)
            return error_names[k].name;
    return NULL;
}

/* The fake's own diagnostics: a configuration it cannot use is reported here, and
   dcamapi_init fails with DCAMERR_INVALIDMODULE (the fake's choice). */
__attribute__((format(printf, 1, 2))) static DCAMERR config_error(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    fputs("fake_dcam: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    return DCAMERR_INVALIDMODULE;
}

static char *trim(char *text)
{
    while (*text == ' ' || *text == '\t')
        text++;
    char *end = text + strlen(text);
    while (end > text && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
        *--end = '\0';
    return text;
}

static int parse_count(const char *text, int64_t *value)
{
    char *end;
    errno = 0;
    long long parsed = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || parsed < 0)
        return 0;
    *value = parsed;
    return 1;
}

/* A positive time in ms (or zero or more with zero_ok); 0 when text is not one. */
static int parse_ms(const char *text, int zero_ok, double *value)
{
    char *end;
    errno = 0;
    double parsed = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(parsed) || parsed < 0.0
        || (parsed == 0.0 && !zero_ok))
        return 0;
    *value = parsed;
    return 1;
}

/* open_error: a DCAMERR_* name of the table above, or a failure code in hex or decimal. */
static int parse_error_code(const char *text, DCAMERR *code)
{
    for (int k = 0; k < ERROR_NAME_COUNT; k++)
        if (strcmp(text, error_names[k].name) == 0) {
            *code = error_names[k].code;
            return 1;
        }
    char *end;
    errno = 0;
    long long parsed = strtoll(text, &end, 0);
    if (errno != 0 || end == text || *end != '\0' || parsed < INT32_MIN || parsed > UINT32_MAX)
        return 0;
    *code = (DCAMERR)(uint32_t)(parsed & 0xFFFFFFFF);
    return *code < 0;
}

static DCAMERR apply_config_key(config *cfg, const char *key, const char *value,
                                const char *where)
{
    int ok = 1;
    if (strcmp(key, "model") == 0) {
        cfg->m = NULL;
        for (int k = 0; k < MODEL_COUNT; k++)
            if (strcmp(value, models[k].series) == 0 || strcmp(value, models[k].number) == 0)
                cfg->m = &models[k];
        if (cfg->m == NULL)
            return config_error("%s: model '%s': the fake simulates ORCA-Flash4.0 V3, "
                                "ORCA-Fusion and ORCA-Lightning", where, value);
    } else if (strcmp(key, "camera_id") == 0) {
        if (value[0] == '\0' || strlen(value) >= ID_SIZE)
            return config_error("%s: camera_id must have 1 to %d characters", where,
                                ID_SIZE - 1);
        snprintf(cfg->camera_id, sizeof cfg->camera_id, "%s", value);
    } else if (strcmp(key, "trigger_period_ms") == 0) {
        ok = parse_ms(value, 0, &cfg->trigger_period_ms);
    } else if (strcmp(key, "trigger_delay_ms") == 0) {
        ok = parse_ms(value, 1, &cfg->trigger_delay_ms);
    } else if (strcmp(key, "trigger_width_ms") == 0) {
        ok = parse_ms(value, 0, &cfg->trigger_width_ms);
    } else {
        return config_error("%s: unknown key '%s'", where, key);
    }
    if (!ok)
        return config_error("%s: bad value '%s' of key '%s'", where, value, key);
    return DCAMERR_SUCCESS;
}

static DCAMERR read_config_file(config *cfg, const char *path)
{
    FILE *file = fopen(path, "r");
    if (file == NULL)
        return config_error("cannot open %s (%s): %s", path, CONFIG_ENV, strerror(errno));
    char line[LINE_SIZE], where[LINE_SIZE + 32];
    DCAMERR code = DCAMERR_SUCCESS;
    for (int number = 1; code > 0 && fgets(line, sizeof line, file) != NULL; number++) {
        snprintf(where, sizeof where, "%s line %d", path, number);
        char *text = trim(line);
        if (text[0] == '\0' || text[0] == '#')
            continue;
        char *equals = strchr(text, '=');
        if (equals == NULL) {
            code = config_error("%s: expected 'key = value', got '%s'", where, text);
            break;
        }
        *equals = '\0';
        code = apply_config_key(cfg, trim(text), trim(equals + 1), where);
    }
    fclose(file);
    if (code > 0 && cfg->trigger_width_ms >= cfg->trigger_period_ms)
        code = config_error("%s: trigger_width_ms %g must be shorter than trigger_period_ms %g",
                            path, cfg->trigger_width_ms, cfg->trigger_period_ms);
    return code;
}

static DCAMERR apply_fault(config *cfg, const char *key, char *value)
{
    if (strcmp(key, "drop_frame") == 0) {
        char *save = NULL;
        for (char *item = strtok_r(value, ",", &save); item != NULL;
             item = strtok_r(NULL, ",", &save)) {
            if (cfg->drop_count == MAX_DROPS)
                return config_error("%s: more than %d frames to drop", FAULTS_ENV, MAX_DROPS);
            if (!parse_count(trim(item), &cfg->drops[cfg->drop_count]))
                return config_error("%s: drop_frame '%s' is not a frame number", FAULTS_ENV,
                                    item);
            cfg->drop_count++;
        }
        return DCAMERR_SUCCESS;
    }
    int timeout = strcmp(key, "timeout_after") == 0;
    if (timeout || strcmp(key, "vanish_after") == 0) {
        if (!parse_count(value, timeout ? &cfg->timeout_after : &cfg->vanish_after))
            return config_error("%s: %s '%s' is not a number of frames", FAULTS_ENV, key,
                                value);
        return DCAMERR_SUCCESS;
    }
    if (strcmp(key, "open_error") == 0) {
        if (!parse_error_code(value, &cfg->open_error))
            return config_error("%s: open_error '%s' is neither a DCAMERR_* name the fake "
                                "knows nor a failure code (0x8...)", FAULTS_ENV, value);
        cfg->has_open_error = 1;
        return DCAMERR_SUCCESS;
    }
    return config_error("%s: unknown key '%s' (drop_frame, timeout_after, vanish_after, "
                        "open_error)", FAULTS_ENV, key);
}

/* DCAM_FAKE_FAULTS: "key=value;key=value". */
static DCAMERR read_faults(config *cfg)
{
    const char *env = getenv(FAULTS_ENV);
    if (env == NULL || env[0] == '\0')
        return DCAMERR_SUCCESS;
    char *copy = strdup(env);
    if (copy == NULL)
        return DCAMERR_NOMEMORY;
    DCAMERR code = DCAMERR_SUCCESS;
    char *save = NULL;
    for (char *item = strtok_r(copy, ";", &save); code > 0 && item != NULL;
         item = strtok_r(NULL, ";", &save)) {
        item = trim(item);
        if (item[0] == '\0')
            continue;
        char *equals = strchr(item, '=');
        if (equals == NULL) {
            code = config_error("%s: expected key=value, got '%s'", FAULTS_ENV, item);
            break;
        }
        *equals = '\0';
        code = apply_fault(cfg, trim(item), trim(equals + 1));
    }
    free(copy);
    return code;
}

static DCAMERR read_config(config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->m = &models[0];
    snprintf(cfg->camera_id, sizeof cfg->camera_id, "S/N: 000001");
    cfg->trigger_period_ms = 10.0;
    cfg->trigger_delay_ms = 0.0;
    cfg->trigger_width_ms = 1.0;
    cfg->timeout_after = -1;
    cfg->vanish_after = -1;
    const char *path = getenv(CONFIG_ENV);
    DCAMERR code = DCAMERR_SUCCESS;
    if (path != NULL && path[0] != '\0')
        code = read_config_file(cfg, path);
    if (code > 0)
        code = read_faults(cfg);
    return code;
}

/* ---- state ------------------------------------------------------------------------ */

/* The property values a caller sets. */
typedef struct {
    double exposure_s;
    int32_t source, mode, active;
    int32_t pixeltype, bits;
    int32_t subarray, hpos, hsize, vpos, vsize;
} settings;

/* The image the settings give, fixed for a buffer (the properties that change it are
   writable only without one). */
typedef struct {
    int32_t width, height, left, top;
    int32_t pixeltype, bits;
    int32_t rowbytes;
    size_t framebytes;
} geometry;

typedef struct {
    int64_t number;              /* the frame in this slot, -1 when none yet */
    int64_t due_ns;
} slot;

typedef struct wait_session {
    struct wait_session *next;
    uintptr_t token;             /* the HDCAMWAIT handed out */
    int64_t session;             /* the capture the seen_* counts refer to */
    int64_t seen_frames;         /* events already reported by this handle */
    int64_t seen_cycles;
    int64_t seen_stops;
    uint64_t aborts;             /* dcamwait_abort calls; a waiter that sees it change ends */
    int waiters;                 /* threads inside dcamwait_start on this handle */
    int closing;
} wait_session;

typedef struct {
    uintptr_t token;             /* the HDCAM handed out */
    const model *m;
    settings set;
    int vanished;

    int32_t frames;              /* buffer frames, 0 without a buffer */
    geometry geo;
    unsigned char *buffer;
    slot *slots;
    uint16_t *ramp;              /* ramp[i] = i & mask: a row of pixels is a window of it */
    int64_t newest;              /* buffer index of the newest frame written, -1 before */

    int busy;
    int snap;
    int64_t session;             /* dcamcap_start calls */
    int64_t start_ns, start_real_ns;
    int64_t count;               /* frames captured since the start, dropped ones included */
    int64_t written;             /* of those, written into the buffer */
    int64_t lost;
    int64_t stops;               /* captures ended, by dcamcap_stop or a full SNAP */
    int64_t base_k, base_ns;     /* frame and time the present trigger timing counts from */
    int64_t *sw_due;             /* SOFTWARE: due time of frame base_k + i, per trigger */
    size_t sw_count, sw_capacity;
    int64_t sw_last_start;       /* start of the last software-triggered exposure */

    wait_session *waits;
} camera;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed;   /* CLOCK_MONOTONIC; broadcast on every change waiters need */
static pthread_once_t changed_once = PTHREAD_ONCE_INIT;
static int initialised;
static config cfg;
static camera *opened;
static uintptr_t last_token = 0x10000000;

static void init_changed(void)
{
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&changed, &attributes);
    pthread_condattr_destroy(&attributes);
}

static void enter(void)
{
    pthread_once(&changed_once, init_changed);
    pthread_mutex_lock(&lock);
}

static DCAMERR leave(DCAMERR code)
{
    pthread_mutex_unlock(&lock);
    return code;
}

/* Handles are tokens, never dereferenced: a stale one is recognised as such, even when
   memory is reused, and does not alias a newer device. */
static uintptr_t new_token(void)
{
    last_token += 0x10;
    return last_token;
}

static int64_t clock_ns(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int64_t now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

static int64_t s_to_ns(double seconds)
{
    double ns = seconds * 1e9;
    return ns >= (double)NEVER_NS ? NEVER_NS : (int64_t)llround(ns);
}

static int64_t ceil_div(int64_t a, int64_t b)
{
    return a <= 0 ? 0 : (a + b - 1) / b;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* ---- image geometry and timing ----------------------------------------------------- */

static int is_packed(int32_t pixeltype)
{
    return pixeltype == DCAM_PIXELTYPE_MONO12 || pixeltype == DCAM_PIXELTYPE_MONO12P;
}

static geometry geometry_of(const camera *c)
{
    const settings *s = &c->set;
    geometry g;
    int on = s->subarray == DCAMPROP_MODE__ON;
    g.width = on ? s->hsize : c->m->width;
    g.height = on ? s->vsize : c->m->height;
    g.left = on ? s->hpos : 0;
    g.top = on ? s->vpos : 0;
    g.pixeltype = s->pixeltype;
    g.bits = s->bits;
    int64_t used = s->pixeltype == DCAM_PIXELTYPE_MONO8 ? g.width
                   : is_packed(s->pixeltype)           ? (3 * (int64_t)g.width + 1) / 2
                                                       : 2 * (int64_t)g.width;
    g.rowbytes = (int32_t)((used + ROW_ALIGN - 1) / ROW_ALIGN * ROW_ALIGN);
    g.framebytes = (size_t)g.rowbytes * (size_t)g.height;
    return g;
}

/* Readout of the rows of the subarray (AREA mode: rows x the model's row time), and the
   internal frame interval: the next exposure overlaps the readout, so a frame takes the
   longer of the two (the fake's timing model). */
static double readout_s(const camera *c)
{
    return geometry_of(c).height * c->m->row_s;
}

static double interval_s(const camera *c)
{
    double readout = readout_s(c);
    return c->set.exposure_s > readout ? c->set.exposure_s : readout;
}

/* When frame k of the capture is ready (exposed and read out), on the monotonic clock;
   NEVER_NS when nothing makes it happen yet (a software trigger not fired). A change of
   timing while capturing restarts the count at base_k, base_ns. The external input sees
   the fake's pulse generator: pulses at start + delay + i * period, each of the given
   width; a pulse that comes while the camera is still busy with the last frame is
   ignored, so a frame uses every `every`-th pulse. */
static int64_t frame_due_ns(const camera *c, int64_t k)
{
    const settings *s = &c->set;
    int64_t j = k - c->base_k;
    int64_t exposure = s_to_ns(s->exposure_s), readout = s_to_ns(readout_s(c));
    int64_t cycle = s_to_ns(interval_s(c));
    if (s->source == DCAMPROP_TRIGGERSOURCE__SOFTWARE)
        return (size_t)j < c->sw_count ? c->sw_due[j] : NEVER_NS;
    if (s->source == DCAMPROP_TRIGGERSOURCE__INTERNAL)
        return c->base_ns + j * cycle + exposure + readout;
    int64_t first = c->start_ns + s_to_ns(cfg.trigger_delay_ms / 1e3);
    if (s->mode == DCAMPROP_TRIGGER_MODE__START)
        return max64(c->base_ns, first) + j * cycle + exposure + readout;
    int64_t period = s_to_ns(cfg.trigger_period_ms / 1e3);
    int64_t next = first + ceil_div(c->base_ns - first, period) * period;
    if (s->active == DCAMPROP_TRIGGERACTIVE__LEVEL) {
        int64_t width = s_to_ns(cfg.trigger_width_ms / 1e3);
        int64_t every = max64(1, ceil_div(max64(width, readout), period));
        return next + j * every * period + width + readout;
    }
    if (s->active == DCAMPROP_TRIGGERACTIVE__SYNCREADOUT) {
        int64_t every = max64(1, ceil_div(readout, period));
        return next + (j + 1) * every * period + readout;
    }
    int64_t every = max64(1, ceil_div(cycle, period));
    return next + j * every * period + exposure + readout;
}

static int is_dropped(int64_t k)
{
    for (int i = 0; i < cfg.drop_count; i++)
        if (cfg.drops[i] == k)
            return 1;
    return 0;
}

/* The time the next change of the capture is due: the next frame, or the device
   vanishing in its place. NEVER_NS when none will come. */
static int64_t next_due_ns(const camera *c)
{
    if (!c->busy || c->vanished)
        return NEVER_NS;
    int64_t k = c->count;
    int64_t due = frame_due_ns(c, k);
    if (cfg.vanish_after >= 0 && k >= cfg.vanish_after)
        return due;
    if (cfg.timeout_after >= 0 && k >= cfg.timeout_after)
        return NEVER_NS;
    return due;
}

/* ---- frames ------------------------------------------------------------------------ */

static void fill_frame(camera *c, int64_t k, unsigned char *out)
{
    const geometry *g = &c->geo;
    uint32_t mask = (1u << g->bits) - 1u;
    uint64_t offset = (uint64_t)k * 7u + (uint64_t)g->left;
    for (int32_t r = 0; r < g->height; r++) {
        const uint16_t *v = c->ramp + ((offset + (uint64_t)(g->top + r) * 3u) & mask);
        unsigned char *row = out + (size_t)r * (size_t)g->rowbytes;
        size_t used;
        if (g->pixeltype == DCAM_PIXELTYPE_MONO16) {
            used = (size_t)g->width * 2;
            memcpy(row, v, used);
        } else if (g->pixeltype == DCAM_PIXELTYPE_MONO8) {
            used = (size_t)g->width;
            for (int32_t x = 0; x < g->width; x++)
                row[x] = (unsigned char)v[x];
        } else {
            /* Research notes 3.9: MONO12 puts the high bits of the first pixel first,
               MONO12P the low bits; the middle byte holds both pixels' remaining nibbles. */
            int low_first = g->pixeltype == DCAM_PIXELTYPE_MONO12P;
            unsigned char *b = row;
            for (int32_t x = 0; x < g->width; x += 2) {
                uint16_t p0 = v[x], p1 = x + 1 < g->width ? v[x + 1] : 0;
                *b++ = (unsigned char)(low_first ? p0 & 0xFF : p0 >> 4);
                *b++ = (unsigned char)(((p1 & 0x0F) << 4) | (low_first ? p0 >> 8 : p0 & 0x0F));
                if (x + 1 < g->width)
                    *b++ = (unsigned char)(p1 >> 4);
            }
            used = (size_t)(b - row);
        }
        memset(row + used, 0, (size_t)g->rowbytes - used);
    }
}

static void write_slot(camera *c, int64_t k)
{
    int64_t index = k % c->frames;
    fill_frame(c, k, c->buffer + (size_t)index * c->geo.framebytes);
    c->slots[index].number = k;
    c->slots[index].due_ns = frame_due_ns(c, k);
}

/* Catch up with everything due by now: count the frames (a dropped one is counted but not
   written, as a frame lost on the way), end a SNAP whose buffer is full, let the device
   vanish; then write the frames still in the buffer after that, each slot once. */
static void advance(camera *c, int64_t now)
{
    int64_t first = c->count;
    while (next_due_ns(c) <= now) {
        if (cfg.vanish_after >= 0 && c->count >= cfg.vanish_after) {
            c->vanished = 1;
            c->busy = 0;
            break;
        }
        if (is_dropped(c->count))
            c->lost++;
        else
            c->written++;
        c->count++;
        if (c->snap && c->count == c->frames) {
            c->busy = 0;
            c->stops++;
        }
    }
    if (c->count == first)
        return;
    /* A frame's due time does not change once it is due, so write_slot can work it out
       now. A slot whose latest frame was dropped shows the one before it there, if that
       came in this catch-up; otherwise it keeps what it had. */
    for (int64_t k = max64(first, c->count - c->frames); k < c->count; k++) {
        int64_t shown = k;
        while (shown >= first && is_dropped(shown))
            shown -= c->frames;
        if (shown >= first)
            write_slot(c, shown);
    }
    for (int64_t k = c->count - 1; k >= first; k--)
        if (!is_dropped(k)) {
            c->newest = k % c->frames;
            break;
        }
}

/* Under the lock: the opened camera a handle names, caught up with now. */
static DCAMERR camera_of(HDCAM h, camera **out)
{
    camera *c = opened;
    if (c == NULL || (uintptr_t)h != c->token)
        return DCAMERR_INVALIDHANDLE;
    advance(c, now_ns());
    if (c->vanished)
        return DCAMERR_NOCAMERA;
    *out = c;
    return DCAMERR_SUCCESS;
}

static void buffer_free(camera *c)
{
    free(c->buffer);
    free(c->slots);
    free(c->ramp);
    c->buffer = NULL;
    c->slots = NULL;
    c->ramp = NULL;
    c->frames = 0;
    c->newest = -1;
    c->count = c->written = c->lost = 0;
}

/* Under the lock: end every wait on the camera (its waiters return DCAMERR_ABORT), wait
   until they are out, and free it. */
static void wait_free_all(camera *c)
{
    for (wait_session *w = c->waits; w != NULL; w = w->next)
        w->closing = 1;
    pthread_cond_broadcast(&changed);
    for (;;) {
        int inside = 0;
        for (wait_session *w = c->waits; w != NULL; w = w->next)
            inside += w->waiters;
        if (inside == 0)
            break;
        pthread_cond_wait(&changed, &lock);
    }
    while (c->waits != NULL) {
        wait_session *w = c->waits;
        c->waits = w->next;
        free(w);
    }
}

static void camera_close(camera *c)
{
    wait_free_all(c);
    buffer_free(c);
    free(c->sw_due);
    free(c);
    opened = NULL;
}

/* ---- properties -------------------------------------------------------------------- */

enum { IN_STABLE = 1, IN_READY = 2, IN_BUSY = 4, ALWAYS = IN_STABLE | IN_READY | IN_BUSY };

typedef struct {
    int32_t id;
    const char *name;
    int32_t type;
    int32_t unit;
} property;

static const property properties[] = {
    {DCAM_IDPROP_TRIGGERSOURCE, "TRIGGERSOURCE", DCAMPROP_TYPE_MODE, 0},
    {DCAM_IDPROP_TRIGGERACTIVE, "TRIGGERACTIVE", DCAMPROP_TYPE_MODE, 0},
    {DCAM_IDPROP_TRIGGER_MODE, "TRIGGER_MODE", DCAMPROP_TYPE_MODE, 0},
    {DCAM_IDPROP_EXPOSURETIME, "EXPOSURETIME", DCAMPROP_TYPE_REAL, DCAMPROP_UNIT_SECOND},
    {DCAM_IDPROP_SUBARRAYHPOS, "SUBARRAYHPOS", DCAMPROP_TYPE_LONG, 0},
    {DCAM_IDPROP_SUBARRAYHSIZE, "SUBARRAYHSIZE", DCAMPROP_TYPE_LONG, 0},
    {DCAM_IDPROP_SUBARRAYVPOS, "SUBARRAYVPOS", DCAMPROP_TYPE_LONG, 0},
    {DCAM_IDPROP_SUBARRAYVSIZE, "SUBARRAYVSIZE", DCAMPROP_TYPE_LONG, 0},
    {DCAM_IDPROP_SUBARRAYMODE, "SUBARRAYMODE", DCAMPROP_TYPE_MODE, 0},
    {DCAM_IDPROP_TIMING_READOUTTIME, "TIMING_READOUTTIME", DCAMPROP_TYPE_REAL,
     DCAMPROP_UNIT_SECOND},
    {DCAM_IDPROP_INTERNALFRAMERATE, "INTERNALFRAMERATE", DCAMPROP_TYPE_REAL,
     DCAMPROP_UNIT_PERSECOND},
    {DCAM_IDPROP_INTERNAL_FRAMEINTERVAL, "INTERNAL_FRAMEINTERVAL", DCAMPROP_TYPE_REAL,
     DCAMPROP_UNIT_SECOND},
    {DCAM_IDPROP_TRANSFERINFO_FRAMECOUNT, "TRANSFERINFO_FRAMECOUNT", DCAMPROP_TYPE_LONG, 0},
    {DCAM_IDPROP_TRANSFERINFO_LOSTCOUNT, "TRANSFERINFO_LOSTCOUNT", DCAMPROP_TYPE_LONG, 0},
    {DCAM_IDPROP_BITSPERCHANNEL, "BITSPERCHANNEL", DCAMPROP_TYPE_LONG, 0},
    {DCAM_IDPROP_IMAGE_WIDTH, "IMAGE_WIDTH", DCAMPROP_TYPE_LONG, 0},
    {DCAM_IDPROP_IMAGE_HEIGHT, "IMAGE_HEIGHT", DCAMPROP_TYPE_LONG, 0},
    {DCAM_IDPROP_IMAGE_ROWBYTES, "IMAGE_ROWBYTES", DCAMPROP_TYPE_LONG, 0},
    {DCAM_IDPROP_IMAGE_FRAMEBYTES, "IMAGE_FRAMEBYTES", DCAMPROP_TYPE_LONG, 0},
    {DCAM_IDPROP_IMAGE_PIXELTYPE, "IMAGE_PIXELTYPE", DCAMPROP_TYPE_MODE, 0},
    {DCAM_IDPROP_IMAGEDETECTOR_PIXELWIDTH, "IMAGEDETECTOR_PIXELWIDTH", DCAMPROP_TYPE_REAL,
     DCAMPROP_UNIT_MICROMETER},
    {DCAM_IDPROP_IMAGEDETECTOR_PIXELHEIGHT, "IMAGEDETECTOR_PIXELHEIGHT", DCAMPROP_TYPE_REAL,
     DCAMPROP_UNIT_MICROMETER},
    {DCAM_IDPROP_IMAGEDETECTOR_PIXELNUMHORZ, "IMAGEDETECTOR_PIXELNUMHORZ", DCAMPROP_TYPE_LONG,
     0},
    {DCAM_IDPROP_IMAGEDETECTOR_PIXELNUMVERT, "IMAGEDETECTOR_PIXELNUMVERT", DCAMPROP_TYPE_LONG,
     0},
};

#define PROPERTY_COUNT ((int)(sizeof properties / sizeof properties[0]))

static const property *property_of(int32_t id)
{
    for (int k = 0; k < PROPERTY_COUNT; k++)
        if (properties[k].id == id)
            return &properties[k];
    return NULL;
}

/* In which states a property may be written (H3's Stable/Ready/Busy columns; 0: never). */
static int writable_in(const camera *c, int32_t id)
{
    switch (id) {
    case DCAM_IDPROP_TRIGGERSOURCE:
    case DCAM_IDPROP_EXPOSURETIME:
        return ALWAYS;
    case DCAM_IDPROP_TRIGGER_MODE:
        return c->m->trigger_mode_in_busy ? ALWAYS : IN_STABLE | IN_READY;
    case DCAM_IDPROP_TRIGGERACTIVE:
        return IN_STABLE | IN_READY;
    case DCAM_IDPROP_SUBARRAYHPOS:
    case DCAM_IDPROP_SUBARRAYHSIZE:
    case DCAM_IDPROP_SUBARRAYVPOS:
    case DCAM_IDPROP_SUBARRAYVSIZE:
    case DCAM_IDPROP_SUBARRAYMODE:
    case DCAM_IDPROP_IMAGE_PIXELTYPE:
        return IN_STABLE;
    case DCAM_IDPROP_BITSPERCHANNEL:
        return c->m->bits_writable ? IN_STABLE : 0;
    default:
        return 0;
    }
}

typedef struct {
    double min, max, step, def;
    int has_range, has_step, has_default;
} range;

static range range_of(const camera *c, int32_t id)
{
    const model *m = c->m;
    range r = {0.0, 0.0, 0.0, 0.0, 1, 0, 1};
    switch (id) {
    case DCAM_IDPROP_TRIGGERSOURCE:
        r.min = DCAMPROP_TRIGGERSOURCE__INTERNAL;
        r.max = DCAMPROP_TRIGGERSOURCE__SOFTWARE;
        r.def = DCAMPROP_TRIGGERSOURCE__INTERNAL;
        break;
    case DCAM_IDPROP_TRIGGERACTIVE:
        r.min = DCAMPROP_TRIGGERACTIVE__EDGE;
        r.max = DCAMPROP_TRIGGERACTIVE__SYNCREADOUT;
        r.def = DCAMPROP_TRIGGERACTIVE__EDGE;
        break;
    case DCAM_IDPROP_TRIGGER_MODE:
        r.min = r.def = DCAMPROP_TRIGGER_MODE__NORMAL;
        r.max = DCAMPROP_TRIGGER_MODE__START;
        break;
    case DCAM_IDPROP_EXPOSURETIME:
        r = (range){m->exposure_min, m->exposure_max, 1e-8, m->exposure_default, 1, 1, 1};
        break;
    case DCAM_IDPROP_SUBARRAYHPOS:
        r = (range){0, m->width - m->hstep, m->hstep, 0, 1, 1, 1};
        break;
    case DCAM_IDPROP_SUBARRAYHSIZE:
        r = (range){m->hstep, m->width, m->hstep, m->width, 1, 1, 1};
        break;
    case DCAM_IDPROP_SUBARRAYVPOS:
        r = (range){0, m->height - m->vstep, m->vstep, 0, 1, 1, 1};
        break;
    case DCAM_IDPROP_SUBARRAYVSIZE:
        r = (range){m->vstep, m->height, m->vstep, m->height, 1, 1, 1};
        break;
    case DCAM_IDPROP_SUBARRAYMODE:
        r.min = r.def = DCAMPROP_MODE__OFF;
        r.max = DCAMPROP_MODE__ON;
        break;
    case DCAM_IDPROP_IMAGE_PIXELTYPE:
        r.min = 0x7FFF;
        for (int k = 0; k < 3 && m->pixeltypes[k] != 0; k++) {
            r.min = fmin(r.min, m->pixeltypes[k]);
            r.max = fmax(r.max, m->pixeltypes[k]);
        }
        r.def = DCAM_PIXELTYPE_MONO16;
        break;
    case DCAM_IDPROP_BITSPERCHANNEL:
        /* H3: 12 to 16 in steps of 4 with MONO16; the fake's choice: 12 with the packed
           types, 8 with MONO8. */
        if (c->set.pixeltype == DCAM_PIXELTYPE_MONO8)
            r.min = r.max = r.def = 8;
        else if (is_packed(c->set.pixeltype))
            r.min = r.max = r.def = 12;
        else if (!m->bits_writable)
            r.min = r.max = r.def = m->default_bits;
        else
            r = (range){12, 16, 4, m->default_bits, 1, 1, 1};
        break;
    default:
        r.has_range = r.has_default = 0;
        break;
    }
    return r;
}

static int value_of(const camera *c, int32_t id, double *value)
{
    const settings *s = &c->set;
    geometry g = geometry_of(c);
    switch (id) {
    case DCAM_IDPROP_TRIGGERSOURCE: *value = s->source; break;
    case DCAM_IDPROP_TRIGGERACTIVE: *value = s->active; break;
    case DCAM_IDPROP_TRIGGER_MODE: *value = s->mode; break;
    case DCAM_IDPROP_EXPOSURETIME: *value = s->exposure_s; break;
    case DCAM_IDPROP_SUBARRAYHPOS: *value = s->hpos; break;
    case DCAM_IDPROP_SUBARRAYHSIZE: *value = s->hsize; break;
    case DCAM_IDPROP_SUBARRAYVPOS: *value = s->vpos; break;
    case DCAM_IDPROP_SUBARRAYVSIZE: *value = s->vsize; break;
    case DCAM_IDPROP_SUBARRAYMODE: *value = s->subarray; break;
    case DCAM_IDPROP_TIMING_READOUTTIME: *value = readout_s(c); break;
    case DCAM_IDPROP_INTERNALFRAMERATE: *value = 1.0 / interval_s(c); break;
    case DCAM_IDPROP_INTERNAL_FRAMEINTERVAL: *value = interval_s(c); break;
    case DCAM_IDPROP_TRANSFERINFO_FRAMECOUNT: *value = (double)c->count; break;
    case DCAM_IDPROP_TRANSFERINFO_LOSTCOUNT: *value = (double)c->lost; break;
    case DCAM_IDPROP_BITSPERCHANNEL: *value = s->bits; break;
    case DCAM_IDPROP_IMAGE_WIDTH: *value = g.width; break;
    case DCAM_IDPROP_IMAGE_HEIGHT: *value = g.height; break;
    case DCAM_IDPROP_IMAGE_ROWBYTES: *value = g.rowbytes; break;
    case DCAM_IDPROP_IMAGE_FRAMEBYTES: *value = (double)g.framebytes; break;
    case DCAM_IDPROP_IMAGE_PIXELTYPE: *value = s->pixeltype; break;
    case DCAM_IDPROP_IMAGEDETECTOR_PIXELWIDTH:
    case DCAM_IDPROP_IMAGEDETECTOR_PIXELHEIGHT: *value = c->m->pixel_um; break;
    case DCAM_IDPROP_IMAGEDETECTOR_PIXELNUMHORZ: *value = c->m->width; break;
    case DCAM_IDPROP_IMAGEDETECTOR_PIXELNUMVERT: *value = c->m->height; break;
    default: return 0;
    }
    return 1;
}

static int offers_pixeltype(const model *m, int32_t pixeltype)
{
    for (int k = 0; k < 3; k++)
        if (m->pixeltypes[k] != 0 && m->pixeltypes[k] == pixeltype)
            return 1;
    return 0;
}

/* Research notes 3.7 (H2): a value that is not one the property takes is INVALIDPARAM
   (none of these has AUTOROUNDING but EXPOSURETIME), one beyond its range OUTOFRANGE, and
   a subarray that does not fit on the sensor INVALIDSUBARRAY. */
static DCAMERR check_value(const camera *c, const property *p, const range *r, double value)
{
    if (!isfinite(value))
        return DCAMERR_INVALIDPARAM;
    if (p->type != DCAMPROP_TYPE_REAL && value != floor(value))
        return DCAMERR_INVALIDPARAM;
    double slack = p->type == DCAMPROP_TYPE_REAL ? 1e-12 : 0.0;
    if (r->has_range && (value < r->min - slack || value > r->max + slack))
        return DCAMERR_OUTOFRANGE;
    if (p->type == DCAMPROP_TYPE_LONG && r->has_step
        && fmod(value - r->min, r->step) != 0.0)
        return DCAMERR_INVALIDPARAM;
    int32_t whole = (int32_t)value;
    switch (p->id) {
    case DCAM_IDPROP_TRIGGER_MODE:
        if (whole != DCAMPROP_TRIGGER_MODE__NORMAL && whole != DCAMPROP_TRIGGER_MODE__START)
            return DCAMERR_INVALIDPARAM;
        break;
    case DCAM_IDPROP_IMAGE_PIXELTYPE:
        if (!offers_pixeltype(c->m, whole))
            return DCAMERR_INVALIDPARAM;
        break;
    default:
        break;
    }
    return DCAMERR_SUCCESS;
}

/* With SUBARRAYMODE ON (or being turned on) the area must lie on the sensor. */
static DCAMERR check_subarray(const camera *c, const settings *s)
{
    if (s->subarray != DCAMPROP_MODE__ON)
        return DCAMERR_SUCCESS;
    if (s->hpos + s->hsize > c->m->width || s->vpos + s->vsize > c->m->height)
        return DCAMERR_INVALIDSUBARRAY;
    return DCAMERR_SUCCESS;
}

/* Under the lock, the camera caught up: set a property, giving the value applied. */
static DCAMERR set_property(camera *c, int32_t id, double *value)
{
    const property *p = property_of(id);
    if (p == NULL)
        return DCAMERR_NOTSUPPORT;
    int allowed = writable_in(c, id);
    if (allowed == 0)
        return DCAMERR_NOTWRITABLE;
    if (c->busy && !(allowed & IN_BUSY))
        return DCAMERR_BUSY;
    if (!c->busy && c->frames > 0 && !(allowed & IN_READY))
        return DCAMERR_NOTSTABLE;
    range r = range_of(c, id);
    DCAMERR code = check_value(c, p, &r, *value);
    if (code < 0)
        return code;
    settings next = c->set;
    int32_t whole = (int32_t)*value;
    switch (id) {
    case DCAM_IDPROP_TRIGGERSOURCE: next.source = whole; break;
    case DCAM_IDPROP_TRIGGERACTIVE: next.active = whole; break;
    case DCAM_IDPROP_TRIGGER_MODE: next.mode = whole; break;
    case DCAM_IDPROP_EXPOSURETIME:
        /* AUTOROUNDING: to the step (a whole fraction of a second), kept within the range. */
        {
            double per_second = round(1.0 / r.step);
            double rounded = (double)llround(*value * per_second) / per_second;
            next.exposure_s = fmin(fmax(rounded, r.min), r.max);
        }
        break;
    case DCAM_IDPROP_SUBARRAYHPOS: next.hpos = whole; break;
    case DCAM_IDPROP_SUBARRAYHSIZE: next.hsize = whole; break;
    case DCAM_IDPROP_SUBARRAYVPOS: next.vpos = whole; break;
    case DCAM_IDPROP_SUBARRAYVSIZE: next.vsize = whole; break;
    case DCAM_IDPROP_SUBARRAYMODE: next.subarray = whole; break;
    case DCAM_IDPROP_IMAGE_PIXELTYPE:
        /* The pixel type sets the bits per channel (the fake's choice, see range_of). */
        next.pixeltype = whole;
        next.bits = whole == DCAM_PIXELTYPE_MONO8 ? 8 : is_packed(whole) ? 12 : c->m->default_bits;
        break;
    case DCAM_IDPROP_BITSPERCHANNEL: next.bits = whole; break;
    default: return DCAMERR_NOTWRITABLE;
    }
    code = check_subarray(c, &next);
    if (code < 0)
        return code;
    if (c->busy) {
        /* A change of timing while capturing: frames due so far keep their times (the
           camera was caught up by the caller), later ones follow the new setting. */
        c->base_k = c->count;
        c->base_ns = now_ns();
        c->sw_count = 0;
        c->sw_last_start = -NEVER_NS;
        pthread_cond_broadcast(&changed);
    }
    c->set = next;
    value_of(c, id, value);
    return DCAMERR_SUCCESS;
}

/* ---- strings ---------------------------------------------------------------------- */

static const char *string_of(const model *m, int32_t id)
{
    switch (id) {
    case DCAM_IDSTR_BUS: return "simulated (detector-daq fake_dcam)";
    case DCAM_IDSTR_CAMERAID: return cfg.camera_id;
    case DCAM_IDSTR_VENDOR: return "detector-daq fake_dcam, a simulator for tests";
    case DCAM_IDSTR_MODEL: return m->number;
    case DCAM_IDSTR_CAMERAVERSION:
    case DCAM_IDSTR_DRIVERVERSION:
    case DCAM_IDSTR_MODULEVERSION: return "fake_dcam 1.0";
    case DCAM_IDSTR_DCAMAPIVERSION: return "4.00";
    case DCAM_IDSTR_CAMERA_SERIESNAME: return m->series;
    default: return NULL;
    }
}

/* ---- the C API ---------------------------------------------------------------------- */

FAKE_EXPORT DCAMERR dcamapi_init(DCAMAPI_INIT *param)
{
    if (param == NULL || param->size < (int32_t)sizeof *param)
        return DCAMERR_INVALIDPARAM;
    enter();
    /* H2: one session at a time; the code for a second one is the fake's choice. */
    if (initialised)
        return leave(DCAMERR_EXCLUDED);
    DCAMERR code = read_config(&cfg);
    if (code < 0)
        return leave(code);
    initialised = 1;
    param->iDeviceCount = DEVICE_COUNT;
    return leave(DCAMERR_SUCCESS);
}

FAKE_EXPORT DCAMERR dcamapi_uninit(void)
{
    enter();
    if (opened != NULL)
        camera_close(opened);
    initialised = 0;
    return leave(DCAMERR_SUCCESS);
}

FAKE_EXPORT DCAMERR dcamdev_open(DCAMDEV_OPEN *param)
{
    if (param == NULL || param->size < (int32_t)sizeof *param)
        return DCAMERR_INVALIDPARAM;
    param->hdcam = NULL;
    enter();
    if (!initialised)
        return leave(DCAMERR_NOCAMERA);
    if (param->index < 0 || param->index >= DEVICE_COUNT)
        return leave(DCAMERR_INVALIDCAMERA);
    if (cfg.has_open_error)
        return leave(cfg.open_error);
    if (opened != NULL)
        return leave(DCAMERR_EXCLUDED);
    camera *c = calloc(1, sizeof *c);
    if (c == NULL)
        return leave(DCAMERR_NOMEMORY);
    c->token = new_token();
    c->m = cfg.m;
    c->set = (settings){c->m->exposure_default, DCAMPROP_TRIGGERSOURCE__INTERNAL,
                        DCAMPROP_TRIGGER_MODE__NORMAL, DCAMPROP_TRIGGERACTIVE__EDGE,
                        DCAM_PIXELTYPE_MONO16, c->m->default_bits, DCAMPROP_MODE__OFF, 0,
                        c->m->width, 0, c->m->height};
    c->newest = -1;
    opened = c;
    param->hdcam = (HDCAM)c->token;
    return leave(DCAMERR_SUCCESS);
}

FAKE_EXPORT DCAMERR dcamdev_close(HDCAM h)
{
    enter();
    if (opened == NULL || (uintptr_t)h != opened->token)
        return leave(DCAMERR_INVALIDHANDLE);
    camera_close(opened);
    return leave(DCAMERR_SUCCESS);
}

FAKE_EXPORT DCAMERR dcamdev_getstring(HDCAM h, DCAMDEV_STRING *param)
{
    if (param == NULL || param->size < (int32_t)sizeof *param || param->text == NULL
        || param->textbytes < 1)
        return DCAMERR_INVALIDPARAM;
    enter();
    const model *m;
    if ((uintptr_t)h < INDEX_LIMIT) {
        /* H2: before dcamdev_open, a device index in place of the handle. */
        if (!initialised || (uintptr_t)h >= DEVICE_COUNT)
            return leave(DCAMERR_INVALIDCAMERA);
        if (opened != NULL) {
            advance(opened, now_ns());
            if (opened->vanished)
                return leave(DCAMERR_NOCAMERA);
        }
        m = cfg.m;
    } else {
        camera *c = NULL;
        DCAMERR code = camera_of(h, &c);
        if (code < 0)
            return leave(code);
        m = c->m;
    }
    const char *text = param->iString < 0 ? error_name(param->iString)
                                          : string_of(m, param->iString);
    if (text == NULL)
        return leave(param->iString < 0 ? DCAMERR_INVALIDPARAM : DCAMERR_NOTSUPPORT);
    snprintf(param->text, (size_t)param->textbytes, "%s", text);
    return leave(DCAMERR_SUCCESS);
}

FAKE_EXPORT DCAMERR dcamprop_getattr(HDCAM h, DCAMPROP_ATTR *param)
{
    if (param == NULL || param->cbSize < (int32_t)sizeof *param)
        return DCAMERR_INVALIDPARAM;
    enter();
    camera *c = NULL;
    DCAMERR code = camera_of(h, &c);
    if (code < 0)
        return leave(code);
    const property *p = property_of(param->iProp);
    if (p == NULL)
        return leave(DCAMERR_NOTSUPPORT);
    range r = range_of(c, p->id);
    int allowed = writable_in(c, p->id);
    int32_t attribute = p->type | DCAMPROP_ATTR_READABLE;
    if (allowed != 0)
        attribute |= DCAMPROP_ATTR_WRITABLE;
    if (allowed & IN_READY)
        attribute |= DCAMPROP_ATTR_ACCESSREADY;
    if (allowed & IN_BUSY)
        attribute |= DCAMPROP_ATTR_ACCESSBUSY;
    if (r.has_range)
        attribute |= DCAMPROP_ATTR_HASRANGE;
    if (r.has_step)
        attribute |= DCAMPROP_ATTR_HASSTEP;
    if (r.has_default)
        attribute |= DCAMPROP_ATTR_HASDEFAULT;
    if (p->id == DCAM_IDPROP_EXPOSURETIME)
        attribute |= DCAMPROP_ATTR_AUTOROUNDING;
    param->attribute = attribute;
    param->iUnit = p->unit;
    param->valuemin = r.min;
    param->valuemax = r.max;
    param->valuestep = r.step;
    param->valuedefault = r.def;
    /* A success other than DCAMERR_SUCCESS, as the SDK may give (research notes 3.1), so
       that a caller testing "== DCAMERR_SUCCESS" fails against the fake too. */
    return leave((DCAMERR)sizeof *param);
}

FAKE_EXPORT DCAMERR dcamprop_getvalue(HDCAM h, int32_t iProp, double *pValue)
{
    if (pValue == NULL)
        return DCAMERR_INVALIDPARAM;
    enter();
    camera *c = NULL;
    DCAMERR code = camera_of(h, &c);
    if (code < 0)
        return leave(code);
    return leave(value_of(c, iProp, pValue) ? DCAMERR_SUCCESS : DCAMERR_NOTSUPPORT);
}

FAKE_EXPORT DCAMERR dcamprop_setvalue(HDCAM h, int32_t iProp, double fValue)
{
    enter();
    camera *c = NULL;
    DCAMERR code = camera_of(h, &c);
    if (code < 0)
        return leave(code);
    return leave(set_property(c, iProp, &fValue));
}

FAKE_EXPORT DCAMERR dcamprop_setgetvalue(HDCAM h, int32_t iProp, double *pValue, int32_t option)
{
    if (pValue == NULL || option != 0)
        return DCAMERR_INVALIDPARAM;
    enter();
    camera *c = NULL;
    DCAMERR code = camera_of(h, &c);
    if (code < 0)
        return leave(code);
    return leave(set_property(c, iProp, pValue));
}

FAKE_EXPORT DCAMERR dcambuf_alloc(HDCAM h, int32_t framecount)
{
    enter();
    camera *c = NULL;
    DCAMERR code = camera_of(h, &c);
    if (code < 0)
        return leave(code);
    if (c->busy)
        return leave(DCAMERR_BUSY);
    if (framecount < 1)
        return leave(DCAMERR_INVALIDPARAM);
    buffer_free(c);
    geometry g = geometry_of(c);
    uint32_t mask = (1u << g.bits) - 1u;
    size_t ramp_length = (size_t)mask + 1 + (size_t)g.width;
    if ((size_t)framecount > SIZE_MAX / g.framebytes)
        return leave(DCAMERR_NOMEMORY);
    c->buffer = malloc((size_t)framecount * g.framebytes);
    c->slots = malloc((size_t)framecount * sizeof *c->slots);
    c->ramp = malloc(ramp_length * sizeof *c->ramp);
    if (c->buffer == NULL || c->slots == NULL || c->ramp == NULL) {
        buffer_free(c);
        return leave(DCAMERR_NOMEMORY);
    }
    for (size_t i = 0; i < ramp_length; i++)
        c->ramp[i] = (uint16_t)(i & mask);
    for (int32_t k = 0; k < framecount; k++)
        c->slots[k].number = -1;
    c->frames = framecount;
    c->geo = g;
    return leave(DCAMERR_SUCCESS);
}

FAKE_EXPORT DCAMERR dcambuf_release(HDCAM h, int32_t iKind)
{
    enter();
    camera *c = NULL;
    DCAMERR code = camera_of(h, &c);
    if (code < 0)
        return leave(code);
    if (iKind != DCAMBUF_ATTACHKIND_FRAME)
        return leave(DCAMERR_INVALIDPARAM);
    if (c->busy)
        return leave(DCAMERR_BUSY);
    buffer_free(c);
    pthread_cond_broadcast(&changed);
    return leave(DCAMERR_SUCCESS);
}

FAKE_EXPORT DCAMERR dcambuf_lockframe(HDCAM h, DCAMBUF_FRAME *pFrame)
{
    if (pFrame == NULL || pFrame->size < (int32_t)sizeof *pFrame)
        return DCAMERR_INVALIDPARAM;
    enter();
    camera *c = NULL;
    DCAMERR code = camera_of(h, &c);
    if (code < 0)
        return leave(code);
    /* No buffer: the fake's choice of code. */
    if (c->frames == 0)
        return leave(DCAMERR_NOTREADY);
    int32_t index = pFrame->iFrame;
    if (index < -1 || index >= c->frames)
        return leave(DCAMERR_INVALIDFRAMEINDEX);
    if (index == -1)
        index = (int32_t)c->newest;
    /* H2: a frame not filled yet is DCAMERR_BUSY. */
    if (index < 0 || c->slots[index].number < 0)
        return leave(DCAMERR_BUSY);
    const slot *s = &c->slots[index];
    int64_t real_ns = c->start_real_ns + (s->due_ns - c->start_ns);
    pFrame->iFrame = index;
    pFrame->buf = c->buffer + (size_t)index * c->geo.framebytes;
    pFrame->rowbytes = c->geo.rowbytes;
    pFrame->type = c->geo.pixeltype;
    pFrame->width = c->geo.width;
    pFrame->height = c->geo.height;
    pFrame->timestamp.sec = (uint32_t)(real_ns / 1000000000);
    pFrame->timestamp.microsec = (int32_t)(real_ns % 1000000000 / 1000);
    pFrame->framestamp = (int32_t)(s->number & INT32_MAX);
    pFrame->camerastamp = 0;
    return leave(DCAMERR_SUCCESS);
}

FAKE_EXPORT DCAMERR dcamcap_start(HDCAM h, int32_t mode)
{
    enter();
    camera *c = NULL;
    DCAMERR code = camera_of(h, &c);
    if (code < 0)
        return leave(code);
    if (mode != DCAMCAP_START_SEQUENCE && mode != DCAMCAP_START_SNAP)
        return leave(DCAMERR_INVALIDPARAM);
    if (c->busy)
        return leave(DCAMERR_BUSY);
    /* H2: starting without a buffer fails; the code is the fake's choice. */
    if (c->frames == 0)
        return leave(DCAMERR_NOTREADY);
    for (int32_t k = 0; k < c->frames; k++)
        c->slots[k].number = -1;
    c->busy = 1;
    c->snap = mode == DCAMCAP_START_SNAP;
    c->session++;
    c->start_ns = c->base_ns = now_ns();
    c->start_real_ns = clock_ns(CLOCK_REALTIME);
    c->count = c->written = c->lost = c->base_k = 0;
    c->newest = -1;
    c->sw_count = 0;
    c->sw_last_start = -NEVER_NS;
    pthread_cond_broadcast(&changed);
    return leave(DCAMERR_SUCCESS);
}

FAKE_EXPORT DCAMERR dcamcap_stop(HDCAM h)
{
    enter();
    camera *c = NULL;
    DCAMERR code = camera_of(h, &c);
    if (code < 0)
        return leave(code);
    if (c->busy) {
        c->busy = 0;
        c->stops++;
        pthread_cond_broadcast(&changed);
    }
    return leave(DCAMERR_SUCCESS);
}

FAKE_EXPORT DCAMERR dcamcap_status(HDCAM h, int32_t *pStatus)
{
    if (pStatus == NULL)
        return DCAMERR_INVALIDPARAM;
    enter();
    camera *c = NULL;
    DCAMERR code = camera_of(h, &c);
    if (code < 0)
        return leave(code);
    *pStatus = c->busy ? DCAMCAP_STATUS_BUSY
               : c->frames > 0 ? DCAMCAP_STATUS_READY
                               : DCAMCAP_STATUS_STABLE;
    return leave(DCAMERR_SUCCESS);
}

FAKE_EXPORT DCAMERR dcamcap_transferinfo(HDCAM h, DCAMCAP_TRANSFERINFO *param)
{
    if (param == NULL || param->size < (int32_t)sizeof *param
        || param->iKind != DCAMCAP_TRANSFERKIND_FRAME)
        return DCAMERR_INVALIDPARAM;
    enter();
    camera *c = NULL;
    DCAMERR code = camera_of(h, &c);
    if (code < 0)
        return leave(code);
    param->nNewestFrameIndex = (int32_t)c->newest;
    param->nFrameCount = (int32_t)(c->count > INT32_MAX ? INT32_MAX : c->count);
    return leave(DCAMERR_SUCCESS);
}

FAKE_EXPORT DCAMERR dcamcap_firetrigger(HDCAM h, int32_t iKind)
{
    enter();
    camera *c = NULL;
    DCAMERR code = camera_of(h, &c);
    if (code < 0)
        return leave(code);
    if (iKind != 0)
        return leave(DCAMERR_INVALIDPARAM);
    /* H2: effective only while capturing with the SOFTWARE source; the codes for the other
       cases are the fake's choice. */
    if (!c->busy)
        return leave(DCAMERR_NOTBUSY);
    if (c->set.source != DCAMPROP_TRIGGERSOURCE__SOFTWARE)
        return leave(DCAMERR_NOTSUPPORT);
    if (c->sw_count == c->sw_capacity) {
        size_t capacity = c->sw_capacity ? 2 * c->sw_capacity : 64;
        int64_t *grown = realloc(c->sw_due, capacity * sizeof *grown);
        if (grown == NULL)
            return leave(DCAMERR_NOMEMORY);
        c->sw_due = grown;
        c->sw_capacity = capacity;
    }
    /* H2: a trigger that comes before the camera can take it waits until it can. */
    int64_t start = max64(now_ns(), c->sw_last_start + s_to_ns(interval_s(c)));
    c->sw_last_start = start;
    c->sw_due[c->sw_count++] = start + s_to_ns(c->set.exposure_s) + s_to_ns(readout_s(c));
    pthread_cond_broadcast(&changed);
    return leave(DCAMERR_SUCCESS);
}

FAKE_EXPORT DCAMERR dcamwait_open(DCAMWAIT_OPEN *param)
{
    if (param == NULL || param->size < (int32_t)sizeof *param)
        return DCAMERR_INVALIDPARAM;
    param->hwait = NULL;
    enter();
    camera *c = NULL;
    DCAMERR code = camera_of(param->hdcam, &c);
    if (code < 0)
        return leave(code);
    wait_session *w = calloc(1, sizeof *w);
    if (w == NULL)
        return leave(DCAMERR_NOMEMORY);
    w->token = new_token();
    w->session = c->session;
    w->seen_frames = c->written;
    w->seen_cycles = c->frames > 0 ? c->count / c->frames : 0;
    w->seen_stops = c->stops;
    w->next = c->waits;
    c->waits = w;
    param->hwait = (HDCAMWAIT)w->token;
    param->supportevent =
        DCAMWAIT_CAPEVENT_FRAMEREADY | DCAMWAIT_CAPEVENT_CYCLEEND | DCAMWAIT_CAPEVENT_STOPPED;
    return leave(DCAMERR_SUCCESS);
}

static wait_session *wait_of(HDCAMWAIT h)
{
    if (opened == NULL)
        return NULL;
    for (wait_session *w = opened->waits; w != NULL; w = w->next)
        if (w->token == (uintptr_t)h && !w->closing)
            return w;
    return NULL;
}

FAKE_EXPORT DCAMERR dcamwait_close(HDCAMWAIT hWait)
{
    enter();
    wait_session *w = wait_of(hWait);
    if (w == NULL)
        return leave(DCAMERR_INVALIDWAITHANDLE);
    w->closing = 1;
    pthread_cond_broadcast(&changed);
    while (w->waiters > 0)
        pthread_cond_wait(&changed, &lock);
    for (wait_session **link = &opened->waits; *link != NULL; link = &(*link)->next)
        if (*link == w) {
            *link = w->next;
            break;
        }
    free(w);
    return leave(DCAMERR_SUCCESS);
}

FAKE_EXPORT DCAMERR dcamwait_abort(HDCAMWAIT hWait)
{
    enter();
    wait_session *w = wait_of(hWait);
    if (w == NULL)
        return leave(DCAMERR_INVALIDWAITHANDLE);
    w->aborts++;
    pthread_cond_broadcast(&changed);
    return leave(DCAMERR_SUCCESS);
}

/* An event of mask that happened since this handle last reported it (the fake's choice:
   events are kept per handle, so none is missed between two waits); 0 if none. */
static int32_t pending_event(const camera *c, wait_session *w, int32_t mask)
{
    if (w->session != c->session) {
        w->session = c->session;
        w->seen_frames = w->seen_cycles = 0;
    }
    int64_t cycles = c->frames > 0 ? c->count / c->frames : 0;
    if ((mask & DCAMWAIT_CAPEVENT_FRAMEREADY) && c->written > w->seen_frames) {
        w->seen_frames = c->written;
        return DCAMWAIT_CAPEVENT_FRAMEREADY;
    }
    if ((mask & DCAMWAIT_CAPEVENT_CYCLEEND) && cycles > w->seen_cycles) {
        w->seen_cycles = cycles;
        return DCAMWAIT_CAPEVENT_CYCLEEND;
    }
    if ((mask & DCAMWAIT_CAPEVENT_STOPPED) && c->stops > w->seen_stops) {
        w->seen_stops = c->stops;
        return DCAMWAIT_CAPEVENT_STOPPED;
    }
    return 0;
}

static struct timespec timespec_of(int64_t ns)
{
    struct timespec t = {.tv_sec = (time_t)(ns / 1000000000), .tv_nsec = (long)(ns % 1000000000)};
    return t;
}

FAKE_EXPORT DCAMERR dcamwait_start(HDCAMWAIT hWait, DCAMWAIT_START *param)
{
    const int32_t supported =
        DCAMWAIT_CAPEVENT_FRAMEREADY | DCAMWAIT_CAPEVENT_CYCLEEND | DCAMWAIT_CAPEVENT_STOPPED;
    if (param == NULL || param->size < (int32_t)sizeof *param
        || (param->eventmask & supported) == 0
        || (param->timeout < 0 && param->timeout != DCAMWAIT_TIMEOUT_INFINITE))
        return DCAMERR_INVALIDPARAM;
    enter();
    wait_session *w = wait_of(hWait);
    if (w == NULL)
        return leave(DCAMERR_INVALIDWAITHANDLE);
    camera *c = opened;
    int64_t deadline = param->timeout == DCAMWAIT_TIMEOUT_INFINITE
                           ? NEVER_NS
                           : now_ns() + (int64_t)param->timeout * 1000000;
    uint64_t aborts = w->aborts;
    DCAMERR code;
    w->waiters++;
    for (;;) {
        int64_t now = now_ns();
        if (w->closing || w->aborts != aborts) {
            code = DCAMERR_ABORT;
            break;
        }
        advance(c, now);
        if (c->vanished) {
            code = DCAMERR_NOCAMERA;
            break;
        }
        int32_t event = pending_event(c, w, param->eventmask);
        if (event != 0) {
            param->eventhappened = event;
            code = DCAMERR_SUCCESS;
            break;
        }
        if (now >= deadline) {
            code = DCAMERR_TIMEOUT;
            break;
        }
        int64_t until = next_due_ns(c);
        if (deadline < until)
            until = deadline;
        if (until >= NEVER_NS) {
            pthread_cond_wait(&changed, &lock);
        } else {
            struct timespec at = timespec_of(until);
            pthread_cond_timedwait(&changed, &lock, &at);
        }
    }
    w->waiters--;
    if (w->closing)
        pthread_cond_broadcast(&changed);
    return leave(code);
}
