/* nvml_standin.c - a stand-in libnvidia-ml.so.1 so that the real pynvml (nvidia-ml-py 13.615.71)
 * can be driven on a machine with no NVIDIA driver. Written for r4b-deploy's tests.
 *
 *   gcc -shared -fPIC -o libnvidia-ml.so.1 nvml_standin.c -Wl,-soname,libnvidia-ml.so.1
 *
 * The inventory is a JSON file named by $R4B_NVML_STANDIN_CONFIG, read again at every nvmlInit*():
 *   {"init_error": 0, "driver_version": "550.54.15", "cuda_driver_version": 12040,
 *    "fail": {"nvmlSystemGetDriverVersion": 3},
 *    "devices": [{"name": "NVIDIA L4", "uuid": "GPU-...", "pci_bus_id": "00000000:01:00.0",
 *                 "memory_total_mib": 23034, "memory_used_mib": 0, "memory_free_mib": <total-used>,
 *                 "cc_major": 8, "cc_minor": 9, "mig_mode": null|0|1, "mig_pending": <mig_mode>,
 *                 "nvlink_links": 0, "nvlink_active": <nvlink_links>,
 *                 "nvlink_remote": ["00000000:02:00.0", ...], "nvlink_remote_type": 0|2,
 *                 "fail": {"nvmlDeviceGetMemoryInfo": 3}}]}
 * - "fail" maps an exported function name to the raw nvmlReturn_t it returns instead of working
 *   (3 NOT_SUPPORTED, 9 DRIVER_NOT_LOADED, 13 FUNCTION_NOT_FOUND: pynvml raises for 13 exactly as
 *   for a symbol the library lacks). Top-level "fail" applies to every device.
 * - mig_mode absent/null -> NOT_SUPPORTED; nvlink_links 0 -> NOT_SUPPORTED.
 * - nvlink_remote[i] is the PCI bus id at the far end of link i (a GPU's, or an NVSwitch's with
 *   nvlink_remote_type 2); a link without one answers NOT_SUPPORTED.
 * - A missing, malformed or misspelt config makes nvmlInit return NVML_ERROR_UNKNOWN (999) and say
 *   why on stderr: a broken test setup fails loudly instead of looking like "0 GPUs".
 * The JSON reader flattens paths ("devices.0.name"); it handles what the tests write, no more. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_ENV "R4B_NVML_STANDIN_CONFIG"
enum { OK = 0, UNINITIALIZED = 1, INVALID_ARGUMENT = 2, NOT_SUPPORTED = 3, INSUFFICIENT_SIZE = 7,
       ARGUMENT_VERSION_MISMATCH = 25, UNKNOWN = 999 };
enum { MAX_DEVICES = 64, MAX_LINKS = 36 /* NVML_NVLINK_MAX_LINKS */, MAX_FAULTS = 16, BUS_ID_LEN = 32 };
#define BYTES_PER_MIB (1024ULL * 1024ULL)
#define MEMORY_V2_VERSION 0x02000028 /* nvmlMemory_v2: sizeof | 2 << 24 */

typedef struct { char function[96]; int code; } fault_t;
typedef struct { fault_t items[MAX_FAULTS]; int count; } faults_t;
typedef struct {
    char name[96], uuid[96], bus_id[BUS_ID_LEN];
    long long total_mib, used_mib, free_mib; /* free_mib < 0: total - used */
    int cc_major, cc_minor, mig, mig_pending, links, active, remote_type;
    char remote[MAX_LINKS][BUS_ID_LEN];
    faults_t faults;
} device_t;

/* The structs pynvml passes (nvmlMemory_t, nvmlMemory_v2_t, nvmlPciInfo_t). */
typedef struct { unsigned long long total, free, used; } memory_v1_t;
typedef struct { unsigned version; unsigned long long total, reserved, free, used; } memory_v2_t;
typedef struct {
    char bus_id_legacy[16];
    unsigned domain, bus, device, pci_device_id, pci_subsystem_id;
    char bus_id[BUS_ID_LEN];
} pci_info_t;

static device_t devices[MAX_DEVICES];
static faults_t global_faults;
static int device_count, init_error, cuda_version, refcount;
static char driver_version[80];
static const char *cursor; /* JSON read position */
static char config_problem[160];

/* ------------------------------------------------------------------ config */

static int add_fault(faults_t *f, const char *function, const char *value)
{
    if (f->count >= MAX_FAULTS || strlen(function) >= sizeof f->items[0].function) return -1;
    snprintf(f->items[f->count].function, sizeof f->items[0].function, "%s", function);
    f->items[f->count++].code = (int)strtol(value, NULL, 0);
    return 0;
}

static long long number(const char *v) { return !strcmp(v, "true") ? 1 : strtoll(v, NULL, 0); }

