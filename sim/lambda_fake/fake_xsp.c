/*
 * fake_xsp.c - a fake XSpectrum Lambda system behind lambda_sdk.h, for tests and demos.
 *
 * It implements every call of the C API the site's shim over libxsp implements, so the
 * binding, the streamer and the tests run the same code path as on a DCU. There is no
 * hardware and no producer thread: a module's frame k is "due" at a time the trigger mode
 * gives (see due_ns), and lsdk_next_frame waits until then and makes the frame in the
 * caller's thread. Frame contents follow a formula (sim.lambda_fake.expected_frame is the
 * same in numpy) so that a test can check every pixel.
 *
 * The system file and its keys: sim/lambda_fake/system_file.py (the Python model that
 * writes it) and the package docstring. Faults (lost, missing, corrupt frames, a stalled
 * module, a module that cannot be reached at open) come from the file or from the
 * environment variable LAMBDA_FAKE_FAULTS.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strdup, strtok_r; Python.h defines it when cffi includes this file */
#endif
#include "../../streamers/lambda_sdk/lambda_sdk.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LSDK_EXPORT __attribute__((visibility("default")))

#define MAX_MODULES 64
#define ID_SIZE 64
#define ERROR_SIZE 1024
#define LINE_SIZE 4096
#define FAULTS_ENV "LAMBDA_FAKE_FAULTS"

enum { FAULT_LOSE, FAULT_MISSING, FAULT_CORRUPT, FAULT_STALL, FAULT_KINDS };

static const char *const fault_keys[FAULT_KINDS] = {
    "lose_frame", "missing_frame", "corrupt_frame", "stall_module"};

/* One (module index, frame number) pair of a fault list. */
typedef struct {
    int32_t module;
    int64_t frame;
} fault;

typedef struct {
    fault *items;
    size_t count;
    size_t capacity;
} fault_list;

/* What the setters set; a start copies them into the series it begins. */
typedef struct {
    int64_t frame_count;
    double shutter_ms;
    int32_t trigger_mode;
} settings;

/* A frame buffer a module delivers from; held from next_frame until release. */
typedef struct {
    void *data;
    int64_t number;
    int held;
} slot;

typedef struct {
    char id[ID_SIZE];
    int32_t index;
    int32_t x;
    int32_t y;
    int32_t rotation;
    void *base;          /* (index*1021 + r*3 + c) & mask, computed once at open */
    slot *slots;         /* `buffers` of them, their data allocated when first needed */
    int64_t next;        /* the next frame of the series to consider */
    int64_t stall_from;  /* first frame the module never delivers, or -1 */
    fault_list faults[FAULT_KINDS]; /* this module's frames of each fault kind */
} module;

struct lsdk_system {
    char id[ID_SIZE];
    int32_t module_count;
    int32_t detector_modules;
    int32_t full_height;
    int32_t full_width;
    int32_t height;
    int32_t width;
    int32_t depth;
    int32_t bytes_per_pixel;
    double max_frame_rate;
    int32_t buffers;
    double trigger_period_ms;
    double trigger_delay_ms;
    module modules[MAX_MODULES];

    pthread_mutex_t lock;
    pthread_cond_t changed; /* signalled by stop and start, so waiting readers look again */
    settings next;          /* what the next start uses */
    settings series;        /* what the last start used */
    int started;            /* a series was started (and maybe stopped or over since) */
    int stopped;
    int64_t start_ns;
    int64_t stop_ns;
};

static _Thread_local char last_error[ERROR_SIZE];

