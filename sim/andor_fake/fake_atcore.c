/*
 * fake_atcore.c - a fake Andor SDK3 (libatcore) behind atcore_subset.h, for tests and demos.
 *
 * It implements every function of streamers/andor_sdk/atcore_subset.h with the semantics
 * docs/camera-sdk-facts.md (section 2) gives for Andor's library, so the binding and the
 * streamer run the code path of a site. The camera is modelled, not emulated: a frame's
 * time follows from the trigger mode and the settings (frame_due), and its content from its
 * number (write_frame; sim.andor_fake.expected_frame is the same formula in numpy).
 *
 * There is no producer thread. Whoever calls into a camera first brings it up to date
 * (advance): every frame due by then is put into the oldest buffer that was already queued
 * when the frame was due, or is lost when there was none, as on a real camera, whose frame
 * numbering then jumps. AT_WaitBuffer sleeps (pthread_cond_timedwait on CLOCK_MONOTONIC)
 * until the next frame is due, and writes the pixels of the buffer it returns in the
 * caller's thread, outside the camera's lock.
 *
 * Configuration: the file named by $ANDOR_FAKE_CONFIG (key = value lines, written by
 * sim/andor_fake/config_file.py; read by AT_InitialiseLibrary), and faults in
 * $ANDOR_FAKE_FAULTS (key=value;key=value, read by each AT_Open). Why a call failed is
 * kept per thread for fake_atcore_last_error(), which is not part of Andor's API.
 *
 * Choices where the research leaves the real SDK open (each documented there as
 * [UNVERIFIED]): AOIStride is the row's bytes rounded up to a multiple of 8 and
 * ImageSizeBytes is AOIStride * AOIHeight; a Fixed series ends on its own after FrameCount
 * frames; AT_WaitBuffer returns AT_ERR_NODATA at once when no acquisition runs and no
 * filled buffer is left; settings are not writable at all while acquiring.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strdup, strtok_r; Python.h defines it when cffi includes this file */
#endif
#include "../../streamers/andor_sdk/atcore_subset.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AT_EXPORT __attribute__((visibility("default")))

#define CONFIG_ENV "ANDOR_FAKE_CONFIG"
#define FAULTS_ENV "ANDOR_FAKE_FAULTS"
#define SOFTWARE_VERSION "fake-atcore 1.0 (detector-daq sim)"
#define MAX_CAMERAS 4
#define QUEUE_CAPACITY 1024 /* buffers a camera holds at once; beyond: AT_ERR_BUFFERFULL */
#define MAX_DROPS 64
#define ERROR_SIZE 1024
#define LINE_SIZE 1024
#define SERIAL_SIZE 64
#define NAME_SIZE 64
#define FIRST_HANDLE 100 /* clear of AT_HANDLE_SYSTEM (1) and AT_HANDLE_UNINITIALISED (-1) */
#define NEVER INT64_MAX  /* the due time of a frame that does not come */
#define PADDING_BYTE 0xA5 /* what fills the end of a row beyond its pixels, up to AOIStride */

#define EXPOSURE_MIN 10e-6 /* s */
#define EXPOSURE_MAX 30.0
#define FRAME_RATE_MIN 0.01 /* Hz */
#define FRAME_COUNT_MAX INT32_MAX

/* ---- errors -------------------------------------------------------------------------- */

static _Thread_local char last_error[ERROR_SIZE];

__attribute__((format(printf, 2, 3))) static int fail(int code, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(last_error, sizeof last_error, format, args);
    va_end(args);
    return code;
}

/* A configuration the fake refuses: also on stderr, since Andor's API has no way to say why
   AT_InitialiseLibrary or AT_Open failed, and a demo's user should not have to guess. */
static int refuse_configuration(void)
{
    fprintf(stderr, "fake atcore: %s\n", last_error);
    return AT_ERR_CONNECTION;
}

/* ---- models, encodings, enumerations -------------------------------------------------- */

/* Sensor sizes: research section 2.8 (A10 for the Zylas, A11 for the Balor). Row times are
   derived there too: the sensor is read from its centre outwards, both halves at once, so a
   full Zyla 5.5 frame is 1080 row times; the A10 table of frame rates against AOI heights
   (100 fps at 2160 rows, 1639 fps at 128) fits 9.24 us per row at 560 MHz, the Zyla 4.2's
   (100 and 1578 fps) 9.76 us at 540 MHz, and the Balor's 54 fps at 4104 rows 9.02 us.
   The link rate is what caps a frame's bytes per second: the Zyla 5.5 reaches 100 fps at
   12 bits (packed) and 75 fps at 16 on Camera Link 10-tap (A10), both 829.44 MB/s; the
   Zyla 4.2 100 fps at 16 bits (838.9 MB/s). No limit is modelled for the Balor. */
typedef struct {
    const char *key;  /* the configuration's model value */
    const char *name; /* CameraModel: the fake's own, the real strings are not known */
    int64_t width;
    int64_t height;
    double row_time;
    double link_bytes_per_s;
} model;

static const model models[] = {
    {"zyla-5.5", "Zyla 5.5 (fake)", 2560, 2160, 9.24e-6, 829.44e6},
    {"zyla-4.2", "Zyla 4.2 (fake)", 2048, 2048, 9.76e-6, 838.8608e6},
    {"balor", "Balor (fake)", 4128, 4104, 9.02e-6, 0.0},
};
#define MODELS (sizeof models / sizeof models[0])

/* Enumerated features and their strings: research section 2.5 (A5, A6, A7, A9). */
enum { MONO12, MONO12PACKED, MONO16, MONO32, ENCODINGS };
static const char *const encoding_names[ENCODINGS] = {"Mono12", "Mono12Packed", "Mono16",
                                                      "Mono32"};

enum {
    TRIGGER_INTERNAL,
    TRIGGER_SOFTWARE,
    TRIGGER_EXTERNAL,
    TRIGGER_EXTERNAL_START,
    TRIGGER_EXTERNAL_EXPOSURE,
    TRIGGER_MODES
};
static const char *const trigger_names[TRIGGER_MODES] = {
    "Internal", "Software", "External", "External Start", "External Exposure"};

enum { CYCLE_FIXED, CYCLE_CONTINUOUS, CYCLE_MODES };
static const char *const cycle_names[CYCLE_MODES] = {"Fixed", "Continuous"};

/* Bytes of a row's pixels: Mono12Packed holds two pixels in three bytes, and an odd last
   pixel in two (research section 2.6). */
static int64_t row_bytes(int encoding, int64_t width)
{
    switch (encoding) {
    case MONO12PACKED:
        return (width * 3 + 1) / 2;
    case MONO32:
        return width * 4;
    default:
        return width * 2;
    }
}

static double bytes_per_pixel(int encoding)
{
    static const double bytes[ENCODINGS] = {2.0, 1.5, 2.0, 4.0};
    return bytes[encoding];
}

static int64_t stride_of(int encoding, int64_t width)
{
    return (row_bytes(encoding, width) + 7) / 8 * 8;
}

/* ---- configuration ---------------------------------------------------------------------- */

/* What AT_InitialiseLibrary read from $ANDOR_FAKE_CONFIG (or the defaults). */
typedef struct {
    const model *model;
    char serial[SERIAL_SIZE];
    int cameras;
    double trigger_period_ms;
    double trigger_delay_ms;
    int unavailable[ENCODINGS];
} configuration;

/* What one AT_Open read from $ANDOR_FAKE_FAULTS; frame numbers count from 0 in each series. */
typedef struct {
    int64_t drops[MAX_DROPS]; /* these frames never fill a buffer */
    size_t drop_count;
    int64_t timeout_after; /* frames from this one on never fill a buffer; -1: none */
    int64_t vanish_after;  /* the camera is gone when this frame is due; -1: never */
    int open_error;        /* AT_Open fails with this code; 0: it does not */
} faults;

static char *trim(char *text)
{
    while (*text == ' ' || *text == '\t')
        text++;
    char *end = text + strlen(text);
    while (end > text && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
        *--end = '\0';
    return text;
}

static int parse_long(const char *text, long long minimum, long long maximum, long long *value)
{
    char *end;
    errno = 0;
    long long parsed = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || parsed < minimum || parsed > maximum)
        return 0;
    *value = parsed;
    return 1;
}

