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
 *   gpuI.power_limit_min_mw=MW, gpuI.power_limit_max_mw=MW
 *                             nvmlDeviceGetPowerManagementLimitConstraints (default
 *                             100000, 700000); a limit set outside them: error 2
 *   gpuI.power_limit_default_mw=MW  nvmlDeviceGetPowerManagementDefaultLimit (default: max)
 *   gpuI.power_limit_mw=MW    the limit in force before any is set (default: the default)
 *   gpuI.sm_clocks=LIST       supported SM (graphics) clocks, MHz, for every memory clock:
 *                             a comma list of MHz and LO-HI:STEP ranges ("345-1980:15,2000");
 *                             default 345-1980:15 (an H100's); answered highest first
 *   gpuI.mem_clocks=LIST      supported memory clocks, same syntax (default 2619)
 *   gpuI.sm_clock_mhz=MHZ     SM/graphics clock when not locked (default 1980)
 *   gpuI.mem_clock_mhz=MHZ    memory clock when not locked (default 2619)
 *   gpuI.video_clock_mhz=MHZ  video clock, current and max (default 1755)
 *   no_permission=1           every setter returns 4 (NVML_ERROR_NO_PERMISSION), even one
 *   gpuI.no_permission=1      that sets the current value again; getters still answer
 *                             (gpuI.no_permission=0 permits GPU i despite no_permission=1)
 *   settings_file=PATH        where the settings live (default: $FAKE_NVML_STATE.settings)
 *   error.FUNC=N              FUNC (exported symbol name) returns N on every GPU
 *   gpuI.error.FUNC=N         FUNC returns N on GPU i only
 *
 * Settings. As with the real driver, what a setter changes outlives the process and every
 * process sees it: it goes to the settings file PATH, never to the state file. A setter
 * takes an exclusive flock(2) on PATH's directory, reads PATH, writes it whole to PATH.tmp
 * and renames that over PATH, so concurrent setters (on any GPUs, in any processes) lose no
 * update and a reader sees the file before or after a change, never half of it. The energy
 * counter reads PATH and the clock under a shared flock on that directory, so that no reading
 * taken after a change's time misses the change. Its lines:
 *
 *   # fake NVML settings ...            (a comment line first)
 *   gpuI.power_limit=T MW               one line per change of GPU i's power limit, oldest
 *                                       first: from wall-clock time T (Unix seconds, 6
 *                                       decimals) on, the limit is MW mW. Setting the limit in
 *                                       force adds none; past 512 the oldest is dropped.
 *   gpuI.sm_locked=MIN MAX              while GPU i's SM clocks are locked to [MIN, MAX] MHz
 *   gpuI.mem_locked=MIN MAX             while its memory clocks are locked
 *
 * Comment lines, and GPU i's lines of other forms, are dropped when GPU i next changes; a
 * missing file means nothing set (a test removes it to start afresh). The limit in force is
 * the last change's, else gpuI.power_limit_mw. Setters:
 * nvmlDeviceSetPowerManagementLimit(_v2) (min <= MW <= max; _v2 takes GPU scope only and
 * checks its struct's version), nvmlDeviceSetGpuLockedClocks / nvmlDeviceSetMemoryLockedClocks
 * (MIN <= MAX, both in the supported list, else 2), nvmlDeviceResetGpuLockedClocks /
 * nvmlDeviceResetMemoryLockedClocks; with neither FAKE_NVML_STATE nor settings_file, or
 * when the file cannot be written, they return 999. nvmlDeviceGetClockInfo answers the
 * unlocked clock held inside [MIN, MAX] while locked (GRAPHICS and SM alike),
 * nvmlDeviceGetMaxClockInfo the highest supported clock, and
 * nvmlDeviceGetSupportedGraphicsClocks 6 (not found) for a memory clock not in the list.
 *
 * Power cap. nvmlDeviceGetPowerUsage answers min(power_mw (+ busy_power_mw while busy),
 * limit in force), and the energy counter integrates min(energy_rate_mw (+ busy_power_mw
 * while busy), limit) over time, piece by piece between the limit changes recorded in the
 * settings file: a pure function of the state, the busy file and the settings, so it is the
 * same in every process, exact, and monotonic across a change (a new limit only counts from
 * its time on).
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
 * t0, the whole of each interval up to now counts), both capped by the power
 * limit (above). Within a process the counter never goes back (an open line
 * closed at an END a reader has already passed would otherwise shrink it): the
 * shortfall is added from then on, until t0, the file, busy_power_mw,
 * energy_rate_mw or energy_update_ms change.
 *
 * Build: gcc -shared -fPIC -o DIR/libnvidia-ml.so.1 fake_nvml.c
 * Define NO_CLOCKS_EVENT_REASONS to leave out the new-name throttle function,
 * as an older driver's library would.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_NO_PERMISSION 4
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_ARGUMENT_VERSION_MISMATCH 25
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

/* Seconds of the union of the (sorted) intervals iv inside [from, to]. */
static double union_seconds(const intervals_t *iv, double from, double to) {
    double total = 0.0, cur_s = 0.0, cur_e = 0.0;
    int have = 0;
    for (size_t i = 0; i < iv->n; i++) { /* sorted by start: merge as we go */
        double s = iv->v[i].start > from ? iv->v[i].start : from;
        double e = iv->v[i].end < 0 || iv->v[i].end > to ? to : iv->v[i].end;
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
    return total;
}

/* ---- settings (power limit, locked clocks): the settings file ------------ */

#define MAX_CHANGES 512 /* power limit changes kept per GPU (the oldest go first) */
#define MAX_CLOCKS 512
#define SETTINGS_MAGIC "# fake NVML settings (see fake_nvml.c): rewritten whole on every change\n"

typedef struct {
    double t;        /* wall-clock time (CLOCK_REALTIME) from which ... */
    unsigned int mw; /* ... this limit is in force */
} limit_change_t;

typedef struct {
    int n; /* power limit changes, oldest first */
    limit_change_t ch[MAX_CHANGES];
    int sm_locked, mem_locked;
    unsigned int sm_min, sm_max, mem_min, mem_max;
} gpu_settings_t;

/* The settings file: settings_file=PATH, else $FAKE_NVML_STATE.settings; -1 if neither. */
static int settings_path(const state_t *st, char *out, size_t len) {
    const char *v = get(st, "settings_file");
    const char *state = getenv("FAKE_NVML_STATE");
    out[0] = '\0';
    if (v && *v)
        snprintf(out, len, "%s", v);
    else if (state && *state)
        snprintf(out, len, "%s.settings", state);
    else
        return -1;
    return 0;
}

/* If line is "gpu<idx>.<something>=...", a pointer to <something>, else NULL. */
static const char *gpu_line(const char *line, int idx) {
    char prefix[32];
    int n = snprintf(prefix, sizeof prefix, "gpu%d.", idx);
    return strncmp(line, prefix, (size_t)n) == 0 ? line + n : NULL;
}

/* GPU idx's settings from the file at path (a missing file: nothing set). */
static void read_settings(const char *path, int idx, gpu_settings_t *gs) {
    memset(gs, 0, sizeof *gs);
    FILE *f = path[0] ? fopen(path, "r") : NULL;
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        const char *rest = gpu_line(line, idx);
        if (!rest) continue;
        double t;
        unsigned int a, b;
        if (sscanf(rest, "power_limit=%lf %u", &t, &a) == 2) {
            if (gs->n == MAX_CHANGES) {
                memmove(gs->ch, gs->ch + 1, (MAX_CHANGES - 1) * sizeof gs->ch[0]);
                gs->n--;
            }
            gs->ch[gs->n].t = t;
            gs->ch[gs->n].mw = a;
            gs->n++;
        } else if (sscanf(rest, "sm_locked=%u %u", &a, &b) == 2) {
            gs->sm_locked = 1;
            gs->sm_min = a;
            gs->sm_max = b;
        } else if (sscanf(rest, "mem_locked=%u %u", &a, &b) == 2) {
            gs->mem_locked = 1;
            gs->mem_min = a;
            gs->mem_max = b;
        }
    }
    fclose(f);
}

static void load_settings(const state_t *st, int idx, gpu_settings_t *gs) {
    char path[VAL_LEN + 16];
    settings_path(st, path, sizeof path);
    read_settings(path, idx, gs);
}

/*
 * flock(op) the directory of the settings file at path; the fd to give to settings_unlock,
 * or -1 (no lock taken). Setters take it exclusive for the whole change, readers of the
 * energy counter shared while they read the settings and the clock: so a reader's "now" is
 * before a change's time or it sees that change (a change's time is taken under the lock).
 */
static int settings_lock(const char *path, int op) {
    char dir[VAL_LEN + 16];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    while (flock(fd, op) != 0) {
        if (errno != EINTR) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

static void settings_unlock(int fd) {
    if (fd < 0) return;
    flock(fd, LOCK_UN);
    close(fd);
}

/*
 * Change GPU idx's settings: under an exclusive lock (settings_lock), read them, let change()
 * edit them, and write the whole file to PATH.tmp then rename it over PATH (readers never see
 * half a file). The other GPUs' lines are copied as they are.
 */
static int update_settings(const state_t *st, int idx,
                           void (*change)(gpu_settings_t *, const void *), const void *arg) {
    char path[VAL_LEN + 16], tmp[VAL_LEN + 32];
    if (settings_path(st, path, sizeof path)) return NVML_ERROR_UNKNOWN;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = settings_lock(path, LOCK_EX);
    if (fd < 0) return NVML_ERROR_UNKNOWN;
    int result = NVML_ERROR_UNKNOWN;
    gpu_settings_t *gs = malloc(sizeof *gs);
    FILE *out = NULL;
    if (!gs) goto done;
    read_settings(path, idx, gs);
    change(gs, arg);
    out = fopen(tmp, "w");
    if (!out) goto done;
    fputs(SETTINGS_MAGIC, out);
    FILE *in = fopen(path, "r");
    if (in) {
        char line[512];
        int fresh = 1, keep = 0; /* the tail of a long line goes with its head */
        while (fgets(line, sizeof line, in)) {
            size_t l = strlen(line);
            if (fresh) keep = line[0] != '#' && !gpu_line(line, idx);
            if (keep) fputs(line, out);
            fresh = l && line[l - 1] == '\n';
        }
        fclose(in);
    }
    for (int i = 0; i < gs->n; i++)
        fprintf(out, "gpu%d.power_limit=%.6f %u\n", idx, gs->ch[i].t, gs->ch[i].mw);
    if (gs->sm_locked) fprintf(out, "gpu%d.sm_locked=%u %u\n", idx, gs->sm_min, gs->sm_max);
    if (gs->mem_locked) fprintf(out, "gpu%d.mem_locked=%u %u\n", idx, gs->mem_min, gs->mem_max);
    if (fflush(out) == 0 && !ferror(out)) result = NVML_SUCCESS;
    if (fclose(out) != 0) result = NVML_ERROR_UNKNOWN;
    out = NULL;
    if (result == NVML_SUCCESS && rename(tmp, path) != 0) result = NVML_ERROR_UNKNOWN;
    if (result != NVML_SUCCESS) unlink(tmp);
done:
    free(gs);
    settings_unlock(fd);
    return result;
}

/* Power limits (mW): constraints, default, and the limit before any change. */
static unsigned int limit_min(const state_t *st, int idx) {
    return (unsigned int)gpu_u64(st, idx, "power_limit_min_mw", 100000);
}
static unsigned int limit_max(const state_t *st, int idx) {
    return (unsigned int)gpu_u64(st, idx, "power_limit_max_mw", 700000);
}
static unsigned int limit_default(const state_t *st, int idx) {
    return (unsigned int)gpu_u64(st, idx, "power_limit_default_mw", limit_max(st, idx));
}
static unsigned int limit_initial(const state_t *st, int idx) {
    return (unsigned int)gpu_u64(st, idx, "power_limit_mw", limit_default(st, idx));
}

static unsigned int limit_now(const state_t *st, int idx, const gpu_settings_t *gs) {
    return gs->n ? gs->ch[gs->n - 1].mw : limit_initial(st, idx);
}

/* Setters: every one is refused with no_permission=1 or gpuI.no_permission=1. */
static int permitted(const state_t *st, int idx) {
    const char *v = gpu_get(st, idx, "no_permission");
    if (!v) v = get(st, "no_permission");
    return v && atoi(v) ? NVML_ERROR_NO_PERMISSION : NVML_SUCCESS;
}

/* ---- supported clocks (gpuI.sm_clocks, gpuI.mem_clocks) ------------------ */

static int by_value_desc(const void *a, const void *b) {
    unsigned int x = *(const unsigned int *)a, y = *(const unsigned int *)b;
    return (x < y) - (x > y);
}

/*
 * GPU idx's supported clocks for key (a comma list of MHz and LO-HI:STEP ranges), else
 * [lo, hi] by step; highest first, without repeats. Returns how many (at most MAX_CLOCKS).
 */
static int clock_list(const state_t *st, int idx, const char *key, unsigned int lo,
                      unsigned int hi, unsigned int step, unsigned int *out) {
    int n = 0;
    const char *v = gpu_get(st, idx, key);
    if (!v) {
        for (unsigned int c = lo; c <= hi && n < MAX_CLOCKS; c += step) out[n++] = c;
    } else {
        const char *p = v;
        while (*p && n < MAX_CLOCKS) {
            char *q;
            unsigned long a = strtoul(p, &q, 10);
            if (q == p) { /* not a number: skip to the next item */
                p = strchr(p, ',');
                if (!p) break;
                p++;
                continue;
            }
            unsigned long b = a, s = 1;
            if (*q == '-') {
                b = strtoul(q + 1, &q, 10);
                if (*q == ':') s = strtoul(q + 1, &q, 10);
                if (!s) s = 1;
            }
            for (unsigned long c = a; c <= b && n < MAX_CLOCKS; c += s) out[n++] = (unsigned int)c;
            p = strchr(q, ',');
            if (!p) break;
            p++;
        }
    }
    qsort(out, (size_t)n, sizeof *out, by_value_desc);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!m || out[m - 1] != out[i]) out[m++] = out[i];
    return m;
}

static int sm_clocks(const state_t *st, int idx, unsigned int *out) {
    return clock_list(st, idx, "sm_clocks", 345, 1980, 15, out);
}

static int mem_clocks(const state_t *st, int idx, unsigned int *out) {
    return clock_list(st, idx, "mem_clocks", 2619, 2619, 1, out);
}

static int in_list(const unsigned int *v, int n, unsigned int x) {
    for (int i = 0; i < n; i++)
        if (v[i] == x) return 1;
    return 0;
}

/* The current clock: the unlocked value, held inside [lo, hi] while locked. */
static unsigned int clamp_clock(unsigned int c, int locked, unsigned int lo, unsigned int hi) {
    if (!locked) return c;
    return c < lo ? lo : c > hi ? hi : c;
}

/* ---- power and energy under the power limit ------------------------------ */

/*
 * Energy (mJ, as a double) from `from` to `to` (from may be -INFINITY: busy periods only)
 * with a draw of rate_mw plus busy_mw while busy, capped by the limit in force, piece by
 * piece between the limit changes.
 */
static double capped_energy_mj(const state_t *st, int idx, const gpu_settings_t *gs,
                               const intervals_t *iv, double rate_mw, double busy_mw,
                               double from, double to) {
    double total = 0.0;
    for (int k = 0; k <= gs->n; k++) { /* piece k: from change k-1 (or -inf) to change k */
        double a = k ? gs->ch[k - 1].t : -INFINITY;
        double b = k < gs->n ? gs->ch[k].t : INFINITY;
        if (a < from) a = from;
        if (b > to) b = to;
        if (!(b > a)) continue;
        double cap = k ? gs->ch[k - 1].mw : limit_initial(st, idx);
        double busy = busy_mw > 0 ? union_seconds(iv, a, b) : 0.0;
        if (rate_mw > 0) total += fmin(rate_mw, cap) * (b - a - busy);
        if (busy > 0) total += fmax(fmin(rate_mw + busy_mw, cap), 0.0) * busy;
    }
    return total;
}

/*
 * Per process: the energy last reported per GPU, so that the counter never goes back when
 * an open busy line is closed at an END a reader has already passed: the shortfall is kept
 * as a lift added from then on (until t0, the busy file, the rates or the period change).
 */
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char key[2 * VAL_LEN + 96];
    double last, lift;
} energy_seen[MAX_GPUS];

static double never_back(const state_t *st, int idx, const char *busy_file, double mj) {
    char key[sizeof energy_seen[0].key];
    const char *t0 = get(st, "t0");
    snprintf(key, sizeof key, "%s|%s|%.17g|%.17g|%.17g", t0 ? t0 : "", busy_file,
             gpu_num(st, idx, "busy_power_mw", 200000.0), gpu_num(st, idx, "energy_rate_mw", 0.0),
             gpu_num(st, idx, "energy_update_ms", 0.0));
    pthread_mutex_lock(&seen_lock);
    if (strcmp(energy_seen[idx].key, key) != 0) {
        snprintf(energy_seen[idx].key, sizeof energy_seen[idx].key, "%s", key);
        energy_seen[idx].lift = 0.0;
    } else if (mj + energy_seen[idx].lift < energy_seen[idx].last) {
        energy_seen[idx].lift = energy_seen[idx].last - mj;
    }
    mj += energy_seen[idx].lift;
    energy_seen[idx].last = mj;
    pthread_mutex_unlock(&seen_lock);
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
    gpu_settings_t *gs = malloc(sizeof *gs);
    if (!gs) return NVML_ERROR_UNKNOWN;
    char spath[VAL_LEN + 16];
    settings_path(&st, spath, sizeof spath);
    int lock = spath[0] ? settings_lock(spath, LOCK_SH) : -1;
    read_settings(spath, idx, gs);
    double now = now_s();
    settings_unlock(lock);
    const char *t0 = get(&st, "t0");
    double from = t0 ? strtod(t0, NULL) : -INFINITY;
    double e = t0 && now > from ? now - from : 0.0;
    if (period_s > 0) e = (double)(uint64_t)(e / period_s) * period_s;
    /* from t0 (without t0: no idle part, busy periods from their start) to the counter's "now" */
    double to = t0 ? from + e : now;
    if (period_s > 0 && !t0) to = (double)(uint64_t)(to / period_s) * period_s;
    char path[VAL_LEN + 64];
    busy_path(&st, idx, path, sizeof path);
    double busy_mw = path[0] ? gpu_num(&st, idx, "busy_power_mw", 200000.0) : 0.0;
    intervals_t iv;
    read_busy(&st, idx, &iv);
    double mj = capped_energy_mj(&st, idx, gs, &iv, t0 ? rate_mw : 0.0, busy_mw, from, to);
    free(gs);
    free(iv.v);
    mj = never_back(&st, idx, path, mj);
    /* Unsigned addition: a base near 2^64 wraps as the real 64-bit counter would. */
    *energy = (unsigned long long)(base + (uint64_t)mj);
    return NVML_SUCCESS;
}

int nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
    DEVICE_CALL("nvmlDeviceGetPowerUsage");
    double mw = gpu_num(&st, idx, "power_mw", 100000.0);
    if (busy_at(&st, idx, now_s())) mw += gpu_num(&st, idx, "busy_power_mw", 200000.0);
    gpu_settings_t *gs = malloc(sizeof *gs);
    if (!gs) return NVML_ERROR_UNKNOWN;
    load_settings(&st, idx, gs);
    double cap = limit_now(&st, idx, gs);
    free(gs);
    *power = (unsigned int)(mw < cap ? mw : cap);
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

/* ---- power limit -------------------------------------------------------- */

static int power_limit_get(nvmlDevice_t device, unsigned int *limit, const char *func) {
    DEVICE_CALL(func);
    if (!limit) return NVML_ERROR_INVALID_ARGUMENT;
    gpu_settings_t *gs = malloc(sizeof *gs);
    if (!gs) return NVML_ERROR_UNKNOWN;
    load_settings(&st, idx, gs);
    *limit = limit_now(&st, idx, gs);
    free(gs);
    return NVML_SUCCESS;
}

int nvmlDeviceGetPowerManagementLimit(nvmlDevice_t device, unsigned int *limit) {
    return power_limit_get(device, limit, "nvmlDeviceGetPowerManagementLimit");
}

int nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit) {
    return power_limit_get(device, limit, "nvmlDeviceGetEnforcedPowerLimit");
}

int nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t device, unsigned int *min_mw,
                                                 unsigned int *max_mw) {
    DEVICE_CALL("nvmlDeviceGetPowerManagementLimitConstraints");
    if (!min_mw || !max_mw) return NVML_ERROR_INVALID_ARGUMENT;
    *min_mw = limit_min(&st, idx);
    *max_mw = limit_max(&st, idx);
    return NVML_SUCCESS;
}

int nvmlDeviceGetPowerManagementDefaultLimit(nvmlDevice_t device, unsigned int *limit) {
    DEVICE_CALL("nvmlDeviceGetPowerManagementDefaultLimit");
    if (!limit) return NVML_ERROR_INVALID_ARGUMENT;
    *limit = limit_default(&st, idx);
    return NVML_SUCCESS;
}

/* A new limit from now on (none when it is the limit in force already). */
static void change_limit(gpu_settings_t *gs, const void *arg) {
    unsigned int mw = *(const unsigned int *)arg;
    double t = now_s();
    if (gs->n) {
        if (gs->ch[gs->n - 1].mw == mw) return;
        if (t < gs->ch[gs->n - 1].t) t = gs->ch[gs->n - 1].t; /* times never go back */
    }
    if (gs->n == MAX_CHANGES) {
        memmove(gs->ch, gs->ch + 1, (MAX_CHANGES - 1) * sizeof gs->ch[0]);
        gs->n--;
    }
    gs->ch[gs->n].t = t;
    gs->ch[gs->n].mw = mw;
    gs->n++;
}