__attribute__((format(printf, 2, 3))) static int fail(int code, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(last_error, sizeof last_error, format, args);
    va_end(args);
    return code;
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Nanoseconds of a time in ms, at most NEVER_NS (a due time that no test or demo reaches,
   far enough from INT64_MAX that adding a start time cannot overflow). */
#define NEVER_NS (INT64_MAX / 4)

static int64_t ms_to_ns(double ms)
{
    double ns = ms * 1e6;
    return ns >= (double)NEVER_NS ? NEVER_NS : (int64_t)llround(ns);
}

/* ---- the system file ---------------------------------------------------------------- */

/* What is read from the file (and the environment) before the system is built. */
typedef struct {
    const char *path;
    char id[ID_SIZE];
    int32_t height;
    int32_t width;
    int32_t depth;
    int32_t detector_modules;
    int32_t full_height;
    int32_t full_width;
    double max_frame_rate;
    int32_t buffers;
    double trigger_period_ms;
    double trigger_delay_ms;
    int32_t module_count;
    module modules[MAX_MODULES];
    fault_list faults[FAULT_KINDS];
    char open_error[ERROR_SIZE];
    int has_open_error;
} config;

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

static int parse_int(const char *text, int32_t minimum, int32_t *value)
{
    long long parsed;
    if (!parse_long(text, minimum, INT32_MAX, &parsed))
        return 0;
    *value = (int32_t)parsed;
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

static int fault_add(fault_list *list, int32_t module_index, int64_t frame)
{
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? 2 * list->capacity : 8;
        fault *items = realloc(list->items, capacity * sizeof *items);
        if (items == NULL)
            return 0;
        list->items = items;
        list->capacity = capacity;
    }
    list->items[list->count].module = module_index;
    list->items[list->count].frame = frame;
    list->count++;
    return 1;
}

static void fault_free(fault_list *list)
{
    free(list->items);
    list->items = NULL;
    list->count = list->capacity = 0;
}

static int fault_has(const fault_list *list, int64_t frame)
{
    for (size_t i = 0; i < list->count; i++)
        if (list->items[i].frame == frame)
            return 1;
    return 0;
}

/* "M:N,M:N" into list; 0 with the failing item's text in bad when it is not M:N. */
static int parse_faults(char *value, fault_list *list, const char **bad)
{
    char *save = NULL;
    for (char *item = strtok_r(value, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        item = trim(item);
        *bad = item;
        char *colon = strchr(item, ':');
        long long module_index, frame;
        if (colon == NULL)
            return 0;
        *colon = '\0';
        int ok = parse_long(trim(item), 0, INT32_MAX, &module_index)
                 && parse_long(trim(colon + 1), 0, INT64_MAX, &frame);
        *colon = ':';
        if (!ok)
            return 0;
        if (!fault_add(list, (int32_t)module_index, frame))
            return -1;
    }
    return 1;
}

static int fault_kind(const char *key)
{
    for (int kind = 0; kind < FAULT_KINDS; kind++)
        if (strcmp(key, fault_keys[kind]) == 0)
            return kind;
    return -1;
}

/* A fault key or open_error, from the file or the environment; where says which line. */
static int apply_fault(config *cfg, const char *key, char *value, const char *where)
{
    if (strcmp(key, "open_error") == 0) {
        snprintf(cfg->open_error, sizeof cfg->open_error, "%s", value);
        cfg->has_open_error = 1;
        return LSDK_OK;
    }
    int kind = fault_kind(key);
    if (kind < 0)
        return fail(LSDK_ERR_RESOURCE, "%s: unknown key '%s'", where, key);
    const char *bad = value;
    int parsed = parse_faults(value, &cfg->faults[kind], &bad);
    if (parsed < 0)
        return fail(LSDK_ERR_RESOURCE, "%s: out of memory", where);
    if (parsed == 0)
        return fail(LSDK_ERR_RESOURCE,
                    "%s: bad value '%s' of key '%s': expected module:frame pairs such as 0:5,1:7",
                    where, bad, key);
    return LSDK_OK;
}

static int parse_module(config *cfg, char *value, const char *where)
{
    if (cfg->module_count == MAX_MODULES)
        return fail(LSDK_ERR_RESOURCE, "%s: more than %d modules", where, MAX_MODULES);
    module *m = &cfg->modules[cfg->module_count];
    char id[LINE_SIZE], extra[2];
    long long index, x, y, rotation;
    char index_text[64], x_text[64], y_text[64], rotation_text[64];
    int fields = sscanf(value, "%4095s %63s %63s %63s %63s %1s", id, index_text, x_text, y_text,
                        rotation_text, extra);
    if (fields != 5 || !parse_long(index_text, 0, MAX_MODULES - 1, &index)
        || !parse_long(x_text, 0, INT32_MAX, &x) || !parse_long(y_text, 0, INT32_MAX, &y)
        || !parse_long(rotation_text, 0, 3, &rotation))
        return fail(LSDK_ERR_RESOURCE,
                    "%s: bad value '%s' of key 'module': expected '<id> <index> <x> <y> "
                    "<rotation>' with index 0..%d and rotation 0..3 quarter turns",
                    where, value, MAX_MODULES - 1);
    if (strlen(id) >= ID_SIZE)
        return fail(LSDK_ERR_RESOURCE, "%s: module id '%s' is longer than %d characters", where,
                    id, ID_SIZE - 1);
    for (int32_t k = 0; k < cfg->module_count; k++) {
        if (strcmp(cfg->modules[k].id, id) == 0 || cfg->modules[k].index == index)
            return fail(LSDK_ERR_RESOURCE, "%s: module '%s' (index %lld) repeats module '%s' "
                        "(index %d)", where, id, index, cfg->modules[k].id,
                        cfg->modules[k].index);
    }
    snprintf(m->id, sizeof m->id, "%s", id);
    m->index = (int32_t)index;
    m->x = (int32_t)x;
    m->y = (int32_t)y;
    m->rotation = (int32_t)rotation;
    cfg->module_count++;
    return LSDK_OK;
}

static int apply_key(config *cfg, const char *key, char *value, const char *where)
{
    int ok = 1;
    if (strcmp(key, "system_id") == 0) {
        if (strlen(value) >= ID_SIZE || value[0] == '\0')
            return fail(LSDK_ERR_RESOURCE, "%s: system_id must have 1 to %d characters", where,
                        ID_SIZE - 1);
        snprintf(cfg->id, sizeof cfg->id, "%s", value);
    } else if (strcmp(key, "module_height") == 0) {
        ok = parse_int(value, 1, &cfg->height);
    } else if (strcmp(key, "module_width") == 0) {
        ok = parse_int(value, 1, &cfg->width);
    } else if (strcmp(key, "depth") == 0) {
        ok = parse_int(value, 1, &cfg->depth);
        if (ok && cfg->depth != 12 && cfg->depth != 24)
            return fail(LSDK_ERR_ARGUMENT, "%s: depth %d: the fake Lambda supports 12 and 24",
                        where, cfg->depth);
    } else if (strcmp(key, "detector_modules") == 0) {
        ok = parse_int(value, 1, &cfg->detector_modules);
    } else if (strcmp(key, "full_height") == 0) {
        ok = parse_int(value, 1, &cfg->full_height);
    } else if (strcmp(key, "full_width") == 0) {
        ok = parse_int(value, 1, &cfg->full_width);
    } else if (strcmp(key, "max_frame_rate") == 0) {
        ok = parse_double(value, 0.0, 0, &cfg->max_frame_rate);
    } else if (strcmp(key, "buffers") == 0) {
        ok = parse_int(value, 1, &cfg->buffers);
    } else if (strcmp(key, "trigger_period_ms") == 0) {
        ok = parse_double(value, 0.0, 0, &cfg->trigger_period_ms);
    } else if (strcmp(key, "trigger_delay_ms") == 0) {
        ok = parse_double(value, 0.0, 1, &cfg->trigger_delay_ms);
    } else if (strcmp(key, "module") == 0) {
        return parse_module(cfg, value, where);
    } else {
        return apply_fault(cfg, key, value, where);
    }
    if (!ok)
        return fail(LSDK_ERR_RESOURCE, "%s: bad value '%s' of key '%s'", where, value, key);
    return LSDK_OK;
}

static int read_file(config *cfg)
{
    FILE *file = fopen(cfg->path, "r");
    if (file == NULL)
        return fail(LSDK_ERR_RESOURCE, "cannot open the system file %s: %s", cfg->path,
                    strerror(errno));
    char line[LINE_SIZE], where[LINE_SIZE + 64];
    int code = LSDK_OK;
    for (int number = 1; code == LSDK_OK && fgets(line, sizeof line, file) != NULL; number++) {
        snprintf(where, sizeof where, "%s line %d", cfg->path, number);
        if (strchr(line, '\n') == NULL && !feof(file)) {
            code = fail(LSDK_ERR_RESOURCE, "%s: longer than %d characters", where, LINE_SIZE - 2);
            break;
        }
        char *text = trim(line);
        if (text[0] == '\0' || text[0] == '#')
            continue;
        char *equals = strchr(text, '=');
        if (equals == NULL) {
            code = fail(LSDK_ERR_RESOURCE, "%s: expected 'key = value', got '%s'", where, text);
            break;
        }
        *equals = '\0';
        code = apply_key(cfg, trim(text), trim(equals + 1), where);
    }
    if (code == LSDK_OK && ferror(file))
        code = fail(LSDK_ERR_RESOURCE, "cannot read the system file %s", cfg->path);
    fclose(file);
    return code;
}

/* LAMBDA_FAKE_FAULTS: "key=value;key=value" with the fault keys and open_error. */
static int read_environment(config *cfg)
{
    const char *env = getenv(FAULTS_ENV);
    if (env == NULL || env[0] == '\0')
        return LSDK_OK;
    char *copy = strdup(env);
    if (copy == NULL)
        return fail(LSDK_ERR_RESOURCE, "out of memory");
    int code = LSDK_OK;
    char *save = NULL;
    for (char *item = strtok_r(copy, ";", &save); code == LSDK_OK && item != NULL;
         item = strtok_r(NULL, ";", &save)) {
        item = trim(item);
        if (item[0] == '\0')
            continue;
        char *equals = strchr(item, '=');
        if (equals == NULL) {
            code = fail(LSDK_ERR_RESOURCE, "%s: expected key=value, got '%s'", FAULTS_ENV, item);
            break;
        }
        *equals = '\0';
        code = apply_fault(cfg, trim(item), trim(equals + 1), FAULTS_ENV);
    }
    free(copy);
    return code;
}

static int check_config(config *cfg)
{
    if (cfg->module_count == 0)
        return fail(LSDK_ERR_RESOURCE, "%s: no 'module = <id> <index> <x> <y> <rotation>' line",
                    cfg->path);
    if (cfg->detector_modules == 0)
        cfg->detector_modules = cfg->module_count;
    int32_t bottom = 0, right = 0;
    for (int32_t k = 0; k < cfg->module_count; k++) {
        const module *m = &cfg->modules[k];
        if (m->index >= cfg->detector_modules)
            return fail(LSDK_ERR_RESOURCE, "%s: module '%s' has index %d, but the detector has "
                        "%d modules (detector_modules)", cfg->path, m->id, m->index,
                        cfg->detector_modules);
        int turned = m->rotation % 2 == 1;
        int64_t rows = turned ? cfg->width : cfg->height;
        int64_t columns = turned ? cfg->height : cfg->width;
        if (m->y + rows > INT32_MAX || m->x + columns > INT32_MAX)
            return fail(LSDK_ERR_RESOURCE, "%s: module '%s' lies beyond any image", cfg->path,
                        m->id);
        if (m->y + rows > bottom)
            bottom = (int32_t)(m->y + rows);
        if (m->x + columns > right)
            right = (int32_t)(m->x + columns);
    }
    if (cfg->full_height == 0)
        cfg->full_height = bottom;
    if (cfg->full_width == 0)
        cfg->full_width = right;
    if (bottom > cfg->full_height || right > cfg->full_width)
        return fail(LSDK_ERR_RESOURCE, "%s: the modules reach row %d and column %d, beyond the "
                    "full image of %d x %d (full_height, full_width)", cfg->path, bottom, right,
                    cfg->full_height, cfg->full_width);
    if (cfg->max_frame_rate == 0.0)
        cfg->max_frame_rate = cfg->depth == 12 ? 2000.0 : 1000.0;
    if (cfg->id[0] == '\0') {
        const char *name = strrchr(cfg->path, '/');
        snprintf(cfg->id, sizeof cfg->id, "%s", name ? name + 1 : cfg->path);
        char *dot = strrchr(cfg->id, '.');
        if (dot != NULL && dot != cfg->id)
            *dot = '\0';
    }
    return LSDK_OK;
}

static void config_free(config *cfg)
{
    for (int kind = 0; kind < FAULT_KINDS; kind++)
        fault_free(&cfg->faults[kind]);
}

/* ---- the system -------------------------------------------------------------------- */

static size_t frame_pixels(const lsdk_system *s)
{
    return (size_t)s->height * (size_t)s->width;
}

static uint32_t depth_mask(const lsdk_system *s)
{
    return (1u << s->depth) - 1u;
}

static void module_free(lsdk_system *s, module *m)
{
    if (m->slots != NULL)
        for (int32_t k = 0; k < s->buffers; k++)
            free(m->slots[k].data);
    free(m->slots);
    free(m->base);
    for (int kind = 0; kind < FAULT_KINDS; kind++)
        fault_free(&m->faults[kind]);
}

/* The base pattern, the slots and this module's own faults; 0 when out of memory. */
static int module_prepare(lsdk_system *s, module *m, const config *cfg)
{
    size_t width = (size_t)s->width, pixels = frame_pixels(s);
    uint32_t mask = depth_mask(s);
    uint32_t offset = (uint32_t)(((int64_t)m->index * 1021) & mask);
    m->base = malloc(pixels * (size_t)s->bytes_per_pixel);
    m->slots = calloc((size_t)s->buffers, sizeof *m->slots);
    if (m->base == NULL || m->slots == NULL)
        return 0;
    for (size_t r = 0; r < (size_t)s->height; r++)
        for (size_t c = 0; c < width; c++) {
            uint32_t value = (offset + (uint32_t)((r * 3 + c) & mask)) & mask;
            if (s->bytes_per_pixel == 2)
                ((uint16_t *)m->base)[r * width + c] = (uint16_t)value;
            else
                ((uint32_t *)m->base)[r * width + c] = value;
        }
    m->stall_from = -1;
    for (int kind = 0; kind < FAULT_KINDS; kind++) {
        const fault_list *all = &cfg->faults[kind];
        for (size_t i = 0; i < all->count; i++) {
            if (all->items[i].module != m->index)
                continue;
            if (kind == FAULT_STALL) {
                if (m->stall_from < 0 || all->items[i].frame < m->stall_from)
                    m->stall_from = all->items[i].frame;
            } else if (!fault_add(&m->faults[kind], m->index, all->items[i].frame)) {
                return 0;
            }
        }
    }
    return 1;
}

static void system_free(lsdk_system *s)
{
    for (int32_t k = 0; k < s->module_count; k++)
        module_free(s, &s->modules[k]);
    free(s);
}

static int system_build(const config *cfg, lsdk_system **result)
{
    lsdk_system *s = calloc(1, sizeof *s);
    if (s == NULL)
        return fail(LSDK_ERR_RESOURCE, "out of memory");
    snprintf(s->id, sizeof s->id, "%s", cfg->id);
    s->module_count = cfg->module_count;
    s->detector_modules = cfg->detector_modules;
    s->full_height = cfg->full_height;
    s->full_width = cfg->full_width;
    s->height = cfg->height;
    s->width = cfg->width;
    s->depth = cfg->depth;
    s->bytes_per_pixel = cfg->depth == 12 ? 2 : 4;
    s->max_frame_rate = cfg->max_frame_rate;
    s->buffers = cfg->buffers;
    s->trigger_period_ms = cfg->trigger_period_ms;
    s->trigger_delay_ms = cfg->trigger_delay_ms;
    s->next.frame_count = 1;
    s->next.shutter_ms = 1000.0 / cfg->max_frame_rate > 1.0 ? 1000.0 / cfg->max_frame_rate : 1.0;
    s->next.trigger_mode = LSDK_TRIGGER_SOFTWARE;
    for (int32_t k = 0; k < cfg->module_count; k++) {
        s->modules[k] = cfg->modules[k];
        if (!module_prepare(s, &s->modules[k], cfg)) {
            s->module_count = k + 1;
            system_free(s);
            return fail(LSDK_ERR_RESOURCE, "out of memory for the frames of module '%s'",
                        cfg->modules[k].id);
        }
    }
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&s->changed, &attributes);
    pthread_condattr_destroy(&attributes);
    pthread_mutex_init(&s->lock, NULL);
    *result = s;
    return LSDK_OK;
}

/* When frame k of the series is due, in ns after its start. */
static int64_t due_ns(const lsdk_system *s, int64_t k)
{
    double shutter = s->series.shutter_ms, delay = s->trigger_delay_ms;
    switch (s->series.trigger_mode) {
    case LSDK_TRIGGER_EXT_SEQUENCE:
        return ms_to_ns(delay + (double)(k + 1) * shutter);
    case LSDK_TRIGGER_EXT_FRAMES:
        return ms_to_ns(delay + (double)k * s->trigger_period_ms + shutter);
    default:
        return ms_to_ns((double)(k + 1) * shutter);
    }
}

static int is_busy(const lsdk_system *s, int64_t now)
{
    return s->started && !s->stopped && now - s->start_ns < due_ns(s, s->series.frame_count - 1);
}

static int refuse_if_busy(const lsdk_system *s, const char *what)
{
    if (is_busy(s, now_ns()))
        return fail(LSDK_ERR_STATE, "cannot set the %s while the detector is acquiring: stop "
                    "first", what);
    return LSDK_OK;
}

/* 16 bytes of pixels: GCC's and Clang's vector extension, so the loops below are SIMD at
   plain -O2 (GCC 12's -O2 cost model does not vectorise a loop of unknown length). */
typedef uint16_t pixels16 __attribute__((vector_size(16)));
typedef uint32_t pixels32 __attribute__((vector_size(16)));

/* Frame n of a module: the base pattern plus n*7, masked to the depth. The buffers come from
   malloc, so they are 16-byte aligned, and the vector loop covers all but a short tail. */
static void fill_frame(const lsdk_system *s, const module *m, int64_t number, void *data)
{
    size_t pixels = frame_pixels(s);
    uint32_t mask = depth_mask(s);
    uint32_t add = (uint32_t)((number * 7) & mask);
    if (s->bytes_per_pixel == 2) {
        const uint16_t *base = m->base;
        uint16_t *out = data;
        size_t lanes = sizeof(pixels16) / sizeof(uint16_t), whole = pixels / lanes * lanes;
        pixels16 add16 = {0}, mask16 = {0};
        add16 += (uint16_t)add;
        mask16 += (uint16_t)mask;
        for (size_t i = 0; i < whole; i += lanes)
            *(pixels16 *)(out + i) = (*(const pixels16 *)(base + i) + add16) & mask16;
        for (size_t i = whole; i < pixels; i++)
            out[i] = (uint16_t)((base[i] + add) & mask);
    } else {
        const uint32_t *base = m->base;
        uint32_t *out = data;
        size_t lanes = sizeof(pixels32) / sizeof(uint32_t), whole = pixels / lanes * lanes;
        pixels32 add32 = {0}, mask32 = {0};
        add32 += add;
        mask32 += mask;
        for (size_t i = 0; i < whole; i += lanes)
            *(pixels32 *)(out + i) = (*(const pixels32 *)(base + i) + add32) & mask32;
        for (size_t i = whole; i < pixels; i++)
            out[i] = (base[i] + add) & mask;
    }
}

static struct timespec deadline_at(int64_t ns)
{
    struct timespec t = {.tv_sec = (time_t)(ns / 1000000000), .tv_nsec = (long)(ns % 1000000000)};
    return t;
}

/* ---- the C API --------------------------------------------------------------------- */

LSDK_EXPORT const char *lsdk_version(void)
{
    return "fake-xsp 1.0 (detector-daq sim)";
}

LSDK_EXPORT const char *lsdk_last_error(void)
{
    return last_error;
}

LSDK_EXPORT int lsdk_open(const char *config_path, lsdk_system **system)
{
    if (system == NULL)
        return fail(LSDK_ERR_ARGUMENT, "lsdk_open: no place for the system handle");
    *system = NULL;
    if (config_path == NULL)
        return fail(LSDK_ERR_ARGUMENT, "lsdk_open: no system file given");
    config *cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL)
        return fail(LSDK_ERR_RESOURCE, "out of memory");
    cfg->path = config_path;
    cfg->height = 512;
    cfg->width = 1536;
    cfg->depth = 12;
    cfg->buffers = 1024;
    cfg->trigger_period_ms = 2.0;
    cfg->trigger_delay_ms = 20.0;
    int code = read_file(cfg);
    if (code == LSDK_OK)
        code = read_environment(cfg);
    if (code == LSDK_OK)
        code = check_config(cfg);
    if (code == LSDK_OK && cfg->has_open_error)
        code = fail(LSDK_ERR_HARDWARE, "%s", cfg->open_error);
    if (code == LSDK_OK)
        code = system_build(cfg, system);
    config_free(cfg);
    free(cfg);
    return code;
}

