/*
 * A stand-in libnvidia-ml.so.1 for llem's tests.
 *
 * The real nvidia-ml-py binding (pynvml) loads this library with
 * CDLL("libnvidia-ml.so.1") when the test puts its directory first on
 * LD_LIBRARY_PATH. Every call re-reads the state file named by the environment
 * variable FAKE_NVML_STATE, so a test (or the process under test) can change
 * the answers while the code runs. The file holds `key=value` lines; `#` starts
 * a comment. Keys (i is the GPU index, all optional):
 *
 *   init_error=N              nvmlInit* returns N (9: driver not loaded)
 *   driver=550.54.15          nvmlSystemGetDriverVersion
 *   count=N                   number of GPUs (default 1, at most MAX_GPUS)
 *   t0=SECONDS                wall-clock epoch (CLOCK_REALTIME) the rates start from
 *   gpuI.name=...             default "Fake GPU"
 *   gpuI.uuid=...             default GPU-00000000-0000-0000-0000-%012d of I (GPU 0:
 *                             GPU-00000000-0000-0000-0000-000000000000, the UUID the
 *                             test image's nvidia-smi gives its one default GPU; GPU 12:
 *                             ...-000000000012); nvmlDeviceGetHandleByUUID(V) finds it
 *   gpuI.mem_total=BYTES, gpuI.mem_used=BYTES
 *   gpuI.energy_mj=MJ         total energy counter at t0 (uint64, wraps)
 *   gpuI.energy_rate_mw=MW    counter advance: MW milliwatts = MW mJ per second
 *   gpuI.energy_update_ms=MS  the counter only moves every MS ms (0: continuous)
 *   gpuI.power_mw=MW          nvmlDeviceGetPowerUsage (default 100000)
 *   gpuI.temp_c=C             temperature at t0
 *   gpuI.cool_c_per_s=R       temperature falls by R degrees C per second since t0 ...
 *   gpuI.temp_floor_c=F       ... down to F (default: no floor below 0)
 *   gpuI.throttle=BITS        clocks event (throttle) reasons bitmask, decimal or 0x
 *   gpuI.procs=PID:BYTES,...  compute processes
 *   gpuI.busy_file=PATH       busy periods of GPU i (format below)
 *   busy_dir=DIR              for a GPU without gpuI.busy_file: DIR/<its uuid>
 *   gpuI.busy_power_mw=MW     extra draw while busy (default 200000)
 *   error.FUNC=N              FUNC (exported symbol name) returns N on every GPU
 *   gpuI.error.FUNC=N         FUNC returns N on GPU i only
 *
 * Busy file (written by the test image's llem-fake-busy, or by a test): one
 * interval per line, Unix seconds on the wall clock (CLOCK_REALTIME, floats):
 *
 *   START END     busy from START to END
 *   START         busy since START, still busy ...
 *                 ... unless a `START END` line with the same START is also in
 *                 the file (anywhere): that line closes it. So a writer only
 *                 ever appends: `START` when it begins, `START END` when it ends.
 *
 * Anything else on a line is ignored, as are lines that do not parse; a missing
 * or unreadable file means never busy; any number of lines. Overlapping
 * intervals count once (a GPU is busy or not). While now is inside an interval,
 * nvmlDeviceGetPowerUsage adds busy_power_mw; the energy counter adds
 * busy_power_mw * (seconds of the intervals' union inside [t0, now]) mJ (with no
 * t0, the whole of each interval up to now counts). Within a process the busy
 * part never goes back (an open line closed at an END a reader has already
 * passed would otherwise shrink it) until t0, the file or busy_power_mw change.
 *
 * Build: gcc -shared -fPIC -o DIR/libnvidia-ml.so.1 fake_nvml.c
 * Define NO_CLOCKS_EVENT_REASONS to leave out the new-name throttle function,
 * as an older driver's library would.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_UNKNOWN 999

#define MAX_GPUS 16
#define MAX_ENTRIES 256
#define KEY_LEN 128
#define VAL_LEN 256

typedef struct {
    int index;
} fake_device;

typedef fake_device *nvmlDevice_t;

typedef struct {
    unsigned long long total;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_t;

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_t;

typedef struct {
    int n;
    char key[MAX_ENTRIES][KEY_LEN];
    char val[MAX_ENTRIES][VAL_LEN];
} state_t;

static fake_device devices[MAX_GPUS];

/* Read the state file into st (per call, on the caller's stack: thread-safe). */
static void load_state(state_t *st) {
    st->n = 0;
    const char *path = getenv("FAKE_NVML_STATE");
    if (!path) return;
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[KEY_LEN + VAL_LEN + 4];
    while (st->n < MAX_ENTRIES && fgets(line, sizeof line, f)) {
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *eq = strchr(line, '=');
        if (!eq) continue;
        *eq = '\0';
        char *k = line, *v = eq + 1;
        while (*k == ' ' || *k == '\t') k++;
        size_t kl = strlen(k);
        while (kl && (k[kl - 1] == ' ' || k[kl - 1] == '\t')) k[--kl] = '\0';
        while (*v == ' ' || *v == '\t') v++;
        size_t vl = strlen(v);
        while (vl && (v[vl - 1] == '\n' || v[vl - 1] == '\r' || v[vl - 1] == ' ')) v[--vl] = '\0';
        if (!kl) continue;
        snprintf(st->key[st->n], KEY_LEN, "%s", k);
        snprintf(st->val[st->n], VAL_LEN, "%s", v);
        st->n++;
    }
    fclose(f);
}