/* One flattened key/value; value NULL means "a container starts here". Returns -1 on unknown keys. */
static int set_value(const char *key, const char *value)
{
    int i, link;
    char field[96];
    if (!strcmp(key, "") || !strcmp(key, "devices") || !strcmp(key, "fail")) return value ? -1 : 0;
    if (!strncmp(key, "fail.", 5)) return value ? add_fault(&global_faults, key + 5, value) : -1;
    if (sscanf(key, "devices.%d", &i) == 1) {
        if (i < 0 || i >= MAX_DEVICES) return -1;
        if (i >= device_count) device_count = i + 1;
        if (sscanf(key, "devices.%*d.%95s", field) != 1) return value ? -1 : 0; /* the device object */
        device_t *d = &devices[i];
        if (!strcmp(field, "fail") || !strcmp(field, "nvlink_remote")) return value ? -1 : 0;
        if (!value) return -1;
        if (!strncmp(field, "fail.", 5)) return add_fault(&d->faults, field + 5, value);
        if (sscanf(field, "nvlink_remote.%d", &link) == 1) {
            if (link < 0 || link >= MAX_LINKS) return -1;
            snprintf(d->remote[link], BUS_ID_LEN, "%s", value);
        }
        else if (!strcmp(field, "name")) snprintf(d->name, sizeof d->name, "%s", value);
        else if (!strcmp(field, "uuid")) snprintf(d->uuid, sizeof d->uuid, "%s", value);
        else if (!strcmp(field, "pci_bus_id")) snprintf(d->bus_id, BUS_ID_LEN, "%s", value);
        else if (!strcmp(field, "memory_total_mib")) d->total_mib = number(value);
        else if (!strcmp(field, "memory_used_mib")) d->used_mib = number(value);
        else if (!strcmp(field, "memory_free_mib")) d->free_mib = number(value);
        else if (!strcmp(field, "cc_major")) d->cc_major = (int)number(value);
        else if (!strcmp(field, "cc_minor")) d->cc_minor = (int)number(value);
        else if (!strcmp(field, "mig_mode")) d->mig = (int)number(value);
        else if (!strcmp(field, "mig_pending")) d->mig_pending = (int)number(value);
        else if (!strcmp(field, "nvlink_links")) d->links = (int)number(value);
        else if (!strcmp(field, "nvlink_active")) d->active = (int)number(value);
        else if (!strcmp(field, "nvlink_remote_type")) d->remote_type = (int)number(value);
        else return -1;
        return 0;
    }
    if (!value) return -1;
    if (!strcmp(key, "init_error")) init_error = (int)number(value);
    else if (!strcmp(key, "cuda_driver_version")) cuda_version = (int)number(value);
    else if (!strcmp(key, "driver_version")) snprintf(driver_version, sizeof driver_version, "%s", value);
    else return -1;
    return 0;
}

static void skip_space(void) { while (isspace((unsigned char)*cursor)) cursor++; }

static int read_string(char *out, size_t size) /* \uXXXX becomes '?' */
{
    size_t n = 0;
    if (*cursor++ != '"') return -1;
    while (*cursor && *cursor != '"') {
        char c = *cursor++;
        if (c == '\\') {
            c = *cursor++;
            if (c == 'n') c = '\n';
            else if (c == 't') c = '\t';
            else if (c == 'u') { c = '?'; for (int k = 0; k < 4 && *cursor; k++) cursor++; }
            else if (!c) return -1;
        }
        if (n + 1 < size) out[n++] = c;
    }
    out[n] = 0;
    return *cursor++ == '"' ? 0 : -1;
}

static int bad_key(const char *path)
{
    snprintf(config_problem, sizeof config_problem, "unknown or misplaced key '%s'", path);
    return -1;
}

static int read_value(char *path, size_t cap)
{
    char buf[256];
    skip_space();
    if (*cursor == '{' || *cursor == '[') {
        int is_object = *cursor == '{', index = 0;
        char close = is_object ? '}' : ']';
        cursor++;
        if (set_value(path, NULL)) return bad_key(path);
        skip_space();
        if (*cursor == close) { cursor++; return 0; }
        for (size_t len = strlen(path);; path[len] = 0) {
            if (is_object) {
                skip_space();
                if (read_string(buf, 64)) return -1;
                skip_space();
                if (*cursor++ != ':') return -1;
                snprintf(path + len, cap - len, "%s%s", len ? "." : "", buf);
            } else {
                snprintf(path + len, cap - len, "%s%d", len ? "." : "", index++);
            }
            if (read_value(path, cap)) return -1;
            skip_space();
            if (*cursor == ',') { cursor++; continue; }
            path[len] = 0;
            return *cursor++ == close ? 0 : -1;
        }
    }
    if (*cursor == '"') {
        if (read_string(buf, sizeof buf)) return -1;
    } else {
        size_t n = 0;
        while (*cursor && !strchr(",}] \t\r\n", *cursor) && n + 1 < sizeof buf) buf[n++] = *cursor++;
        buf[n] = 0;
        if (!n) return -1;
        if (!strcmp(buf, "null")) return 0; /* null == key absent */
    }
    return set_value(path, buf) ? bad_key(path) : 0;
}