LSDK_EXPORT void lsdk_close(lsdk_system *system)
{
    if (system == NULL)
        return;
    pthread_cond_destroy(&system->changed);
    pthread_mutex_destroy(&system->lock);
    system_free(system);
}

LSDK_EXPORT int lsdk_system_info_get(lsdk_system *system, lsdk_system_info *info)
{
    if (system == NULL || info == NULL)
        return fail(LSDK_ERR_ARGUMENT, "lsdk_system_info_get: null argument");
    memset(info, 0, sizeof *info);
    snprintf(info->id, sizeof info->id, "%s", system->id);
    info->module_count = system->module_count;
    info->detector_modules = system->detector_modules;
    info->full_height = system->full_height;
    info->full_width = system->full_width;
    return LSDK_OK;
}

LSDK_EXPORT int lsdk_module_info_get(lsdk_system *system, int32_t module_position,
                                     lsdk_module_info *info)
{
    if (system == NULL || info == NULL)
        return fail(LSDK_ERR_ARGUMENT, "lsdk_module_info_get: null argument");
    if (module_position < 0 || module_position >= system->module_count)
        return fail(LSDK_ERR_ARGUMENT, "module %d: this system serves modules 0 to %d",
                    module_position, system->module_count - 1);
    const module *m = &system->modules[module_position];
    memset(info, 0, sizeof *info);
    snprintf(info->id, sizeof info->id, "%s", m->id);
    info->index = m->index;
    info->height = system->height;
    info->width = system->width;
    info->depth = system->depth;
    info->bytes_per_pixel = system->bytes_per_pixel;
    info->x = m->x;
    info->y = m->y;
    info->rotation = m->rotation;
    return LSDK_OK;
}