static const char *get(const state_t *st, const char *key) {
    /* The last assignment wins, so a test can append to override. */
    for (int i = st->n - 1; i >= 0; i--)
        if (strcmp(st->key[i], key) == 0) return st->val[i];
    return NULL;
}

static const char *gpu_get(const state_t *st, int idx, const char *key) {
    char k[KEY_LEN];
    snprintf(k, sizeof k, "gpu%d.%s", idx, key);
    return get(st, k);
}

static double gpu_num(const state_t *st, int idx, const char *key, double dflt) {
    const char *v = gpu_get(st, idx, key);
    return v ? strtod(v, NULL) : dflt;
}

static unsigned long long gpu_u64(const state_t *st, int idx, const char *key,
                                  unsigned long long dflt) {
    const char *v = gpu_get(st, idx, key);
    return v ? strtoull(v, NULL, 0) : dflt;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double elapsed_s(const state_t *st) {
    const char *t0 = get(st, "t0");
    if (!t0) return 0.0;
    double e = now_s() - strtod(t0, NULL);
    return e > 0 ? e : 0.0;
}

static int gpu_count(const state_t *st) {
    const char *v = get(st, "count");
    int n = v ? atoi(v) : 1;
    if (n < 0) n = 0;
    if (n > MAX_GPUS) n = MAX_GPUS;
    return n;
}

/* The error a test asked FUNC to return on GPU idx (-1: a system call), else 0. */
static int injected(const state_t *st, const char *func, int idx) {
    char k[KEY_LEN];
    if (idx >= 0) {
        snprintf(k, sizeof k, "gpu%d.error.%s", idx, func);
        const char *v = get(st, k);
        if (v) return atoi(v);
    }
    snprintf(k, sizeof k, "error.%s", func);
    const char *v = get(st, k);
    return v ? atoi(v) : 0;
}

/* Validate a handle against the current GPU count; -1 if it is not one of ours. */
static int device_index(const state_t *st, nvmlDevice_t dev) {
    if (dev < devices || dev >= devices + MAX_GPUS) return -1;
    int idx = (int)(dev - devices);
    return idx < gpu_count(st) ? idx : -1;
}

#define DEVICE_CALL(func)                                   \
    state_t st;                                             \
    load_state(&st);                                        \
    int idx = device_index(&st, device);                    \
    if (idx < 0) return NVML_ERROR_INVALID_ARGUMENT;        \
    int err = injected(&st, func, idx);                     \
    if (err) return err;

/* GPU idx's UUID: gpuI.uuid, else GPU-00000000-0000-0000-0000-<idx as 12 digits>. */
static void device_uuid(const state_t *st, int idx, char *out, size_t len) {
    const char *v = gpu_get(st, idx, "uuid");
    if (v)
        snprintf(out, len, "%s", v);
    else
        snprintf(out, len, "GPU-00000000-0000-0000-0000-%012d", idx);
}

/* ---- busy periods (gpuI.busy_file, busy_dir) ----------------------------- */

typedef struct {
    double start, end; /* end < 0: open (busy since start) */
} interval_t;

typedef struct {
    interval_t *v;
    size_t n, cap;
} intervals_t;

static int push_interval(intervals_t *iv, double start, double end) {
    if (iv->n == iv->cap) {
        size_t cap = iv->cap ? iv->cap * 2 : 64;
        interval_t *nv = realloc(iv->v, cap * sizeof *nv);
        if (!nv) return -1;
        iv->v = nv;
        iv->cap = cap;
    }
    iv->v[iv->n].start = start;
    iv->v[iv->n].end = end;
    iv->n++;
    return 0;
}

static int by_start(const void *a, const void *b) {
    double x = ((const interval_t *)a)->start, y = ((const interval_t *)b)->start;
    return (x > y) - (x < y);
}

/* The busy file of GPU idx into path (empty: none). */
static void busy_path(const state_t *st, int idx, char *path, size_t len) {
    const char *v = gpu_get(st, idx, "busy_file");
    path[0] = '\0';
    if (v && *v) {
        snprintf(path, len, "%s", v);
        return;
    }
    const char *dir = get(st, "busy_dir");
    if (dir && *dir) {
        char uuid[VAL_LEN];
        device_uuid(st, idx, uuid, sizeof uuid);
        snprintf(path, len, "%s/%s", dir, uuid);
    }
}

/*
 * Read GPU idx's busy intervals, closed ones ([start, end]) and open ones not
 * closed by a `START END` line with the same START (end < 0), sorted by start.
 * Returns the number read (iv->v to be freed by the caller); 0 for no file.
 */
static size_t read_busy(const state_t *st, int idx, intervals_t *iv) {
    iv->v = NULL;
    iv->n = iv->cap = 0;
    char path[VAL_LEN + 64];
    busy_path(st, idx, path, sizeof path);
    if (!path[0]) return 0;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[256];
    int fresh = 1; /* at the start of a line (not the tail of a long one) */
    while (fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        int whole = l && line[l - 1] == '\n';
        int take = fresh && (whole || feof(f)); /* a line too long for line: none of it */
        fresh = whole;
        if (!take) continue;
        char *p = line, *q;
        double start = strtod(p, &q);
        if (q == p || !isfinite(start)) continue;
        p = q;
        double end = strtod(p, &q);
        if (q == p || !isfinite(end)) end = -1.0;
        else if (end < start) continue; /* nonsense: ignored */
        if (push_interval(iv, start, end)) break;
    }
    fclose(f);
    if (!iv->n) return 0;
    qsort(iv->v, iv->n, sizeof *iv->v, by_start);
    /* drop the open lines that a closed line with the same START completes */
    size_t out = 0;
    for (size_t i = 0; i < iv->n;) {
        size_t j = i;
        int closed = 0;
        while (j < iv->n && iv->v[j].start == iv->v[i].start) closed |= iv->v[j++].end >= 0;
        for (size_t k = i; k < j; k++)
            if (!closed || iv->v[k].end >= 0) iv->v[out++] = iv->v[k];
        i = j;
    }
    iv->n = out;
    return out;
}

/* Whether GPU idx is busy at time t. */
static int busy_at(const state_t *st, int idx, double t) {
    intervals_t iv;
    int busy = 0;
    read_busy(st, idx, &iv);
    for (size_t i = 0; i < iv.n && !busy; i++)
        busy = iv.v[i].start <= t && (iv.v[i].end < 0 || t < iv.v[i].end);
    free(iv.v);
    return busy;
}

/* Seconds of the union of GPU idx's busy intervals inside [from, to]. */
static double busy_seconds(const state_t *st, int idx, double from, double to) {
    intervals_t iv;
    double total = 0.0, cur_s = 0.0, cur_e = 0.0;
    int have = 0;
    read_busy(st, idx, &iv);
    for (size_t i = 0; i < iv.n; i++) { /* sorted by start: merge as we go */
        double s = iv.v[i].start > from ? iv.v[i].start : from;
        double e = iv.v[i].end < 0 || iv.v[i].end > to ? to : iv.v[i].end;
        if (e <= s) continue;
        if (have && s <= cur_e) {
            if (e > cur_e) cur_e = e;
        } else {
            if (have) total += cur_e - cur_s;
            cur_s = s;
            cur_e = e;
            have = 1;
        }
    }
    if (have) total += cur_e - cur_s;
    free(iv.v);
    return total;
}

/* Per process: the busy energy last reported per GPU, so that it never goes back. */
static pthread_mutex_t busy_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char key[2 * VAL_LEN + 64];
    uint64_t mj;
} busy_seen[MAX_GPUS];