/* Limits outside the constraints are refused, as the driver does. */
static int power_limit_set(nvmlDevice_t device, unsigned int mw, const char *func) {
    DEVICE_CALL(func);
    if ((err = permitted(&st, idx))) return err;
    if (mw < limit_min(&st, idx) || mw > limit_max(&st, idx)) return NVML_ERROR_INVALID_ARGUMENT;
    return update_settings(&st, idx, change_limit, &mw);
}

int nvmlDeviceSetPowerManagementLimit(nvmlDevice_t device, unsigned int limit) {
    return power_limit_set(device, limit, "nvmlDeviceSetPowerManagementLimit");
}

/* nvmlPowerValue_v2_t of nvmlDeviceSetPowerManagementLimit_v2 (pynvml's c_nvmlPowerValue_v2_t). */
#define NVML_POWER_VALUE_V2 0x0200000Cu
#define NVML_POWER_SCOPE_GPU 0
typedef struct {
    unsigned int version;
    unsigned int powerScope;
    unsigned int powerValueMw;
} nvmlPowerValue_v2_t;

int nvmlDeviceSetPowerManagementLimit_v2(nvmlDevice_t device, nvmlPowerValue_v2_t *value) {
    if (!value) return NVML_ERROR_INVALID_ARGUMENT;
    if (value->version != NVML_POWER_VALUE_V2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    if (value->powerScope != NVML_POWER_SCOPE_GPU) return NVML_ERROR_NOT_SUPPORTED;
    return power_limit_set(device, value->powerValueMw, "nvmlDeviceSetPowerManagementLimit_v2");
}

/* ---- clocks ------------------------------------------------------------- */

#define NVML_CLOCK_GRAPHICS 0
#define NVML_CLOCK_SM 1
#define NVML_CLOCK_MEM 2
#define NVML_CLOCK_VIDEO 3

/* Two-call protocol: clocks == NULL or *count too small asks for the count. */
static int clocks_out(const unsigned int *v, int n, unsigned int *count, unsigned int *clocks) {
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    if (n == 0) {
        *count = 0;
        return NVML_SUCCESS;
    }
    if (!clocks || *count < (unsigned int)n) {
        *count = (unsigned int)n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    memcpy(clocks, v, (size_t)n * sizeof *v);
    *count = (unsigned int)n;
    return NVML_SUCCESS;
}

int nvmlDeviceGetSupportedMemoryClocks(nvmlDevice_t device, unsigned int *count,
                                       unsigned int *clocks) {
    DEVICE_CALL("nvmlDeviceGetSupportedMemoryClocks");
    unsigned int v[MAX_CLOCKS];
    return clocks_out(v, mem_clocks(&st, idx, v), count, clocks);
}

int nvmlDeviceGetSupportedGraphicsClocks(nvmlDevice_t device, unsigned int mem_mhz,
                                         unsigned int *count, unsigned int *clocks) {
    DEVICE_CALL("nvmlDeviceGetSupportedGraphicsClocks");
    unsigned int v[MAX_CLOCKS];
    if (!in_list(v, mem_clocks(&st, idx, v), mem_mhz)) return NVML_ERROR_NOT_FOUND;
    return clocks_out(v, sm_clocks(&st, idx, v), count, clocks);
}

static int clock_get(nvmlDevice_t device, int type, unsigned int *clock, int max,
                     const char *func) {
    DEVICE_CALL(func);
    if (!clock) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned int v[MAX_CLOCKS];
    gpu_settings_t *gs;
    switch (type) {
        case NVML_CLOCK_GRAPHICS:
        case NVML_CLOCK_SM:
        case NVML_CLOCK_MEM: {
            int sm = type != NVML_CLOCK_MEM;
            int n = sm ? sm_clocks(&st, idx, v) : mem_clocks(&st, idx, v);
            if (max) {
                if (!n) return NVML_ERROR_NOT_SUPPORTED;
                *clock = v[0];
                return NVML_SUCCESS;
            }
            if (!(gs = malloc(sizeof *gs))) return NVML_ERROR_UNKNOWN;
            load_settings(&st, idx, gs);
            if (sm)
                *clock = clamp_clock((unsigned int)gpu_u64(&st, idx, "sm_clock_mhz", 1980),
                                     gs->sm_locked, gs->sm_min, gs->sm_max);
            else
                *clock = clamp_clock((unsigned int)gpu_u64(&st, idx, "mem_clock_mhz", 2619),
                                     gs->mem_locked, gs->mem_min, gs->mem_max);
            free(gs);
            return NVML_SUCCESS;
        }
        case NVML_CLOCK_VIDEO:
            *clock = (unsigned int)gpu_u64(&st, idx, "video_clock_mhz", 1755);
            return NVML_SUCCESS;
        default:
            return NVML_ERROR_INVALID_ARGUMENT;
    }
}

int nvmlDeviceGetClockInfo(nvmlDevice_t device, int type, unsigned int *clock) {
    return clock_get(device, type, clock, 0, "nvmlDeviceGetClockInfo");
}

int nvmlDeviceGetMaxClockInfo(nvmlDevice_t device, int type, unsigned int *clock) {
    return clock_get(device, type, clock, 1, "nvmlDeviceGetMaxClockInfo");
}

typedef struct {
    int mem;            /* memory clocks, else SM */
    int lock;           /* lock to [lo, hi], else reset */
    unsigned int lo, hi;
} clock_change_t;

static void change_clocks(gpu_settings_t *gs, const void *arg) {
    const clock_change_t *c = arg;
    if (c->mem) {
        gs->mem_locked = c->lock;
        gs->mem_min = c->lo;
        gs->mem_max = c->hi;
    } else {
        gs->sm_locked = c->lock;
        gs->sm_min = c->lo;
        gs->sm_max = c->hi;
    }
}

/* Lock (both bounds supported clocks, lo <= hi) or reset; refused without permission. */
static int clocks_set(nvmlDevice_t device, int mem, int lock, unsigned int lo, unsigned int hi,
                      const char *func) {
    DEVICE_CALL(func);
    if ((err = permitted(&st, idx))) return err;
    if (lock) {
        unsigned int v[MAX_CLOCKS];
        int n = mem ? mem_clocks(&st, idx, v) : sm_clocks(&st, idx, v);
        if (lo > hi || !in_list(v, n, lo) || !in_list(v, n, hi))
            return NVML_ERROR_INVALID_ARGUMENT;
    }
    clock_change_t c = {mem, lock, lock ? lo : 0, lock ? hi : 0};
    return update_settings(&st, idx, change_clocks, &c);
}

int nvmlDeviceSetGpuLockedClocks(nvmlDevice_t device, unsigned int min_mhz, unsigned int max_mhz) {
    return clocks_set(device, 0, 1, min_mhz, max_mhz, "nvmlDeviceSetGpuLockedClocks");
}

int nvmlDeviceResetGpuLockedClocks(nvmlDevice_t device) {
    return clocks_set(device, 0, 0, 0, 0, "nvmlDeviceResetGpuLockedClocks");
}

int nvmlDeviceSetMemoryLockedClocks(nvmlDevice_t device, unsigned int min_mhz,
                                    unsigned int max_mhz) {
    return clocks_set(device, 1, 1, min_mhz, max_mhz, "nvmlDeviceSetMemoryLockedClocks");
}

int nvmlDeviceResetMemoryLockedClocks(nvmlDevice_t device) {
    return clocks_set(device, 1, 0, 0, 0, "nvmlDeviceResetMemoryLockedClocks");
}