LSDK_EXPORT int lsdk_set_frame_count(lsdk_system *system, int64_t frames)
{
    if (system == NULL)
        return fail(LSDK_ERR_ARGUMENT, "lsdk_set_frame_count: no system");
    pthread_mutex_lock(&system->lock);
    int code = refuse_if_busy(system, "frame count");
    if (code == LSDK_OK && frames < 1)
        code = fail(LSDK_ERR_ARGUMENT, "frame count %lld: at least 1 frame", (long long)frames);
    if (code == LSDK_OK)
        system->next.frame_count = frames;
    pthread_mutex_unlock(&system->lock);
    return code;
}

LSDK_EXPORT int lsdk_set_shutter_time(lsdk_system *system, double milliseconds)
{
    if (system == NULL)
        return fail(LSDK_ERR_ARGUMENT, "lsdk_set_shutter_time: no system");
    double minimum = 1000.0 / system->max_frame_rate;
    pthread_mutex_lock(&system->lock);
    int code = refuse_if_busy(system, "shutter time");
    if (code == LSDK_OK && !(milliseconds > 0.0 && isfinite(milliseconds)))
        code = fail(LSDK_ERR_ARGUMENT, "shutter time %g ms: must be a positive time",
                    milliseconds);
    else if (code == LSDK_OK && milliseconds < minimum * (1.0 - 1e-9))
        code = fail(LSDK_ERR_ARGUMENT,
                    "shutter time %g ms is below the minimum of %g ms for %d-bit mode",
                    milliseconds, minimum, system->depth);
    if (code == LSDK_OK)
        system->next.shutter_ms = milliseconds;
    pthread_mutex_unlock(&system->lock);
    return code;
}