static int load_config(void)
{
    const char *file_name = getenv(CONFIG_ENV);
    char path[256] = "", *text = NULL;
    long len = -1;
    FILE *f = file_name ? fopen(file_name, "rb") : NULL;

    memset(devices, 0, sizeof devices);
    memset(&global_faults, 0, sizeof global_faults);
    device_count = init_error = 0;
    cuda_version = 12040;
    strcpy(driver_version, "550.54.15");
    snprintf(config_problem, sizeof config_problem, "not valid JSON");
    for (int i = 0; i < MAX_DEVICES; i++) devices[i].mig = devices[i].mig_pending = devices[i].free_mib = devices[i].active = -1;

    if (f && !fseek(f, 0, SEEK_END) && (len = ftell(f)) >= 0 && (text = calloc(1, len + 1))) {
        rewind(f);
        if (fread(text, 1, len, f) != (size_t)len) len = -1;
    }
    if (f) fclose(f);
    if (!text || len < 0) snprintf(config_problem, sizeof config_problem, "cannot read it");
    cursor = text;
    int bad = !text || len < 0 || read_value(path, sizeof path) || (skip_space(), *cursor);
    free(text);
    if (bad) {
        fprintf(stderr, "nvml_standin: bad %s=%s: %s\n", CONFIG_ENV, file_name ? file_name : "(unset)", config_problem);
        return UNKNOWN;
    }
    for (int i = 0; i < device_count; i++) {
        device_t *d = &devices[i];
        if (!d->name[0]) strcpy(d->name, "NVIDIA Stand-in GPU");
        if (!d->uuid[0]) snprintf(d->uuid, sizeof d->uuid, "GPU-00000000-0000-4000-8000-%012d", i);
        if (!d->bus_id[0]) snprintf(d->bus_id, BUS_ID_LEN, "00000000:%02X:00.0", i + 1);
        if (d->free_mib < 0) d->free_mib = d->total_mib - d->used_mib;
        if (d->active < 0) d->active = d->links;
        if (d->mig_pending < 0) d->mig_pending = d->mig;
    }
    return OK;
}

/* ------------------------------------------------------------------ helpers */

static int injected(const device_t *d, const char *function)
{
    for (int i = 0; d && i < d->faults.count; i++)
        if (!strcmp(d->faults.items[i].function, function)) return d->faults.items[i].code;
    for (int i = 0; i < global_faults.count; i++)
        if (!strcmp(global_faults.items[i].function, function)) return global_faults.items[i].code;
    return OK;
}

static int copy_string(char *dst, unsigned size, const char *s)
{
    if (!dst) return INVALID_ARGUMENT;
    if (strlen(s) >= size) return INSUFFICIENT_SIZE;
    strcpy(dst, s);
    return OK;
}

static void fill_pci(pci_info_t *pci, const char *bus_id)
{
    unsigned function = 0;
    memset(pci, 0, sizeof *pci);
    snprintf(pci->bus_id, sizeof pci->bus_id, "%s", bus_id);
    sscanf(bus_id, "%x:%x:%x.%x", &pci->domain, &pci->bus, &pci->device, &function);
    snprintf(pci->bus_id_legacy, sizeof pci->bus_id_legacy, "%04x:%02x:%02x.%x", pci->domain & 0xffff,
             pci->bus, pci->device, function);
}

/* Declares `d` for handle h; returns early when uninitialised, the handle is foreign, or a fault is injected. */
#define DEVICE(h) \
    device_t *d = (device_t *)(h); \
    if (!refcount) return UNINITIALIZED; \
    if (d < devices || d >= devices + device_count) return INVALID_ARGUMENT; \
    { int fault_ = injected(d, __func__); if (fault_) return fault_; }
#define SYSTEM() \
    if (!refcount) return UNINITIALIZED; \
    { int fault_ = injected(NULL, __func__); if (fault_) return fault_; }

/* ------------------------------------------------------------------ NVML API */

int nvmlInitWithFlags(unsigned flags)
{
    (void)flags;
    int r = load_config();
    if (r || (r = init_error) || (r = injected(NULL, __func__))) return r;
    refcount++;
    return OK;
}
int nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
int nvmlInit(void) { return nvmlInitWithFlags(0); }
int nvmlShutdown(void)
{
    if (!refcount) return UNINITIALIZED;
    refcount--;
    return OK;
}