static uint64_t busy_energy_mj(const state_t *st, int idx, double from, double to) {
    double power_mw = gpu_num(st, idx, "busy_power_mw", 200000.0);
    char path[VAL_LEN + 64];
    busy_path(st, idx, path, sizeof path);
    if (!path[0] || power_mw <= 0) return 0;
    uint64_t mj = (uint64_t)(power_mw * busy_seconds(st, idx, from, to));
    const char *t0 = get(st, "t0");
    char key[sizeof busy_seen[0].key];
    snprintf(key, sizeof key, "%s|%s|%.17g", t0 ? t0 : "", path, power_mw);
    pthread_mutex_lock(&busy_lock);
    if (strcmp(busy_seen[idx].key, key) == 0 && busy_seen[idx].mj > mj)
        mj = busy_seen[idx].mj;
    snprintf(busy_seen[idx].key, sizeof busy_seen[idx].key, "%s", key);
    busy_seen[idx].mj = mj;
    pthread_mutex_unlock(&busy_lock);
    return mj;
}

/* ---- init and system ---------------------------------------------------- */

static int init_common(const char *func) {
    state_t st;
    load_state(&st);
    const char *v = get(&st, "init_error");
    if (v && atoi(v)) return atoi(v);
    for (int i = 0; i < MAX_GPUS; i++) devices[i].index = i;
    return injected(&st, func, -1);
}