LSDK_EXPORT int lsdk_set_trigger_mode(lsdk_system *system, int32_t mode)
{
    if (system == NULL)
        return fail(LSDK_ERR_ARGUMENT, "lsdk_set_trigger_mode: no system");
    pthread_mutex_lock(&system->lock);
    int code = refuse_if_busy(system, "trigger mode");
    if (code == LSDK_OK && mode != LSDK_TRIGGER_SOFTWARE && mode != LSDK_TRIGGER_EXT_SEQUENCE
        && mode != LSDK_TRIGGER_EXT_FRAMES)
        code = fail(LSDK_ERR_ARGUMENT, "trigger mode %d is not one of 0 (software), 1 (external "
                    "sequence), 2 (external frames)", mode);
    if (code == LSDK_OK)
        system->next.trigger_mode = mode;
    pthread_mutex_unlock(&system->lock);
    return code;
}

LSDK_EXPORT int lsdk_start(lsdk_system *system)
{
    if (system == NULL)
        return fail(LSDK_ERR_ARGUMENT, "lsdk_start: no system");
    pthread_mutex_lock(&system->lock);
    int64_t now = now_ns();
    int code = LSDK_OK;
    if (is_busy(system, now)) {
        code = fail(LSDK_ERR_STATE, "the detector is already acquiring: stop first");
    } else {
        system->series = system->next;
        system->started = 1;
        system->stopped = 0;
        system->start_ns = now;
        for (int32_t k = 0; k < system->module_count; k++)
            system->modules[k].next = 0;
        pthread_cond_broadcast(&system->changed);
    }
    pthread_mutex_unlock(&system->lock);
    return code;
}