static int parse_double(const char *text, double minimum, int inclusive, double *value)
{
    char *end;
    errno = 0;
    double parsed = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(parsed))
        return 0;
    if (inclusive ? parsed < minimum : parsed <= minimum)
        return 0;
    *value = parsed;
    return 1;
}

/* "Mono32, Mono16" into the unavailable flags; 0 with the bad item in bad. */
static int parse_encodings(char *value, int *unavailable, const char **bad)
{
    char *save = NULL;
    for (char *item = strtok_r(value, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        item = trim(item);
        *bad = item;
        int found = -1;
        for (int k = 0; k < ENCODINGS; k++)
            if (strcmp(item, encoding_names[k]) == 0)
                found = k;
        if (found < 0)
            return 0;
        unavailable[found] = 1;
    }
    return 1;
}

static int apply_config_key(configuration *cfg, const char *key, char *value, const char *where)
{
    int ok = 1;
    long long number;
    if (strcmp(key, "model") == 0) {
        cfg->model = NULL;
        for (size_t k = 0; k < MODELS; k++)
            if (strcmp(value, models[k].key) == 0)
                cfg->model = &models[k];
        if (cfg->model == NULL)
            return fail(AT_ERR_CONNECTION, "%s: model '%s' is not one of zyla-5.5, zyla-4.2, "
                        "balor", where, value);
    } else if (strcmp(key, "serial") == 0) {
        if (value[0] == '\0' || strlen(value) >= SERIAL_SIZE)
            return fail(AT_ERR_CONNECTION, "%s: serial must have 1 to %d characters", where,
                        SERIAL_SIZE - 1);
        snprintf(cfg->serial, sizeof cfg->serial, "%s", value);
    } else if (strcmp(key, "cameras") == 0) {
        ok = parse_long(value, 1, MAX_CAMERAS, &number);
        if (ok)
            cfg->cameras = (int)number;
    } else if (strcmp(key, "trigger_period_ms") == 0) {
        ok = parse_double(value, 0.0, 0, &cfg->trigger_period_ms);
    } else if (strcmp(key, "trigger_delay_ms") == 0) {
        ok = parse_double(value, 0.0, 1, &cfg->trigger_delay_ms);
    } else if (strcmp(key, "unavailable_encodings") == 0) {
        const char *bad = value;
        if (!parse_encodings(value, cfg->unavailable, &bad))
            return fail(AT_ERR_CONNECTION, "%s: '%s' of unavailable_encodings is not one of "
                        "Mono12, Mono12Packed, Mono16, Mono32", where, bad);
    } else {
        return fail(AT_ERR_CONNECTION, "%s: unknown key '%s'", where, key);
    }
    if (!ok)
        return fail(AT_ERR_CONNECTION, "%s: bad value '%s' of key '%s'", where, value, key);
    return AT_SUCCESS;
}

static int read_configuration(configuration *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->model = &models[0];
    snprintf(cfg->serial, sizeof cfg->serial, "FAKE-0001");
    cfg->cameras = 1;
    cfg->trigger_period_ms = 10.0;
    const char *path = getenv(CONFIG_ENV);
    if (path == NULL || path[0] == '\0')
        return AT_SUCCESS;
    FILE *file = fopen(path, "r");
    if (file == NULL)
        return fail(AT_ERR_CONNECTION, "cannot open %s (%s): %s", path, CONFIG_ENV,
                    strerror(errno));
    char line[LINE_SIZE], where[LINE_SIZE + 64];
    int code = AT_SUCCESS;
    for (int number = 1; code == AT_SUCCESS && fgets(line, sizeof line, file) != NULL; number++) {
        snprintf(where, sizeof where, "%s line %d", path, number);
        if (strchr(line, '\n') == NULL && !feof(file)) {
            code = fail(AT_ERR_CONNECTION, "%s: longer than %d characters", where, LINE_SIZE - 2);
            break;
        }
        char *text = trim(line);
        if (text[0] == '\0' || text[0] == '#')
            continue;
        char *equals = strchr(text, '=');
        if (equals == NULL) {
            code = fail(AT_ERR_CONNECTION, "%s: expected 'key = value', got '%s'", where, text);
            break;
        }
        *equals = '\0';
        code = apply_config_key(cfg, trim(text), trim(equals + 1), where);
    }
    if (code == AT_SUCCESS && ferror(file))
        code = fail(AT_ERR_CONNECTION, "cannot read %s (%s)", path, CONFIG_ENV);
    fclose(file);
    if (code == AT_SUCCESS) {
        int available = 0;
        for (int k = 0; k < ENCODINGS; k++)
            available += !cfg->unavailable[k];
        if (available == 0)
            code = fail(AT_ERR_CONNECTION, "%s: unavailable_encodings leaves no pixel encoding",
                        path);
    }
    return code;
}

static int apply_fault(faults *f, const char *key, char *value)
{
    long long number;
    if (strcmp(key, "drop_buffer") == 0) {
        char *save = NULL;
        for (char *item = strtok_r(value, ",", &save); item != NULL;
             item = strtok_r(NULL, ",", &save)) {
            if (f->drop_count == MAX_DROPS)
                return fail(AT_ERR_CONNECTION, "%s: more than %d frames to drop", FAULTS_ENV,
                            MAX_DROPS);
            if (!parse_long(trim(item), 0, INT64_MAX, &number))
                return fail(AT_ERR_CONNECTION, "%s: bad frame '%s' of drop_buffer", FAULTS_ENV,
                            trim(item));
            f->drops[f->drop_count++] = number;
        }
        return AT_SUCCESS;
    }
    int64_t *target = strcmp(key, "timeout_after") == 0  ? &f->timeout_after
                      : strcmp(key, "vanish_after") == 0 ? &f->vanish_after
                                                          : NULL;
    if (target != NULL) {
        if (!parse_long(value, 0, INT64_MAX, &number))
            return fail(AT_ERR_CONNECTION, "%s: bad value '%s' of %s: a frame count", FAULTS_ENV,
                        value, key);
        *target = number;
        return AT_SUCCESS;
    }
    if (strcmp(key, "open_error") == 0) {
        if (!parse_long(value, 1, INT_MAX, &number))
            return fail(AT_ERR_CONNECTION, "%s: bad value '%s' of open_error: an AT_ERR code",
                        FAULTS_ENV, value);
        f->open_error = (int)number;
        return AT_SUCCESS;
    }
    return fail(AT_ERR_CONNECTION, "%s: unknown key '%s'", FAULTS_ENV, key);
}

static int read_faults(faults *f)
{
    memset(f, 0, sizeof *f);
    f->timeout_after = -1;
    f->vanish_after = -1;
    const char *env = getenv(FAULTS_ENV);
    if (env == NULL || env[0] == '\0')
        return AT_SUCCESS;
    char *copy = strdup(env);
    if (copy == NULL)
        return fail(AT_ERR_NOMEMORY, "out of memory");
    int code = AT_SUCCESS;
    char *save = NULL;
    for (char *item = strtok_r(copy, ";", &save); code == AT_SUCCESS && item != NULL;
         item = strtok_r(NULL, ";", &save)) {
        item = trim(item);
        if (item[0] == '\0')
            continue;
        char *equals = strchr(item, '=');
        if (equals == NULL) {
            code = fail(AT_ERR_CONNECTION, "%s: expected key=value, got '%s'", FAULTS_ENV, item);
            break;
        }
        *equals = '\0';
        code = apply_fault(f, trim(item), trim(equals + 1));
    }
    free(copy);
    return code;
}

/* ---- time ------------------------------------------------------------------------------ */

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int64_t seconds_to_ns(double seconds)
{
    double ns = seconds * 1e9;
    return ns >= (double)(NEVER / 4) ? NEVER / 4 : (int64_t)llround(ns);
}

/* a + b * k, or NEVER when that passes it (every operand is at least 0). */
static int64_t later(int64_t a, int64_t b, int64_t k)
{
    if (a == NEVER || (b > 0 && k > (NEVER - a) / b))
        return NEVER;
    return a + b * k;
}

static struct timespec timespec_at(int64_t ns)
{
    struct timespec t = {.tv_sec = (time_t)(ns / 1000000000), .tv_nsec = (long)(ns % 1000000000)};
    return t;
}

/* ---- cameras ---------------------------------------------------------------------------- */

typedef struct {
    int64_t width;
    int64_t height;
    int64_t left; /* 1-based, in sensor pixels */
    int64_t top;
    int64_t stride;
    int encoding;
} layout;

/* A buffer the client queued; frame and pixels are set when a frame fills it. */
typedef struct {
    AT_U8 *data;
    int size;
    int64_t frame;
    layout pixels;
} entry;

/* What AcquisitionStart fixed for the series it began. */
typedef struct {
    layout pixels;
    int trigger_mode;
    int64_t limit;       /* frames in the series: FrameCount when Fixed, else no limit */
    int64_t period_ns;   /* 1 / FrameRate */
    int64_t exposure_ns; /* ExposureTime, or the pulse width in External Exposure */
    int64_t readout_ns;
    int64_t cycle_ns;    /* the shortest time from one frame's start to the next's */
    int64_t pulse_ns;    /* the pulse generator's period */
    int64_t delay_ns;    /* its first pulse after AcquisitionStart */
} series;

typedef struct {
    AT_H handle;
    int index;
    char serial[SERIAL_SIZE + 16]; /* the configuration's, with "-<index>" after the first */
    faults faults;
    pthread_mutex_t lock;
    pthread_cond_t changed; /* a trigger, a start, a stop, a vanishing or a close */
    int waiters;            /* threads in AT_WaitBuffer */
    int closing;

    double exposure;
    double frame_rate;
    int overlap;
    int cycle_mode;
    int trigger_mode;
    int encoding;
    int64_t frame_count;
    int64_t aoi_width;
    int64_t aoi_height;
    int64_t aoi_left;
    int64_t aoi_top;

    int running; /* started, and neither stopped nor vanished; a Fixed series ends in time */
    int vanished;
    int64_t start_ns;
    series series;
    int64_t next;     /* the next frame of the series that advance looks at */
    int64_t *triggers; /* start times of the frames software triggers asked for */
    size_t trigger_count;
    size_t trigger_capacity;

    entry queue[QUEUE_CAPACITY]; /* a ring: the filled entries come first, oldest first */
    size_t head;
    size_t count;
    size_t filled;
} camera;

static pthread_mutex_t library_lock = PTHREAD_MUTEX_INITIALIZER;
static int initialised;
static configuration config;
static camera *cameras[MAX_CAMERAS]; /* the open ones, by camera index */
static AT_H next_handle = FIRST_HANDLE;

static layout current_layout(const camera *c)
{
    layout l = {.width = c->aoi_width,
                .height = c->aoi_height,
                .left = c->aoi_left,
                .top = c->aoi_top,
                .stride = stride_of(c->encoding, c->aoi_width),
                .encoding = c->encoding};
    return l;
}

static int64_t image_size_bytes(const camera *c)
{
    return stride_of(c->encoding, c->aoi_width) * c->aoi_height;
}

/* Rows the sensor reads for the AOI: both halves at once, from the centre outwards, so the
   longer of the AOI's two parts either side of the centre line (research section 2.5). */
static int64_t rows_read(const camera *c)
{
    int64_t centre = config.model->height / 2, first = c->aoi_top;
    int64_t last = c->aoi_top + c->aoi_height - 1;
    int64_t above = (last < centre ? last : centre) - first + 1;
    int64_t below = last - (first > centre + 1 ? first : centre + 1) + 1;
    above = above > 0 ? above : 0;
    below = below > 0 ? below : 0;
    return above > below ? above : below;
}

static double readout_time(const camera *c)
{
    return (double)rows_read(c) * config.model->row_time;
}

/* Overlap on: a frame is exposed while the previous one is read; off: one after the other
   (the research's timing model, section 2.5). */
static double cycle_time(const camera *c, double exposure)
{
    double readout = readout_time(c);
    if (!c->overlap)
        return exposure + readout;
    return exposure > readout ? exposure : readout;
}

static double frame_rate_max(const camera *c)
{
    double rate = 1.0 / cycle_time(c, c->exposure);
    double link = config.model->link_bytes_per_s;
    if (link > 0.0) {
        double carried = link / (double)image_size_bytes(c);
        rate = carried < rate ? carried : rate;
    }
    return rate;
}

/* After a setting that changes the limit: the camera lowers FrameRate to what it can do. */
static void clamp_frame_rate(camera *c)
{
    double maximum = frame_rate_max(c);
    if (c->frame_rate > maximum)
        c->frame_rate = maximum;
}

/* When frame k of the series is in its buffer (ns on CLOCK_MONOTONIC), or NEVER. */
static int64_t frame_due(const camera *c, int64_t k)
{
    const series *s = &c->series;
    if (k >= s->limit)
        return NEVER;
    int64_t begin;
    switch (s->trigger_mode) {
    case TRIGGER_SOFTWARE:
        if ((uint64_t)k >= c->trigger_count)
            return NEVER;
        begin = c->triggers[k];
        break;
    case TRIGGER_EXTERNAL_START:
        begin = later(c->start_ns + s->delay_ns, s->period_ns, k);
        break;
    case TRIGGER_EXTERNAL:
    case TRIGGER_EXTERNAL_EXPOSURE: {
        /* A pulse that comes while the previous frame is still being taken is ignored. */
        int64_t step = (s->cycle_ns + s->pulse_ns - 1) / s->pulse_ns;
        begin = later(c->start_ns + s->delay_ns, s->pulse_ns, later(0, step, k));
        break;
    }
    default:
        begin = later(c->start_ns, s->period_ns, k);
    }
    return later(later(begin, s->exposure_ns, 1), s->readout_ns, 1);
}

static int acquiring(const camera *c, int64_t now)
{
    if (!c->running || c->vanished)
        return 0;
    return c->series.limit == INT64_MAX || frame_due(c, c->series.limit - 1) > now;
}

/* The first frame from `from` on that is due at t or later (due times never decrease). */
static int64_t first_due_from(const camera *c, int64_t from, int64_t t)
{
    if (frame_due(c, from) >= t)
        return from;
    int64_t low = from, step = 1; /* frame low is due before t, frame high at t or later */
    int64_t high = from + step;
    while (frame_due(c, high) < t) {
        low = high;
        step = step > INT64_MAX / 4 ? INT64_MAX / 4 : step * 2;
        high = low > INT64_MAX - step ? INT64_MAX : low + step;
    }
    while (high - low > 1) {
        int64_t middle = low + (high - low) / 2;
        if (frame_due(c, middle) < t)
            low = middle;
        else
            high = middle;
    }
    return high;
}

static int dropped(const faults *f, int64_t k)
{
    for (size_t i = 0; i < f->drop_count; i++)
        if (f->drops[i] == k)
            return 1;
    return 0;
}

static void vanish(camera *c)
{
    c->vanished = 1;
    c->running = 0;
    pthread_cond_broadcast(&c->changed);
}

/* Under the lock: every frame due by now goes into the oldest empty queued buffer, or is lost.
   Every call that queues a buffer brings the camera up to date first, so a buffer in the
   queue was always there when the frames still to come here were due. A run of lost frames
   is skipped at once, so that a long pause of the client costs no more than a short one. */
static void advance(camera *c, int64_t now)
{
    const faults *f = &c->faults;
    while (c->running && !c->vanished) {
        int64_t k = c->next, due = frame_due(c, k);
        if (due > now)
            return;
        if (f->vanish_after >= 0 && k >= f->vanish_after) {
            vanish(c);
            return;
        }
        if (dropped(f, k)) {
            c->next = k + 1;
            continue;
        }
        entry *empty = c->filled < c->count ? &c->queue[(c->head + c->filled) % QUEUE_CAPACITY]
                                            : NULL;
        int stalled = f->timeout_after >= 0 && k >= f->timeout_after;
        if (!stalled && empty != NULL) {
            empty->frame = k;
            empty->pixels = c->series.pixels;
            c->filled++;
            c->next = k + 1;
            continue;
        }
        /* Lost, and so is every frame due by now; the camera vanishes at its frame. */
        int64_t skip = first_due_from(c, k + 1, now + 1);
        if (f->vanish_after > k && f->vanish_after < skip)
            skip = f->vanish_after;
        c->next = skip;
    }
}

/* The pixel formula of sim.andor_fake.expected_frame, at sensor row R and column C
   (0-based): (frame*7 + R*3 + C), masked to 12 or 16 bits; Mono32 repeats the 16-bit value
   in both halves, so that a reader that keeps only 16 bits is caught. */
static void write_frame(const entry *e)
{
    const layout *l = &e->pixels;
    uint64_t mask = l->encoding == MONO16 || l->encoding == MONO32 ? 0xFFFF : 0xFFF;
    int64_t used = row_bytes(l->encoding, l->width);
    for (int64_t r = 0; r < l->height; r++) {
        AT_U8 *row = e->data + r * l->stride;
        uint64_t base = (uint64_t)e->frame * 7 + (uint64_t)(l->top - 1 + r) * 3
                        + (uint64_t)(l->left - 1);
        switch (l->encoding) {
        case MONO12PACKED:
            for (int64_t c = 0; c + 1 < l->width; c += 2) {
                uint32_t a = (uint32_t)((base + (uint64_t)c) & mask);
                uint32_t b = (uint32_t)((base + (uint64_t)c + 1) & mask);
                AT_U8 *out = row + c / 2 * 3;
                out[0] = (AT_U8)(a >> 4);
                out[1] = (AT_U8)((a & 0xF) | ((b & 0xF) << 4));
                out[2] = (AT_U8)(b >> 4);
            }
            if (l->width % 2 == 1) {
                uint32_t a = (uint32_t)((base + (uint64_t)l->width - 1) & mask);
                AT_U8 *out = row + (l->width - 1) / 2 * 3;
                out[0] = (AT_U8)(a >> 4);
                out[1] = (AT_U8)(a & 0xF);
            }
            break;
        case MONO32:
            for (int64_t c = 0; c < l->width; c++) {
                uint32_t v = (uint32_t)((base + (uint64_t)c) & mask) * 0x10001u;
                AT_U8 *out = row + c * 4;
                out[0] = (AT_U8)v;
                out[1] = (AT_U8)(v >> 8);
                out[2] = (AT_U8)(v >> 16);
                out[3] = (AT_U8)(v >> 24);
            }
            break;
        default: /* Mono12 and Mono16: little-endian 16-bit words */
            for (int64_t c = 0; c < l->width; c++) {
                uint32_t v = (uint32_t)((base + (uint64_t)c) & mask);
                row[c * 2] = (AT_U8)v;
                row[c * 2 + 1] = (AT_U8)(v >> 8);
            }
        }
        memset(row + used, PADDING_BYTE, (size_t)(l->stride - used));
    }
}

static camera *find_camera(AT_H handle)
{
    for (int k = 0; k < MAX_CAMERAS; k++)
        if (cameras[k] != NULL && cameras[k]->handle == handle)
            return cameras[k];
    return NULL;
}

/* Under the library lock: take the camera off the table, wait for its waiters to leave (a
   close wakes them) and free it. */
static void destroy_camera(camera *c)
{
    cameras[c->index] = NULL;
    pthread_mutex_lock(&c->lock);
    c->closing = 1;
    pthread_cond_broadcast(&c->changed);
    while (c->waiters > 0)
        pthread_cond_wait(&c->changed, &c->lock);
    pthread_mutex_unlock(&c->lock);
    pthread_cond_destroy(&c->changed);
    pthread_mutex_destroy(&c->lock);
    free(c->triggers);
    free(c);
}

static camera *create_camera(int index, const faults *f)
{
    camera *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->handle = next_handle++;
    c->index = index;
    if (index == 0)
        snprintf(c->serial, sizeof c->serial, "%s", config.serial);
    else
        snprintf(c->serial, sizeof c->serial, "%s-%d", config.serial, index);
    c->faults = *f;
    c->exposure = 0.01;
    c->overlap = 1;
    c->cycle_mode = CYCLE_FIXED;
    c->trigger_mode = TRIGGER_INTERNAL;
    c->encoding = MONO12;
    while (config.unavailable[c->encoding])
        c->encoding++;
    c->frame_count = 1;
    c->aoi_width = config.model->width;
    c->aoi_height = config.model->height;
    c->aoi_left = 1;
    c->aoi_top = 1;
    c->frame_rate = frame_rate_max(c);
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&c->changed, &attributes);
    pthread_condattr_destroy(&attributes);
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

/* ---- features ---------------------------------------------------------------------------- */

typedef enum { T_INT, T_FLOAT, T_BOOL, T_ENUM, T_STRING, T_COMMAND } feature_type;

typedef enum {
    F_DEVICE_COUNT,
    F_SOFTWARE_VERSION,
    F_FRAME_COUNT,
    F_AOI_WIDTH,
    F_AOI_HEIGHT,
    F_AOI_LEFT,
    F_AOI_TOP,
    F_AOI_STRIDE,
    F_IMAGE_SIZE_BYTES,
    F_SENSOR_WIDTH,
    F_SENSOR_HEIGHT,
    F_EXPOSURE_TIME,
    F_FRAME_RATE,
    F_READOUT_TIME,
    F_BYTES_PER_PIXEL,
    F_CAMERA_ACQUIRING,
    F_OVERLAP,
    F_CYCLE_MODE,
    F_TRIGGER_MODE,
    F_PIXEL_ENCODING,
    F_CAMERA_MODEL,
    F_SERIAL_NUMBER,
    F_ACQUISITION_START,
    F_ACQUISITION_STOP,
    F_SOFTWARE_TRIGGER,
} feature_id;

/* Names and types: research section 2.5 (types as A5 lists them). */
typedef struct {
    const char *name;
    feature_id id;
    feature_type type;
    int system;   /* of AT_HANDLE_SYSTEM rather than of a camera */
    int settable; /* writable while the camera does not acquire */
} feature;

static const feature features[] = {
    {"DeviceCount", F_DEVICE_COUNT, T_INT, 1, 0},
    {"SoftwareVersion", F_SOFTWARE_VERSION, T_STRING, 1, 0},
    {"FrameCount", F_FRAME_COUNT, T_INT, 0, 1},
    {"AOIWidth", F_AOI_WIDTH, T_INT, 0, 1},
    {"AOIHeight", F_AOI_HEIGHT, T_INT, 0, 1},
    {"AOILeft", F_AOI_LEFT, T_INT, 0, 1},
    {"AOITop", F_AOI_TOP, T_INT, 0, 1},
    {"AOIStride", F_AOI_STRIDE, T_INT, 0, 0},
    {"ImageSizeBytes", F_IMAGE_SIZE_BYTES, T_INT, 0, 0},
    {"SensorWidth", F_SENSOR_WIDTH, T_INT, 0, 0},
    {"SensorHeight", F_SENSOR_HEIGHT, T_INT, 0, 0},
    {"ExposureTime", F_EXPOSURE_TIME, T_FLOAT, 0, 1},
    {"FrameRate", F_FRAME_RATE, T_FLOAT, 0, 1},
    {"ReadoutTime", F_READOUT_TIME, T_FLOAT, 0, 0},
    {"BytesPerPixel", F_BYTES_PER_PIXEL, T_FLOAT, 0, 0},
    {"CameraAcquiring", F_CAMERA_ACQUIRING, T_BOOL, 0, 0},
    {"Overlap", F_OVERLAP, T_BOOL, 0, 1},
    {"CycleMode", F_CYCLE_MODE, T_ENUM, 0, 1},
    {"TriggerMode", F_TRIGGER_MODE, T_ENUM, 0, 1},
    {"PixelEncoding", F_PIXEL_ENCODING, T_ENUM, 0, 1},
    {"CameraModel", F_CAMERA_MODEL, T_STRING, 0, 0},
    {"SerialNumber", F_SERIAL_NUMBER, T_STRING, 0, 0},
    {"AcquisitionStart", F_ACQUISITION_START, T_COMMAND, 0, 1},
    {"AcquisitionStop", F_ACQUISITION_STOP, T_COMMAND, 0, 1},
    {"SoftwareTrigger", F_SOFTWARE_TRIGGER, T_COMMAND, 0, 1},
};
#define FEATURES (sizeof features / sizeof features[0])

static int wide_is(const AT_WC *wide, const char *ascii)
{
    for (; *ascii != '\0'; wide++, ascii++)
        if (*wide != (AT_WC)(unsigned char)*ascii)
            return 0;
    return *wide == 0;
}

/* One call on a feature: the camera (NULL for AT_HANDLE_SYSTEM) with its lock held, or the
   library's lock for the system; the feature, NULL when the handle has none of that name. */
typedef struct {
    camera *camera;
    const feature *feature;
    char name[NAME_SIZE]; /* the feature's name as given, for the reasons of failures */
    int64_t now;
} call;

static void leave(call *k)
{
    if (k->camera != NULL)
        pthread_mutex_unlock(&k->camera->lock);
    else
        pthread_mutex_unlock(&library_lock);
}

enum { NEEDS_FEATURE = 1, WHILE_VANISHED = 2 };

/* Lock and bring up to date the handle's camera (or the library, for AT_HANDLE_SYSTEM), and
   resolve the feature (feature_name is NULL for the calls without one). A camera that is
   gone refuses, unless the flags have WHILE_VANISHED. On success the caller must leave(). */
static int enter(AT_H handle, const AT_WC *feature_name, int flags, call *k)
{
    memset(k, 0, sizeof *k);
    if ((flags & NEEDS_FEATURE) && feature_name == NULL)
        return fail(AT_ERR_NULL_FEATURE, "no feature name given");
    pthread_mutex_lock(&library_lock);
    if (!initialised) {
        pthread_mutex_unlock(&library_lock);
        return fail(AT_ERR_NOTINITIALISED, "AT_InitialiseLibrary has not been called");
    }
    if (handle != AT_HANDLE_SYSTEM) {
        k->camera = find_camera(handle);
        if (k->camera == NULL) {
            pthread_mutex_unlock(&library_lock);
            return fail(AT_ERR_INVALIDHANDLE, "handle %d is not an open camera", handle);
        }
        pthread_mutex_lock(&k->camera->lock);
        pthread_mutex_unlock(&library_lock);
        k->now = now_ns();
        advance(k->camera, k->now);
        if (k->camera->vanished && !(flags & WHILE_VANISHED)) {
            leave(k);
            return fail(AT_ERR_CONNECTION, "camera %d (%s) is gone: it stopped answering",
                        k->camera->index, k->camera->serial);
        }
    }
    if (feature_name != NULL) {
        size_t n = 0;
        for (; feature_name[n] != 0 && n + 1 < NAME_SIZE; n++)
            k->name[n] = feature_name[n] < 128 ? (char)feature_name[n] : '?';
        k->name[n] = '\0';
        for (size_t i = 0; i < FEATURES; i++)
            if (features[i].system == (handle == AT_HANDLE_SYSTEM)
                && wide_is(feature_name, features[i].name))
                k->feature = &features[i];
    }
    return AT_SUCCESS;
}

/* enter() for a feature of the given type; it fails when the handle has no such feature. */
static int enter_typed(AT_H handle, const AT_WC *feature_name, feature_type type, call *k)
{
    int code = enter(handle, feature_name, NEEDS_FEATURE, k);
    if (code != AT_SUCCESS)
        return code;
    if (k->feature == NULL || k->feature->type != type) {
        leave(k);
        return fail(AT_ERR_NOTIMPLEMENTED, "%s: no such feature of this type on this handle",
                    k->name);
    }
    return AT_SUCCESS;
}

static int writable(const call *k)
{
    const camera *c = k->camera;
    switch (k->feature->id) {
    case F_ACQUISITION_STOP:
        return 1;
    case F_SOFTWARE_TRIGGER:
        return acquiring(c, k->now) && c->series.trigger_mode == TRIGGER_SOFTWARE
               && (c->series.limit == INT64_MAX
                   || c->trigger_count < (uint64_t)c->series.limit);
    default:
        return k->feature->settable && !acquiring(c, k->now);
    }
}

/* Whether a set may go ahead: the feature is not read-only and the camera not acquiring. */
static int check_writable(const call *k)
{
    if (!k->feature->settable)
        return fail(AT_ERR_READONLY, "%s is read-only", k->name);
    if (!writable(k))
        return fail(AT_ERR_NOTWRITABLE, "%s cannot change while the camera acquires", k->name);
    return AT_SUCCESS;
}

static void int_range(const call *k, int64_t *minimum, int64_t *maximum)
{
    const camera *c = k->camera;
    const model *m = config.model;
    *minimum = 1;
    switch (k->feature->id) {
    case F_FRAME_COUNT:
        *maximum = FRAME_COUNT_MAX;
        break;
    case F_AOI_WIDTH:
        *maximum = m->width - c->aoi_left + 1;
        break;
    case F_AOI_HEIGHT:
        *maximum = m->height - c->aoi_top + 1;
        break;
    case F_AOI_LEFT:
        *maximum = m->width - c->aoi_width + 1;
        break;
    case F_AOI_TOP:
        *maximum = m->height - c->aoi_height + 1;
        break;
    default: /* read-only: the value is the whole range */
        *minimum = *maximum = 0;
    }
}

static int64_t int_value(const call *k)
{
    const camera *c = k->camera;
    switch (k->feature->id) {
    case F_DEVICE_COUNT:
        return config.cameras;
    case F_FRAME_COUNT:
        return c->frame_count;
    case F_AOI_WIDTH:
        return c->aoi_width;
    case F_AOI_HEIGHT:
        return c->aoi_height;
    case F_AOI_LEFT:
        return c->aoi_left;
    case F_AOI_TOP:
        return c->aoi_top;
    case F_AOI_STRIDE:
        return stride_of(c->encoding, c->aoi_width);
    case F_IMAGE_SIZE_BYTES:
        return image_size_bytes(c);
    case F_SENSOR_WIDTH:
        return config.model->width;
    default:
        return config.model->height;
    }
}

static void float_range(const call *k, double *minimum, double *maximum)
{
    switch (k->feature->id) {
    case F_EXPOSURE_TIME:
        *minimum = EXPOSURE_MIN;
        *maximum = EXPOSURE_MAX;
        break;
    case F_FRAME_RATE:
        *minimum = FRAME_RATE_MIN;
        *maximum = frame_rate_max(k->camera);
        break;
    default:
        *minimum = *maximum = 0.0;
    }
}

static double float_value(const call *k)
{
    const camera *c = k->camera;
    switch (k->feature->id) {
    case F_EXPOSURE_TIME:
        return c->exposure;
    case F_FRAME_RATE:
        return c->frame_rate;
    case F_READOUT_TIME:
        return readout_time(c);
    default:
        return bytes_per_pixel(c->encoding);
    }
}

/* The strings of an enumerated feature and their number. */
static const char *const *enum_strings(feature_id id, int *count)
{
    switch (id) {
    case F_CYCLE_MODE:
        *count = CYCLE_MODES;
        return cycle_names;
    case F_TRIGGER_MODE:
        *count = TRIGGER_MODES;
        return trigger_names;
    default:
        *count = ENCODINGS;
        return encoding_names;
    }
}

static int enum_available(feature_id id, int index)
{
    return id != F_PIXEL_ENCODING || !config.unavailable[index];
}

static int *enum_target(camera *c, feature_id id)
{
    switch (id) {
    case F_CYCLE_MODE:
        return &c->cycle_mode;
    case F_TRIGGER_MODE:
        return &c->trigger_mode;
    default:
        return &c->encoding;
    }
}

static int copy_out(const char *text, AT_WC *out, int length)
{
    size_t n = strlen(text);
    if (length < 0 || (size_t)length < n + 1)
        return fail(AT_ERR_EXCEEDEDMAXSTRINGLENGTH, "'%s' needs %zu characters, %d given", text,
                    n + 1, length);
    for (size_t i = 0; i < n; i++)
        out[i] = (AT_WC)(unsigned char)text[i];
    out[n] = 0;
    return AT_SUCCESS;
}

static const char *string_value(const call *k)
{
    switch (k->feature->id) {
    case F_SOFTWARE_VERSION:
        return SOFTWARE_VERSION;
    case F_CAMERA_MODEL:
        return config.model->name;
    default:
        return k->camera->serial;
    }
}

/* ---- the library ------------------------------------------------------------------------ */

AT_EXPORT const char *fake_atcore_last_error(void)
{
    return last_error;
}

AT_EXPORT int AT_InitialiseLibrary(void)
{
    pthread_mutex_lock(&library_lock);
    int code = AT_SUCCESS;
    if (!initialised) {
        code = read_configuration(&config);
        if (code == AT_ERR_CONNECTION)
            code = refuse_configuration();
        initialised = code == AT_SUCCESS;
    }
    pthread_mutex_unlock(&library_lock);
    return code;
}

AT_EXPORT int AT_FinaliseLibrary(void)
{
    pthread_mutex_lock(&library_lock);
    int code = AT_SUCCESS;
    if (!initialised) {
        code = fail(AT_ERR_NOTINITIALISED, "AT_InitialiseLibrary has not been called");
    } else {
        for (int k = 0; k < MAX_CAMERAS; k++)
            if (cameras[k] != NULL)
                destroy_camera(cameras[k]);
        initialised = 0;
    }
    pthread_mutex_unlock(&library_lock);
    return code;
}

AT_EXPORT int AT_Open(int camera_index, AT_H *handle)
{
    if (handle == NULL)
        return fail(AT_ERR_NULL_HANDLE, "AT_Open: no place for the handle");
    *handle = AT_HANDLE_UNINITIALISED;
    pthread_mutex_lock(&library_lock);
    int code = AT_SUCCESS;
    faults f = {0};
    if (!initialised)
        code = fail(AT_ERR_NOTINITIALISED, "AT_InitialiseLibrary has not been called");
    else if (camera_index < 0 || camera_index >= config.cameras)
        code = fail(AT_ERR_OUTOFRANGE, "camera %d: DeviceCount is %d", camera_index,
                    config.cameras);
    else if (cameras[camera_index] != NULL)
        code = fail(AT_ERR_DEVICEINUSE, "camera %d is open already (handle %d)", camera_index,
                    cameras[camera_index]->handle);
    else if ((code = read_faults(&f)) == AT_ERR_CONNECTION)
        code = refuse_configuration();
    else if (code == AT_SUCCESS && f.open_error != 0)
        code = fail(f.open_error, "camera %d: open_error=%d of %s", camera_index, f.open_error,
                    FAULTS_ENV);
    if (code == AT_SUCCESS) {
        camera *c = create_camera(camera_index, &f);
        if (c == NULL) {
            code = fail(AT_ERR_NOMEMORY, "out of memory for camera %d", camera_index);
        } else {
            cameras[camera_index] = c;
            *handle = c->handle;
        }
    }
    pthread_mutex_unlock(&library_lock);
    return code;
}

AT_EXPORT int AT_Close(AT_H handle)
{
    pthread_mutex_lock(&library_lock);
    int code = AT_SUCCESS;
    camera *c = initialised ? find_camera(handle) : NULL;
    if (!initialised) {
        code = fail(AT_ERR_NOTINITIALISED, "AT_InitialiseLibrary has not been called");
    } else if (c == NULL) {
        code = fail(AT_ERR_INVALIDHANDLE, "handle %d is not an open camera", handle);
    } else {
        pthread_mutex_lock(&c->lock);
        advance(c, now_ns());
        if (c->vanished)
            code = fail(AT_ERR_CONNECTION, "camera %d (%s) is gone; its handle is released",
                        c->index, c->serial);
        pthread_mutex_unlock(&c->lock);
        destroy_camera(c);
    }
    pthread_mutex_unlock(&library_lock);
    return code;
}

/* ---- features: the C API --------------------------------------------------------------- */

AT_EXPORT int AT_IsImplemented(AT_H handle, const AT_WC *feature_name, AT_BOOL *implemented)
{
    call k;
    int code = enter(handle, feature_name, NEEDS_FEATURE, &k);
    if (code != AT_SUCCESS)
        return code;
    if (implemented == NULL)
        code = fail(AT_ERR_NULL_IMPLEMENTED_VAR, "AT_IsImplemented: no place for the answer");
    else
        *implemented = k.feature != NULL ? AT_TRUE : AT_FALSE;
    leave(&k);
    return code;
}

AT_EXPORT int AT_IsWritable(AT_H handle, const AT_WC *feature_name, AT_BOOL *is_writable)
{
    call k;
    int code = enter(handle, feature_name, NEEDS_FEATURE, &k);
    if (code != AT_SUCCESS)
        return code;
    if (k.feature == NULL)
        code = fail(AT_ERR_NOTIMPLEMENTED, "%s: no such feature on this handle", k.name);
    else if (is_writable == NULL)
        code = fail(AT_ERR_NULL_WRITABLE_VAR, "AT_IsWritable: no place for the answer");
    else
        *is_writable = !k.feature->system && writable(&k) ? AT_TRUE : AT_FALSE;
    leave(&k);
    return code;
}

AT_EXPORT int AT_GetInt(AT_H handle, const AT_WC *feature_name, AT_64 *value)
{
    call k;
    int code = enter_typed(handle, feature_name, T_INT, &k);
    if (code != AT_SUCCESS)
        return code;
    if (value == NULL)
        code = fail(AT_ERR_NULL_VALUE, "AT_GetInt(%s): no place for the value", k.name);
    else
        *value = int_value(&k);
    leave(&k);
    return code;
}

static int int_limit(AT_H handle, const AT_WC *feature_name, AT_64 *value, int maximum)
{
    call k;
    int code = enter_typed(handle, feature_name, T_INT, &k);
    if (code != AT_SUCCESS)
        return code;
    if (value == NULL) {
        code = fail(maximum ? AT_ERR_NULL_MAXVALUE : AT_ERR_NULL_MINVALUE,
                    "%s: no place for the limit", k.name);
    } else {
        int64_t low, high;
        int_range(&k, &low, &high);
        if (!k.feature->settable)
            low = high = int_value(&k);
        *value = maximum ? high : low;
    }
    leave(&k);
    return code;
}

AT_EXPORT int AT_GetIntMax(AT_H handle, const AT_WC *feature_name, AT_64 *value)
{
    return int_limit(handle, feature_name, value, 1);
}

AT_EXPORT int AT_GetIntMin(AT_H handle, const AT_WC *feature_name, AT_64 *value)
{
    return int_limit(handle, feature_name, value, 0);
}

AT_EXPORT int AT_SetInt(AT_H handle, const AT_WC *feature_name, AT_64 value)
{
    call k;
    int code = enter_typed(handle, feature_name, T_INT, &k);
    if (code != AT_SUCCESS)
        return code;
    code = check_writable(&k);
    int64_t low, high;
    int_range(&k, &low, &high);
    if (code == AT_SUCCESS && (value < low || value > high))
        code = fail(AT_ERR_OUTOFRANGE, "%s %lld is outside %lld to %lld", k.name,
                    (long long)value, (long long)low, (long long)high);
    if (code == AT_SUCCESS) {
        camera *c = k.camera;
        switch (k.feature->id) {
        case F_FRAME_COUNT:
            c->frame_count = value;
            break;
        case F_AOI_WIDTH:
            c->aoi_width = value;
            break;
        case F_AOI_HEIGHT:
            c->aoi_height = value;
            break;
        case F_AOI_LEFT:
            c->aoi_left = value;
            break;
        default:
            c->aoi_top = value;
        }
        clamp_frame_rate(c);
    }
    leave(&k);
    return code;
}

static int float_limit(AT_H handle, const AT_WC *feature_name, double *value, int maximum)
{
    call k;
    int code = enter_typed(handle, feature_name, T_FLOAT, &k);
    if (code != AT_SUCCESS)
        return code;
    if (value == NULL) {
        code = fail(maximum ? AT_ERR_NULL_MAXVALUE : AT_ERR_NULL_MINVALUE,
                    "%s: no place for the limit", k.name);
    } else {
        double low, high;
        float_range(&k, &low, &high);
        if (!k.feature->settable)
            low = high = float_value(&k);
        *value = maximum ? high : low;
    }
    leave(&k);
    return code;
}

AT_EXPORT int AT_GetFloat(AT_H handle, const AT_WC *feature_name, double *value)
{
    call k;
    int code = enter_typed(handle, feature_name, T_FLOAT, &k);
    if (code != AT_SUCCESS)
        return code;
    if (value == NULL)
        code = fail(AT_ERR_NULL_VALUE, "AT_GetFloat(%s): no place for the value", k.name);
    else
        *value = float_value(&k);
    leave(&k);
    return code;
}

AT_EXPORT int AT_GetFloatMax(AT_H handle, const AT_WC *feature_name, double *value)
{
    return float_limit(handle, feature_name, value, 1);
}

AT_EXPORT int AT_GetFloatMin(AT_H handle, const AT_WC *feature_name, double *value)
{
    return float_limit(handle, feature_name, value, 0);
}

AT_EXPORT int AT_SetFloat(AT_H handle, const AT_WC *feature_name, double value)
{
    call k;
    int code = enter_typed(handle, feature_name, T_FLOAT, &k);
    if (code != AT_SUCCESS)
        return code;
    code = check_writable(&k);
    double low, high;
    float_range(&k, &low, &high);
    if (code == AT_SUCCESS && !(value >= low && value <= high))
        code = fail(AT_ERR_OUTOFRANGE, "%s %.17g is outside %.17g to %.17g", k.name, value, low,
                    high);
    if (code == AT_SUCCESS) {
        if (k.feature->id == F_EXPOSURE_TIME)
            k.camera->exposure = value;
        else
            k.camera->frame_rate = value;
        clamp_frame_rate(k.camera);
    }
    leave(&k);
    return code;
}

AT_EXPORT int AT_GetBool(AT_H handle, const AT_WC *feature_name, AT_BOOL *value)
{
    call k;
    int code = enter_typed(handle, feature_name, T_BOOL, &k);
    if (code != AT_SUCCESS)
        return code;
    if (value == NULL)
        code = fail(AT_ERR_NULL_VALUE, "AT_GetBool(%s): no place for the value", k.name);
    else if (k.feature->id == F_CAMERA_ACQUIRING)
        *value = acquiring(k.camera, k.now) ? AT_TRUE : AT_FALSE;
    else
        *value = k.camera->overlap ? AT_TRUE : AT_FALSE;
    leave(&k);
    return code;
}

AT_EXPORT int AT_SetBool(AT_H handle, const AT_WC *feature_name, AT_BOOL value)
{
    call k;
    int code = enter_typed(handle, feature_name, T_BOOL, &k);
    if (code != AT_SUCCESS)
        return code;
    code = check_writable(&k);
    if (code == AT_SUCCESS && value != AT_TRUE && value != AT_FALSE)
        code = fail(AT_ERR_OUTOFRANGE, "%s %d is neither AT_TRUE nor AT_FALSE", k.name, value);
    if (code == AT_SUCCESS) {
        k.camera->overlap = value;
        clamp_frame_rate(k.camera);
    }
    leave(&k);
    return code;
}

AT_EXPORT int AT_GetEnumCount(AT_H handle, const AT_WC *feature_name, int *count)
{
    call k;
    int code = enter_typed(handle, feature_name, T_ENUM, &k);
    if (code != AT_SUCCESS)
        return code;
    if (count == NULL)
        code = fail(AT_ERR_NULL_COUNT_VAR, "AT_GetEnumCount(%s): no place for it", k.name);
    else
        enum_strings(k.feature->id, count);
    leave(&k);
    return code;
}

AT_EXPORT int AT_GetEnumIndex(AT_H handle, const AT_WC *feature_name, int *value)
{
    call k;
    int code = enter_typed(handle, feature_name, T_ENUM, &k);
    if (code != AT_SUCCESS)
        return code;
    if (value == NULL)
        code = fail(AT_ERR_NULL_VALUE, "AT_GetEnumIndex(%s): no place for the index", k.name);
    else
        *value = *enum_target(k.camera, k.feature->id);
    leave(&k);
    return code;
}

AT_EXPORT int AT_IsEnumIndexAvailable(AT_H handle, const AT_WC *feature_name, int index,
                                      AT_BOOL *available)
{
    call k;
    int code = enter_typed(handle, feature_name, T_ENUM, &k);
    if (code != AT_SUCCESS)
        return code;
    int count;
    enum_strings(k.feature->id, &count);
    if (available == NULL)
        code = fail(AT_ERR_NULL_ISAVAILABLE_VAR, "AT_IsEnumIndexAvailable(%s): no place for it",
                    k.name);
    else if (index < 0 || index >= count)
        code = fail(AT_ERR_OUTOFRANGE, "%s has indices 0 to %d, not %d", k.name, count - 1,
                    index);
    else
        *available = enum_available(k.feature->id, index) ? AT_TRUE : AT_FALSE;
    leave(&k);
    return code;
}

AT_EXPORT int AT_GetEnumStringByIndex(AT_H handle, const AT_WC *feature_name, int index,
                                      AT_WC *text, int length)
{
    call k;
    int code = enter_typed(handle, feature_name, T_ENUM, &k);
    if (code != AT_SUCCESS)
        return code;
    int count;
    const char *const *strings = enum_strings(k.feature->id, &count);
    if (text == NULL)
        code = fail(AT_ERR_NULL_STRING, "AT_GetEnumStringByIndex(%s): no place for it", k.name);
    else if (index < 0 || index >= count)
        code = fail(AT_ERR_OUTOFRANGE, "%s has indices 0 to %d, not %d", k.name, count - 1,
                    index);
    else
        code = copy_out(strings[index], text, length);
    leave(&k);
    return code;
}

static int set_enum(call *k, int index)
{
    int code = check_writable(k);
    if (code != AT_SUCCESS)
        return code;
    *enum_target(k->camera, k->feature->id) = index;
    clamp_frame_rate(k->camera);
    return AT_SUCCESS;
}

AT_EXPORT int AT_SetEnumIndex(AT_H handle, const AT_WC *feature_name, int index)
{
    call k;
    int code = enter_typed(handle, feature_name, T_ENUM, &k);
    if (code != AT_SUCCESS)
        return code;
    int count;
    enum_strings(k.feature->id, &count);
    if (index < 0 || index >= count)
        code = fail(AT_ERR_INDEXNOTIMPLEMENTED, "%s has indices 0 to %d, not %d", k.name,
                    count - 1, index);
    else if (!enum_available(k.feature->id, index))
        code = fail(AT_ERR_INDEXNOTAVAILABLE, "%s index %d is not available", k.name, index);
    else
        code = set_enum(&k, index);
    leave(&k);
    return code;
}

AT_EXPORT int AT_SetEnumString(AT_H handle, const AT_WC *feature_name, const AT_WC *text)
{
    call k;
    int code = enter_typed(handle, feature_name, T_ENUM, &k);
    if (code != AT_SUCCESS)
        return code;
    int count, found = -1;
    const char *const *strings = enum_strings(k.feature->id, &count);
    for (int i = 0; text != NULL && i < count; i++)
        if (wide_is(text, strings[i]))
            found = i;
    if (text == NULL)
        code = fail(AT_ERR_NULL_STRING, "AT_SetEnumString(%s): no string given", k.name);
    else if (found < 0)
        code = fail(AT_ERR_STRINGNOTIMPLEMENTED, "%s has no such option", k.name);
    else if (!enum_available(k.feature->id, found))
        code = fail(AT_ERR_STRINGNOTAVAILABLE, "%s %s is not available", k.name,
                    strings[found]);
    else
        code = set_enum(&k, found);
    leave(&k);
    return code;
}

AT_EXPORT int AT_GetString(AT_H handle, const AT_WC *feature_name, AT_WC *text, int length)
{
    call k;
    int code = enter_typed(handle, feature_name, T_STRING, &k);
    if (code != AT_SUCCESS)
        return code;
    if (text == NULL)
        code = fail(AT_ERR_NULL_STRING, "AT_GetString(%s): no place for it", k.name);
    else
        code = copy_out(string_value(&k), text, length);
    leave(&k);
    return code;
}

AT_EXPORT int AT_GetStringMaxLength(AT_H handle, const AT_WC *feature_name, int *length)
{
    call k;
    int code = enter_typed(handle, feature_name, T_STRING, &k);
    if (code != AT_SUCCESS)
        return code;
    if (length == NULL)
        code = fail(AT_ERR_NULL_MAXSTRINGLENGTH, "AT_GetStringMaxLength(%s): no place for it",
                    k.name);
    else
        *length = (int)strlen(string_value(&k)) + 1;
    leave(&k);
    return code;
}

/* ---- acquisition ------------------------------------------------------------------------ */

static int start_acquisition(call *k)
{
    camera *c = k->camera;
    int64_t size = image_size_bytes(c);
    for (size_t i = 0; i < c->count; i++) {
        const entry *e = &c->queue[(c->head + i) % QUEUE_CAPACITY];
        if (i >= c->filled && e->size != size)
            return fail(AT_ERR_INVALIDSIZE, "a queued buffer has %d bytes, ImageSizeBytes is "
                        "%lld: flush and queue new ones", e->size, (long long)size);
    }
    series *s = &c->series;
    s->pixels = current_layout(c);
    s->trigger_mode = c->trigger_mode;
    s->limit = c->cycle_mode == CYCLE_FIXED ? c->frame_count : INT64_MAX;
    s->period_ns = seconds_to_ns(1.0 / c->frame_rate);
    s->pulse_ns = seconds_to_ns(config.trigger_period_ms / 1000.0);
    if (s->pulse_ns < 1)
        s->pulse_ns = 1;
    s->delay_ns = seconds_to_ns(config.trigger_delay_ms / 1000.0);
    double exposure = c->trigger_mode == TRIGGER_EXTERNAL_EXPOSURE
                          ? config.trigger_period_ms / 2000.0 /* the pulses are high half the time */
                          : c->exposure;
    s->exposure_ns = seconds_to_ns(exposure);
    s->readout_ns = seconds_to_ns(readout_time(c));
    s->cycle_ns = seconds_to_ns(cycle_time(c, exposure));
    c->start_ns = k->now;
    c->next = 0;
    c->trigger_count = 0;
    c->running = 1;
    pthread_cond_broadcast(&c->changed);
    return AT_SUCCESS;
}

static int software_trigger(call *k)
{
    camera *c = k->camera;
    if (c->trigger_count == c->trigger_capacity) {
        size_t capacity = c->trigger_capacity ? 2 * c->trigger_capacity : 64;
        int64_t *grown = realloc(c->triggers, capacity * sizeof *grown);
        if (grown == NULL)
            return fail(AT_ERR_NOMEMORY, "out of memory for software triggers");
        c->triggers = grown;
        c->trigger_capacity = capacity;
    }
    /* A trigger while the previous frame is still being taken starts the next frame as soon
       as the camera can. */
    int64_t at = k->now;
    if (c->trigger_count > 0) {
        int64_t ready = later(c->triggers[c->trigger_count - 1], c->series.cycle_ns, 1);
        at = ready > at ? ready : at;
    }
    c->triggers[c->trigger_count++] = at;
    pthread_cond_broadcast(&c->changed);
    return AT_SUCCESS;
}

AT_EXPORT int AT_Command(AT_H handle, const AT_WC *feature_name)
{
    call k;
    int code = enter_typed(handle, feature_name, T_COMMAND, &k);
    if (code != AT_SUCCESS)
        return code;
    if (!writable(&k))
        code = fail(AT_ERR_NOTWRITABLE, k.feature->id == F_SOFTWARE_TRIGGER
                                            ? "SoftwareTrigger needs an acquisition in "
                                              "TriggerMode Software with frames to come"
                                            : "AcquisitionStart: the camera acquires already");
    else if (k.feature->id == F_ACQUISITION_START)
        code = start_acquisition(&k);
    else if (k.feature->id == F_SOFTWARE_TRIGGER)
        code = software_trigger(&k);
    else if (k.camera->running) {
        k.camera->running = 0;
        pthread_cond_broadcast(&k.camera->changed);
    }
    leave(&k);
    return code;
}

AT_EXPORT int AT_QueueBuffer(AT_H handle, AT_U8 *data, int size)
{
    call k;
    int code = enter(handle, NULL, 0, &k);
    if (code != AT_SUCCESS)
        return code;
    camera *c = k.camera;
    int64_t expected = c != NULL ? image_size_bytes(c) : 0;
    if (c == NULL)
        code = fail(AT_ERR_INVALIDHANDLE, "AT_QueueBuffer needs a camera's handle");
    else if (data == NULL)
        code = fail(AT_ERR_NULL_QUEUE_PTR, "AT_QueueBuffer: no buffer given");
    else if ((uintptr_t)data % 8 != 0)
        code = fail(AT_ERR_INVALIDALIGNMENT, "buffer %p is not 8-byte aligned", (void *)data);
    else if (size != expected)
        code = fail(AT_ERR_INVALIDSIZE, "buffer of %d bytes, ImageSizeBytes is %lld", size,
                    (long long)expected);
    else if (c->count == QUEUE_CAPACITY)
        code = fail(AT_ERR_BUFFERFULL, "%d buffers are queued already", QUEUE_CAPACITY);
    else {
        entry *e = &c->queue[(c->head + c->count) % QUEUE_CAPACITY];
        memset(e, 0, sizeof *e);
        e->data = data;
        e->size = size;
        c->count++;
    }
    leave(&k);
    return code;
}

AT_EXPORT int AT_Flush(AT_H handle)
{
    call k;
    int code = enter(handle, NULL, 0, &k);
    if (code != AT_SUCCESS)
        return code;
    if (k.camera == NULL) {
        code = fail(AT_ERR_INVALIDHANDLE, "AT_Flush needs a camera's handle");
    } else {
        k.camera->head = k.camera->count = k.camera->filled = 0;
    }
    leave(&k);
    return code;
}

/* Buffers filled before the camera vanished are still delivered, so that a client gets
   exactly the frames before vanish_after (given enough buffers); then AT_ERR_CONNECTION. */
AT_EXPORT int AT_WaitBuffer(AT_H handle, AT_U8 **data, int *size, unsigned int timeout_ms)
{
    call k;
    int code = enter(handle, NULL, WHILE_VANISHED, &k);
    if (code != AT_SUCCESS)
        return code;
    camera *c = k.camera;
    if (c == NULL || data == NULL || size == NULL) {
        code = c == NULL      ? fail(AT_ERR_INVALIDHANDLE, "AT_WaitBuffer needs a camera's handle")
               : data == NULL ? fail(AT_ERR_NULL_WAIT_PTR, "AT_WaitBuffer: no place for the "
                                     "buffer")
                              : fail(AT_ERR_NULL_PTRSIZE, "AT_WaitBuffer: no place for the size");
        leave(&k);
        return code;
    }
    int64_t deadline = timeout_ms == AT_INFINITE ? NEVER
                                                 : later(k.now, 1000000, (int64_t)timeout_ms);
    entry got = {0};
    c->waiters++;
    for (;;) {
        int64_t now = now_ns();
        advance(c, now);
        if (c->closing) {
            code = fail(AT_ERR_INVALIDHANDLE, "the camera was closed during AT_WaitBuffer");
            break;
        }
        if (c->filled > 0) {
            got = c->queue[c->head];
            c->head = (c->head + 1) % QUEUE_CAPACITY;
            c->count--;
            c->filled--;
            code = AT_SUCCESS;
            break;
        }
        if (c->vanished) {
            code = fail(AT_ERR_CONNECTION, "camera %d (%s) is gone: it stopped answering",
                        c->index, c->serial);
            break;
        }
        if (!acquiring(c, now)) {
            code = fail(AT_ERR_NODATA, "no acquisition runs and no filled buffer is left");
            break;
        }
        if (now >= deadline) {
            code = fail(AT_ERR_TIMEDOUT, "no buffer was filled within %u ms", timeout_ms);
            break;
        }
        int64_t due = frame_due(c, c->next), wake = due < deadline ? due : deadline;
        if (wake == NEVER) {
            pthread_cond_wait(&c->changed, &c->lock);
        } else {
            struct timespec until = timespec_at(wake);
            pthread_cond_timedwait(&c->changed, &c->lock, &until);
        }
    }
    c->waiters--;
    if (c->closing)
        pthread_cond_broadcast(&c->changed);
    leave(&k);
    if (code != AT_SUCCESS)
        return code;
    /* The buffer is the caller's now: write its pixels without holding up the camera. */
    write_frame(&got);
    *data = got.data;
    *size = got.size;
    return AT_SUCCESS;
}