int nvmlInit(void) { return init_common("nvmlInit"); }
int nvmlInit_v2(void) { return init_common("nvmlInit_v2"); }
int nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    return init_common("nvmlInitWithFlags");
}
int nvmlShutdown(void) { return NVML_SUCCESS; }

const char *nvmlErrorString(int result) {
    switch (result) {
        case 0: return "Success";
        case 1: return "Uninitialized";
        case 2: return "Invalid Argument";
        case 3: return "Not Supported";
        case 4: return "Insufficient Permissions";
        case 6: return "Not Found";
        case 7: return "Insufficient Size";
        case 9: return "Driver Not Loaded";
        case 15: return "GPU is lost";
        default: return "Unknown Error";
    }
}

int nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    state_t st;
    load_state(&st);
    int err = injected(&st, "nvmlSystemGetDriverVersion", -1);
    if (err) return err;
    const char *v = get(&st, "driver");
    snprintf(version, length, "%s", v ? v : "550.54.15");
    return NVML_SUCCESS;
}

int nvmlSystemGetNVMLVersion(char *version, unsigned int length) {
    snprintf(version, length, "12.550.54.15");
    return NVML_SUCCESS;
}

int nvmlDeviceGetCount_v2(unsigned int *count) {
    state_t st;
    load_state(&st);
    int err = injected(&st, "nvmlDeviceGetCount_v2", -1);
    if (err) return err;
    *count = (unsigned int)gpu_count(&st);
    return NVML_SUCCESS;
}

int nvmlDeviceGetCount(unsigned int *count) { return nvmlDeviceGetCount_v2(count); }

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    state_t st;
    load_state(&st);
    if ((int)index >= gpu_count(&st)) return NVML_ERROR_INVALID_ARGUMENT;
    int err = injected(&st, "nvmlDeviceGetHandleByIndex_v2", (int)index);
    if (err) return err;
    *device = &devices[index];
    return NVML_SUCCESS;
}

int nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device) {
    return nvmlDeviceGetHandleByIndex_v2(index, device);
}

/* The GPU whose UUID is uuid (ASCII), or -1. */
static int find_uuid(const state_t *st, const char *uuid) {
    char have[VAL_LEN];
    for (int i = 0; i < gpu_count(st); i++) {
        device_uuid(st, i, have, sizeof have);
        if (strcmp(have, uuid) == 0) return i;
    }
    return -1;
}

static int handle_for(const state_t *st, int idx, const char *func, nvmlDevice_t *device) {
    int err = injected(st, func, idx);
    if (err) return err;
    if (idx < 0) return NVML_ERROR_NOT_FOUND;
    *device = &devices[idx];
    return NVML_SUCCESS;
}

int nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    state_t st;
    load_state(&st);
    if (!uuid || !device) return NVML_ERROR_INVALID_ARGUMENT;
    return handle_for(&st, find_uuid(&st, uuid), "nvmlDeviceGetHandleByUUID", device);
}

/* nvmlUUID_t of nvmlDeviceGetHandleByUUIDV (pynvml's c_nvmlUUID_t). */
#define NVML_UUID_TYPE_ASCII 1
#define NVML_UUID_TYPE_BINARY 2
#define NVML_DEVICE_UUID_ASCII_LEN 41
#define NVML_DEVICE_UUID_BINARY_LEN 16
typedef struct {
    unsigned int version;
    unsigned int type;
    union {
        char str[NVML_DEVICE_UUID_ASCII_LEN];
        unsigned char bytes[NVML_DEVICE_UUID_BINARY_LEN];
    } value;
} nvmlUUID_t;

/* The 16 bytes of a "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" UUID; -1 if not one. */
static int uuid_bytes(const char *uuid, unsigned char *out) {
    if (strncmp(uuid, "GPU-", 4) == 0) uuid += 4;
    int n = 0;
    for (const char *p = uuid; *p; p++) {
        if (*p == '-') continue;
        int d;
        if (*p >= '0' && *p <= '9') d = *p - '0';
        else if (*p >= 'a' && *p <= 'f') d = *p - 'a' + 10;
        else if (*p >= 'A' && *p <= 'F') d = *p - 'A' + 10;
        else return -1;
        if (n >= 2 * NVML_DEVICE_UUID_BINARY_LEN) return -1;
        if (n % 2 == 0) out[n / 2] = (unsigned char)(d << 4);
        else out[n / 2] |= (unsigned char)d;
        n++;
    }
    return n == 2 * NVML_DEVICE_UUID_BINARY_LEN ? 0 : -1;
}

int nvmlDeviceGetHandleByUUIDV(const nvmlUUID_t *uuid, nvmlDevice_t *device) {
    state_t st;
    load_state(&st);
    if (!uuid || !device) return NVML_ERROR_INVALID_ARGUMENT;
    int idx = -1;
    if (uuid->type == NVML_UUID_TYPE_ASCII) {
        char want[NVML_DEVICE_UUID_ASCII_LEN + 1];
        memcpy(want, uuid->value.str, NVML_DEVICE_UUID_ASCII_LEN);
        want[NVML_DEVICE_UUID_ASCII_LEN] = '\0';
        idx = find_uuid(&st, want);
    } else if (uuid->type == NVML_UUID_TYPE_BINARY) {
        char have[VAL_LEN];
        unsigned char bytes[NVML_DEVICE_UUID_BINARY_LEN];
        for (int i = 0; i < gpu_count(&st) && idx < 0; i++) {
            device_uuid(&st, i, have, sizeof have);
            if (uuid_bytes(have, bytes) == 0 &&
                memcmp(bytes, uuid->value.bytes, NVML_DEVICE_UUID_BINARY_LEN) == 0)
                idx = i;
        }
    } else {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    return handle_for(&st, idx, "nvmlDeviceGetHandleByUUIDV", device);
}

/* ---- device queries ----------------------------------------------------- */

int nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    DEVICE_CALL("nvmlDeviceGetName");
    const char *v = gpu_get(&st, idx, "name");
    snprintf(name, length, "%s", v ? v : "Fake GPU");
    return NVML_SUCCESS;
}

int nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    DEVICE_CALL("nvmlDeviceGetUUID");
    char v[VAL_LEN];
    device_uuid(&st, idx, v, sizeof v);
    snprintf(uuid, length, "%s", v);
    return NVML_SUCCESS;
}

int nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    DEVICE_CALL("nvmlDeviceGetMemoryInfo");
    memory->total = gpu_u64(&st, idx, "mem_total", 80ULL << 30);
    memory->used = gpu_u64(&st, idx, "mem_used", 1ULL << 30);
    memory->free = memory->total > memory->used ? memory->total - memory->used : 0;
    return NVML_SUCCESS;
}

int nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *energy) {
    DEVICE_CALL("nvmlDeviceGetTotalEnergyConsumption");
    uint64_t base = gpu_u64(&st, idx, "energy_mj", 0);
    double rate_mw = gpu_num(&st, idx, "energy_rate_mw", 0.0);
    double period_s = gpu_num(&st, idx, "energy_update_ms", 0.0) / 1000.0;
    const char *t0 = get(&st, "t0");
    double e = elapsed_s(&st);
    if (period_s > 0) e = (double)(uint64_t)(e / period_s) * period_s;
    /* busy periods count from t0 (without t0: from their start) to the counter's "now" */
    double from = t0 ? strtod(t0, NULL) : -INFINITY;
    double to = t0 ? from + e : now_s();
    if (period_s > 0 && !t0) to = (double)(uint64_t)(to / period_s) * period_s;
    uint64_t busy = busy_energy_mj(&st, idx, from, to);
    /* Unsigned addition: a base near 2^64 wraps as the real 64-bit counter would. */
    *energy = (unsigned long long)(base + (uint64_t)(rate_mw * e) + busy);
    return NVML_SUCCESS;
}

int nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
    DEVICE_CALL("nvmlDeviceGetPowerUsage");
    double mw = gpu_num(&st, idx, "power_mw", 100000.0);
    if (busy_at(&st, idx, now_s())) mw += gpu_num(&st, idx, "busy_power_mw", 200000.0);
    *power = (unsigned int)mw;
    return NVML_SUCCESS;
}

int nvmlDeviceGetTemperature(nvmlDevice_t device, int sensor, unsigned int *temp) {
    DEVICE_CALL("nvmlDeviceGetTemperature");
    if (sensor != 0) return NVML_ERROR_NOT_SUPPORTED;
    double t = gpu_num(&st, idx, "temp_c", 40.0);
    double rate = gpu_num(&st, idx, "cool_c_per_s", 0.0);
    double floor_c = gpu_num(&st, idx, "temp_floor_c", 0.0);
    t -= rate * elapsed_s(&st);
    if (t < floor_c) t = floor_c;
    *temp = (unsigned int)t;
    return NVML_SUCCESS;
}

static int reasons(nvmlDevice_t device, unsigned long long *bits, const char *func) {
    DEVICE_CALL(func);
    *bits = gpu_u64(&st, idx, "throttle", 0);
    return NVML_SUCCESS;
}

#ifndef NO_CLOCKS_EVENT_REASONS
int nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t device, unsigned long long *bits) {
    return reasons(device, bits, "nvmlDeviceGetCurrentClocksEventReasons");
}
#endif

int nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device, unsigned long long *bits) {
    return reasons(device, bits, "nvmlDeviceGetCurrentClocksThrottleReasons");
}

/* Two-call protocol: infos == NULL asks for the count (INSUFFICIENT_SIZE if any). */
static int processes(nvmlDevice_t device, unsigned int *count, nvmlProcessInfo_t *infos,
                     const char *func) {
    DEVICE_CALL(func);
    nvmlProcessInfo_t found[64];
    unsigned int n = 0;
    const char *v = gpu_get(&st, idx, "procs");
    if (v && *v) {
        char buf[VAL_LEN];
        snprintf(buf, sizeof buf, "%s", v);
        for (char *tok = strtok(buf, ","); tok && n < 64; tok = strtok(NULL, ",")) {
            char *colon = strchr(tok, ':');
            found[n].pid = (unsigned int)strtoul(tok, NULL, 10);
            found[n].usedGpuMemory = colon ? strtoull(colon + 1, NULL, 10) : 0;
            found[n].gpuInstanceId = 0xFFFFFFFFu;
            found[n].computeInstanceId = 0xFFFFFFFFu;
            n++;
        }
    }
    if (n == 0) {
        *count = 0;
        return NVML_SUCCESS;
    }
    if (infos == NULL || *count < n) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    memcpy(infos, found, n * sizeof *infos);
    *count = n;
    return NVML_SUCCESS;
}

int nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *count,
                                            nvmlProcessInfo_t *infos) {
    return processes(device, count, infos, "nvmlDeviceGetComputeRunningProcesses_v3");
}

int nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device, unsigned int *count,
                                            nvmlProcessInfo_t *infos) {
    return processes(device, count, infos, "nvmlDeviceGetComputeRunningProcesses_v2");
}