LSDK_EXPORT int lsdk_stop(lsdk_system *system)
{
    if (system == NULL)
        return fail(LSDK_ERR_ARGUMENT, "lsdk_stop: no system");
    pthread_mutex_lock(&system->lock);
    if (system->started && !system->stopped) {
        system->stopped = 1;
        system->stop_ns = now_ns();
        pthread_cond_broadcast(&system->changed);
    }
    pthread_mutex_unlock(&system->lock);
    return LSDK_OK;
}

LSDK_EXPORT int lsdk_is_busy(lsdk_system *system, int32_t *busy)
{
    if (system == NULL || busy == NULL)
        return fail(LSDK_ERR_ARGUMENT, "lsdk_is_busy: null argument");
    pthread_mutex_lock(&system->lock);
    *busy = is_busy(system, now_ns());
    pthread_mutex_unlock(&system->lock);
    return LSDK_OK;
}

enum { NO_MORE = -1, STALLED = -2 };

/* The next frame the module delivers from m->next on (lost frames are skipped), NO_MORE when
   the series has no more for it, STALLED when it has stalled. */
static int64_t next_delivered(const lsdk_system *s, const module *m)
{
    for (int64_t k = m->next; k < s->series.frame_count; k++) {
        if (m->stall_from >= 0 && k >= m->stall_from)
            return STALLED;
        if (!fault_has(&m->faults[FAULT_LOSE], k))
            return k;
    }
    return NO_MORE;
}