const char *nvmlErrorString(int r)
{
    static const char *text[] = { "Success", "Uninitialized", "Invalid Argument", "Not Supported",
        "Insufficient Permissions", "Already Initialized", "Not Found", "Insufficient Size",
        "Insufficient External Power", "Driver Not Loaded", "Timeout", "Interrupt Request Issue",
        "NVML Shared Library Not Found", "Function Not Found", "Corrupted infoROM", "GPU is lost" };
    return r >= 0 && r < (int)(sizeof text / sizeof *text) ? text[r] : "Unknown Error";
}

int nvmlSystemGetDriverVersion(char *v, unsigned n) { SYSTEM(); return copy_string(v, n, driver_version); }
int nvmlSystemGetCudaDriverVersion(int *v)
{
    SYSTEM();
    if (!v) return INVALID_ARGUMENT;
    *v = cuda_version;
    return OK;
}
int nvmlSystemGetCudaDriverVersion_v2(int *v)
{
    SYSTEM();
    if (!v) return INVALID_ARGUMENT;
    *v = cuda_version;
    return OK;
}

int nvmlDeviceGetCount_v2(unsigned *count)
{
    SYSTEM();
    if (!count) return INVALID_ARGUMENT;
    *count = (unsigned)device_count;
    return OK;
}
int nvmlDeviceGetHandleByIndex_v2(unsigned i, void **handle)
{
    SYSTEM();
    if (!handle || i >= (unsigned)device_count) return INVALID_ARGUMENT;
    *handle = &devices[i];
    return OK;
}

int nvmlDeviceGetName(void *h, char *v, unsigned n) { DEVICE(h); return copy_string(v, n, d->name); }
int nvmlDeviceGetUUID(void *h, char *v, unsigned n) { DEVICE(h); return copy_string(v, n, d->uuid); }

int nvmlDeviceGetPciInfo_v3(void *h, pci_info_t *pci)
{
    DEVICE(h);
    if (!pci) return INVALID_ARGUMENT;
    fill_pci(pci, d->bus_id);
    return OK;
}

int nvmlDeviceGetMemoryInfo(void *h, memory_v1_t *m)
{
    DEVICE(h);
    if (!m) return INVALID_ARGUMENT;
    m->total = d->total_mib * BYTES_PER_MIB;
    m->free = d->free_mib * BYTES_PER_MIB;
    m->used = d->used_mib * BYTES_PER_MIB;
    return OK;
}
int nvmlDeviceGetMemoryInfo_v2(void *h, memory_v2_t *m)
{
    DEVICE(h);
    if (!m) return INVALID_ARGUMENT;
    if (m->version != MEMORY_V2_VERSION) return ARGUMENT_VERSION_MISMATCH;
    m->total = d->total_mib * BYTES_PER_MIB;
    m->reserved = 0;
    m->free = d->free_mib * BYTES_PER_MIB;
    m->used = d->used_mib * BYTES_PER_MIB;
    return OK;
}

int nvmlDeviceGetCudaComputeCapability(void *h, int *major, int *minor)
{
    DEVICE(h);
    if (!major || !minor) return INVALID_ARGUMENT;
    *major = d->cc_major;
    *minor = d->cc_minor;
    return OK;
}

int nvmlDeviceGetMigMode(void *h, unsigned *current, unsigned *pending)
{
    DEVICE(h);
    if (!current || !pending) return INVALID_ARGUMENT;
    if (d->mig < 0) return NOT_SUPPORTED;
    *current = (unsigned)d->mig;
    *pending = (unsigned)d->mig_pending;
    return OK;
}

int nvmlDeviceGetNvLinkState(void *h, unsigned link, unsigned *active)
{
    DEVICE(h);
    if (!active) return INVALID_ARGUMENT;
    if (!d->links) return NOT_SUPPORTED;
    if (link >= (unsigned)d->links) return INVALID_ARGUMENT;
    *active = link < (unsigned)d->active;
    return OK;
}

int nvmlDeviceGetNvLinkRemotePciInfo_v2(void *h, unsigned link, pci_info_t *pci)
{
    DEVICE(h);
    if (!pci) return INVALID_ARGUMENT;
    if (!d->links) return NOT_SUPPORTED;
    if (link >= (unsigned)d->links) return INVALID_ARGUMENT;
    if (!d->remote[link][0]) return NOT_SUPPORTED;
    fill_pci(pci, d->remote[link]);
    return OK;
}

int nvmlDeviceGetNvLinkRemoteDeviceType(void *h, unsigned link, int *type)
{
    DEVICE(h);
    if (!type) return INVALID_ARGUMENT;
    if (!d->links) return NOT_SUPPORTED;
    if (link >= (unsigned)d->links) return INVALID_ARGUMENT;
    *type = d->remote_type;
    return OK;
}
