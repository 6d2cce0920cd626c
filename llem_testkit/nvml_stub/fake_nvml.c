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
 *   gpuI.name=..., gpuI.uuid=...
 *   gpuI.mem_total=BYTES, gpuI.mem_used=BYTES
 *   gpuI.energy_mj=MJ         total energy counter at t0 (uint64, wraps)
 *   gpuI.energy_rate_mw=MW    counter advance: MW milliwatts = MW mJ per second
 *   gpuI.energy_update_ms=MS  the counter only moves every MS ms (0: continuous)
 *   gpuI.power_mw=MW          nvmlDeviceGetPowerUsage
 *   gpuI.temp_c=C             temperature at t0
 *   gpuI.cool_c_per_s=R       temperature falls by R degrees C per second since t0 ...
 *   gpuI.temp_floor_c=F       ... down to F (default: no floor below 0)
 *   gpuI.throttle=BITS        clocks event (throttle) reasons bitmask, decimal or 0x
 *   gpuI.procs=PID:BYTES,...  compute processes
 *   error.FUNC=N              FUNC (exported symbol name) returns N on every GPU
 *   gpuI.error.FUNC=N         FUNC returns N on GPU i only
 *
 * Build: gcc -shared -fPIC -o DIR/libnvidia-ml.so.1 fake_nvml.c
 * Define NO_CLOCKS_EVENT_REASONS to leave out the new-name throttle function,
 * as an older driver's library would.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_UNKNOWN 999

#define MAX_GPUS 16
#define MAX_ENTRIES 128
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

/* ---- device queries ----------------------------------------------------- */

int nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    DEVICE_CALL("nvmlDeviceGetName");
    const char *v = gpu_get(&st, idx, "name");
    snprintf(name, length, "%s", v ? v : "Fake GPU");
    return NVML_SUCCESS;
}

int nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    DEVICE_CALL("nvmlDeviceGetUUID");
    const char *v = gpu_get(&st, idx, "uuid");
    if (v)
        snprintf(uuid, length, "%s", v);
    else
        snprintf(uuid, length, "GPU-fake-%04d", idx);
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
    double e = elapsed_s(&st);
    if (period_s > 0) e = (double)(uint64_t)(e / period_s) * period_s;
    /* Unsigned addition: a base near 2^64 wraps as the real 64-bit counter would. */
    *energy = (unsigned long long)(base + (uint64_t)(rate_mw * e));
    return NVML_SUCCESS;
}

int nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
    DEVICE_CALL("nvmlDeviceGetPowerUsage");
    *power = (unsigned int)gpu_num(&st, idx, "power_mw", 100000.0);
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