/* Under the lock: wait until the module's next frame is due; its number, or an error. A
   stalled module waits out the timeout (or the stop), as one that sends nothing would. */
static int wait_frame(lsdk_system *s, module *m, int32_t timeout_ms, int64_t *number)
{
    int64_t deadline = now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        int64_t now = now_ns();
        int64_t k = next_delivered(s, m);
        int64_t due = k >= 0 ? s->start_ns + due_ns(s, k) : INT64_MAX;
        if (k >= 0 && now >= due && !(s->stopped && due > s->stop_ns)) {
            *number = k;
            return LSDK_OK;
        }
        if (s->stopped)
            return fail(LSDK_ERR_TIMEOUT, "module %s: the acquisition was stopped; no more "
                        "frames", m->id);
        if (k == NO_MORE)
            return fail(LSDK_ERR_TIMEOUT, "module %s: the series of %lld frames is over", m->id,
                        (long long)s->series.frame_count);
        if (now >= deadline)
            return fail(LSDK_ERR_TIMEOUT, "module %s: no frame within %d ms", m->id, timeout_ms);
        struct timespec until = deadline_at(due < deadline ? due : deadline);
        int waited = pthread_cond_timedwait(&s->changed, &s->lock, &until);
        if (waited != 0 && waited != ETIMEDOUT)
            return fail(LSDK_ERR_HARDWARE, "module %s: waiting for a frame failed: %s", m->id,
                        strerror(waited));
    }
}

/* Under the lock: a free slot of the module, its buffer allocated if it has none yet. */
static int claim_slot(lsdk_system *s, module *m, slot **claimed)
{
    for (int32_t k = 0; k < s->buffers; k++) {
        slot *candidate = &m->slots[k];
        if (candidate->held)
            continue;
        if (candidate->data == NULL) {
            candidate->data = malloc(frame_pixels(s) * (size_t)s->bytes_per_pixel);
            if (candidate->data == NULL)
                return fail(LSDK_ERR_RESOURCE, "module %s: out of memory for a frame buffer",
                            m->id);
        }
        candidate->held = 1;
        candidate->number = -1;
        *claimed = candidate;
        return LSDK_OK;
    }
    return fail(LSDK_ERR_STATE, "all %d frame buffers of module %s are held: release frames",
                s->buffers, m->id);
}

LSDK_EXPORT int lsdk_next_frame(lsdk_system *system, int32_t module_position, int32_t timeout_ms,
                                lsdk_frame *frame)
{
    if (system == NULL || frame == NULL)
        return fail(LSDK_ERR_ARGUMENT, "lsdk_next_frame: null argument");
    if (module_position < 0 || module_position >= system->module_count)
        return fail(LSDK_ERR_ARGUMENT, "module %d: this system serves modules 0 to %d",
                    module_position, system->module_count - 1);
    if (timeout_ms < 0)
        return fail(LSDK_ERR_ARGUMENT, "timeout %d ms: must not be negative", timeout_ms);
    module *m = &system->modules[module_position];
    pthread_mutex_lock(&system->lock);
    int64_t number = 0;
    slot *claimed = NULL;
    int code = LSDK_OK;
    if (!system->started)
        code = fail(LSDK_ERR_STATE, "module %s: no acquisition was started", m->id);
    if (code == LSDK_OK)
        code = claim_slot(system, m, &claimed);
    if (code == LSDK_OK) {
        code = wait_frame(system, m, timeout_ms, &number);
        if (code == LSDK_OK) {
            m->next = number + 1;
            claimed->number = number;
        } else {
            claimed->held = 0;
        }
    }
    pthread_mutex_unlock(&system->lock);
    if (code != LSDK_OK)
        return code;
    /* The slot is this reader's now: fill it without holding up the other modules' readers. */
    fill_frame(system, m, number, claimed->data);
    frame->number = number;
    frame->status = fault_has(&m->faults[FAULT_CORRUPT], number)   ? LSDK_FRAME_CORRUPT
                    : fault_has(&m->faults[FAULT_MISSING], number) ? LSDK_FRAME_MISSING
                                                                   : LSDK_FRAME_OK;
    frame->data = claimed->data;
    frame->size = frame_pixels(system) * (size_t)system->bytes_per_pixel;
    return LSDK_OK;
}

LSDK_EXPORT int lsdk_release_frame(lsdk_system *system, int32_t module_position,
                                   const lsdk_frame *frame)
{
    if (system == NULL || frame == NULL)
        return fail(LSDK_ERR_ARGUMENT, "lsdk_release_frame: null argument");
    if (module_position < 0 || module_position >= system->module_count)
        return fail(LSDK_ERR_ARGUMENT, "module %d: this system serves modules 0 to %d",
                    module_position, system->module_count - 1);
    module *m = &system->modules[module_position];
    int found = 0;
    pthread_mutex_lock(&system->lock);
    for (int32_t k = 0; k < system->buffers && !found; k++) {
        slot *candidate = &m->slots[k];
        if (candidate->held && candidate->data == frame->data
            && candidate->number == frame->number) {
            candidate->held = 0;
            found = 1;
        }
    }
    pthread_mutex_unlock(&system->lock);
    if (!found)
        return fail(LSDK_ERR_ARGUMENT, "frame %lld is not held by module %s: released already "
                    "or never delivered by it", (long long)frame->number, m->id);
    return LSDK_OK;
}
