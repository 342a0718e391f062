// The HIP runtime (libamdhip64) opened at run time, so that a `rocm` build of librocmforge loads
// and runs on the CPU on a machine without ROCm, and says why it cannot use the GPU.
//
// How: hipcc's host code calls the runtime by name: the functions our glue uses (hipMalloc,
// hipMemcpyAsync, ...) and the ones the compiler emits for `<<<...>>>` launches and for
// registering the embedded code objects (__hipRegisterFatBinary, __hipRegisterFunction,
// __hipPushCallConfiguration, ...). build.rs renames every such reference in the kernel objects
// to `rfrt_<name>` (objcopy --redefine-syms, built from the `rfrt_` symbols this file defines),
// and this file defines each one as a call through a pointer from dlsym. The code objects are
// registered by static constructors when our library is loaded, before anything may open the
// runtime: those registrations are recorded here and replayed into the runtime when it is
// opened (on the first call that needs it). Plain C, no HIP header: only the calling
// conventions matter (hipError_t is an int-sized enum, dim3 three uint32, handles pointers).
//
// Which library: $ROCMFORGE_HIP_RUNTIME when set (a path or a name for dlopen, and then only
// that one), else libamdhip64.so.7, .so.6, .so.5, then the unversioned development link.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rf_errors.h"

typedef struct {
    uint32_t x, y, z;
} rf_dim3;
typedef void* rf_stream;

// Every runtime function our code calls, as (return type, name, parameters, arguments).
// Only functions returning hipError_t belong here; the others are written out below.
#define RF_HIP_FUNCTIONS(X)                                                                   \
    X(hipGetDeviceCount, (int* count), (count))                                               \
    X(hipGetDeviceProperties, (void* props, int device), (props, device))                     \
    X(hipSetDevice, (int device), (device))                                                   \
    X(hipGetDevice, (int* device), (device))                                                  \
    X(hipMemGetInfo, (size_t * free_bytes, size_t * total_bytes), (free_bytes, total_bytes))  \
    X(hipMalloc, (void** ptr, size_t bytes), (ptr, bytes))                                    \
    X(hipFree, (void* ptr), (ptr))                                                            \
    X(hipHostMalloc, (void** ptr, size_t bytes, unsigned flags), (ptr, bytes, flags))         \
    X(hipHostFree, (void* ptr), (ptr))                                                        \
    X(hipStreamCreateWithFlags, (rf_stream * stream, unsigned flags), (stream, flags))        \
    X(hipStreamDestroy, (rf_stream stream), (stream))                                         \
    X(hipStreamSynchronize, (rf_stream stream), (stream))                                     \
    X(hipMemcpyAsync, (void* dst, const void* src, size_t bytes, int kind, rf_stream stream), \
      (dst, src, bytes, kind, stream))                                                        \
    X(hipMemsetAsync, (void* dst, int value, size_t bytes, rf_stream stream),                 \
      (dst, value, bytes, stream))                                                            \
    X(hipGetLastError, (void), ())                                                            \
    X(hipStreamBeginCapture, (rf_stream stream, int mode), (stream, mode))                    \
    X(hipStreamEndCapture, (rf_stream stream, void** graph), (stream, graph))                 \
    X(hipGraphInstantiate, (void** exec, void* graph, void** error_node, char* log, size_t n), \
      (exec, graph, error_node, log, n))                                                      \
    X(hipGraphDestroy, (void* graph), (graph))                                                \
    X(hipGraphLaunch, (void* exec, rf_stream stream), (exec, stream))                         \
    X(hipGraphExecDestroy, (void* exec), (exec))                                              \
    X(hipEventCreate, (void** event), (event))                                                \
    X(hipEventRecord, (void* event, rf_stream stream), (event, stream))                       \
    X(hipEventSynchronize, (void* event), (event))                                            \
    X(hipEventElapsedTime, (float* ms, void* start, void* stop), (ms, start, stop))           \
    X(hipEventDestroy, (void* event), (event))                                                \
    X(hipLaunchKernel,                                                                        \
      (const void* host_function, rf_dim3 grid, rf_dim3 block, void** args, size_t shmem,     \
       rf_stream stream),                                                                     \
      (host_function, grid, block, args, shmem, stream))                                      \
    X(__hipPushCallConfiguration, (rf_dim3 grid, rf_dim3 block, size_t shmem, rf_stream s),   \
      (grid, block, shmem, s))                                                                \
    X(__hipPopCallConfiguration,                                                              \
      (rf_dim3 * grid, rf_dim3 * block, size_t * shmem, rf_stream * s), (grid, block, shmem, s))

// Functions only headers of some ROCm versions reference (ROCm 6 renamed the device-properties
// query with its new struct layout): looked up, but their absence does not fail the load.
#define RF_HIP_OPTIONAL_FUNCTIONS(X) \
    X(hipGetDevicePropertiesR0600, (void* props, int device), (props, device))

typedef void** (*register_fat_binary_fn)(const void* data);
typedef void (*register_function_fn)(void** module, const void* host_function,
                                     char* device_function, const char* device_name,
                                     unsigned thread_limit, void* tid, void* bid, void* block,
                                     void* grid, int* wave_size);
typedef const char* (*error_string_fn)(int code);

static struct {
#define RF_POINTER(name, params, args) int(*name) params;
    RF_HIP_FUNCTIONS(RF_POINTER)
    RF_HIP_OPTIONAL_FUNCTIONS(RF_POINTER)
#undef RF_POINTER
    register_fat_binary_fn register_fat_binary;
    register_function_fn register_function;
    error_string_fn error_string;
} runtime;

// Set once by open_runtime (under `once`), read-only afterwards.
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int opened;
static char why_not[512] = "the HIP runtime has not been opened yet";

// The registrations made before the runtime was opened, replayed by open_runtime: one record
// per code object bundle (one per kernel source file) and one per kernel (template instances
// count one each), in fixed pools: no allocation in a library constructor, and nothing to free.
typedef struct fat_binary {
    const void* data;
    void** module;  // the runtime's handle once replayed
    struct fat_binary* next;
} fat_binary;
typedef struct kernel_record {
    fat_binary* binary;
    const void* host_function;
    char* device_function;
    const char* device_name;
    unsigned thread_limit;
    void *tid, *bid, *block, *grid;
    int* wave_size;
    struct kernel_record* next;
} kernel_record;
#define RF_MAX_BINARIES 64
#define RF_MAX_KERNELS 2048
static fat_binary binary_pool[RF_MAX_BINARIES];
static kernel_record kernel_pool[RF_MAX_KERNELS];
static size_t n_binaries, n_kernels;
static int pool_overflow;  // a registration did not fit: the runtime is then never opened
static fat_binary* binaries;
static kernel_record* kernels;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

static void* open_library(void) {
    const char* chosen = getenv("ROCMFORGE_HIP_RUNTIME");
    if (chosen && *chosen) {
        void* lib = dlopen(chosen, RTLD_NOW | RTLD_LOCAL);
        if (!lib) snprintf(why_not, sizeof why_not, "cannot open the HIP runtime: %s", dlerror());
        return lib;
    }
    static const char* const names[] = {"libamdhip64.so.7", "libamdhip64.so.6",
                                        "libamdhip64.so.5", "libamdhip64.so"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void* lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (lib) return lib;
    }
    snprintf(why_not, sizeof why_not,
             "the HIP runtime is not installed (no libamdhip64.so.7, .so.6 or .so.5 found by the "
             "dynamic loader; set ROCMFORGE_HIP_RUNTIME to its path)");
    return NULL;
}

static void open_runtime(void) {
    if (pool_overflow) {
        snprintf(why_not, sizeof why_not,
                 "more GPU kernels than amd_runtime_loader.c records (raise RF_MAX_KERNELS)");
        return;
    }
    void* lib = open_library();
    if (!lib) return;
#define RF_LOOKUP(name, params, args)                                                   \
    *(void**)&runtime.name = dlsym(lib, #name);                                         \
    if (!runtime.name) {                                                                \
        snprintf(why_not, sizeof why_not, "the HIP runtime lacks %s: %s", #name, dlerror()); \
        return;                                                                         \
    }
    RF_HIP_FUNCTIONS(RF_LOOKUP)
#undef RF_LOOKUP
#define RF_LOOKUP_OPTIONAL(name, params, args) *(void**)&runtime.name = dlsym(lib, #name);
    RF_HIP_OPTIONAL_FUNCTIONS(RF_LOOKUP_OPTIONAL)
#undef RF_LOOKUP_OPTIONAL
    *(void**)&runtime.register_fat_binary = dlsym(lib, "__hipRegisterFatBinary");
    *(void**)&runtime.register_function = dlsym(lib, "__hipRegisterFunction");
    *(void**)&runtime.error_string = dlsym(lib, "hipGetErrorString");
    if (!runtime.register_fat_binary || !runtime.register_function || !runtime.error_string) {
        snprintf(why_not, sizeof why_not, "the HIP runtime lacks its registration functions");
        return;
    }
    pthread_mutex_lock(&registry_lock);
    for (fat_binary* b = binaries; b; b = b->next) b->module = runtime.register_fat_binary(b->data);
    for (kernel_record* k = kernels; k; k = k->next)
        runtime.register_function(k->binary->module, k->host_function, k->device_function,
                                  k->device_name, k->thread_limit, k->tid, k->bid, k->block,
                                  k->grid, k->wave_size);
    opened = 1;
    pthread_mutex_unlock(&registry_lock);
    // The library stays open for the life of the process: registered code lives in it.
}

static int runtime_ready(void) {
    pthread_once(&once, open_runtime);
    return opened;
}

int rf_runtime_open(void) { return runtime_ready() ? 0 : RF_ERR_NO_RUNTIME; }

const char* rf_runtime_unavailable_reason(void) {
    runtime_ready();
    return why_not;
}

#define RF_FORWARD(name, params, args) \
    int rfrt_##name params { return runtime_ready() ? runtime.name args : RF_ERR_NO_RUNTIME; }
RF_HIP_FUNCTIONS(RF_FORWARD)
#undef RF_FORWARD

int rfrt_hipGetDevicePropertiesR0600(void* props, int device) {
    if (!runtime_ready()) return RF_ERR_NO_RUNTIME;
    if (!runtime.hipGetDevicePropertiesR0600) return RF_ERR_NO_RUNTIME;
    return runtime.hipGetDevicePropertiesR0600(props, device);
}

const char* rfrt_hipGetErrorString(int code) {
    if (code == RF_ERR_NO_RUNTIME || !runtime_ready()) return why_not;
    return runtime.error_string(code);
}

// Called by the static constructors of the kernel objects, when this library is loaded: record
// (and, should the runtime be open already, register at once).
void** rfrt___hipRegisterFatBinary(const void* data) {
    pthread_mutex_lock(&registry_lock);
    if (n_binaries == RF_MAX_BINARIES) {
        pool_overflow = 1;
        pthread_mutex_unlock(&registry_lock);
        return NULL;
    }
    fat_binary* b = &binary_pool[n_binaries++];
    b->data = data;
    if (opened) b->module = runtime.register_fat_binary(data);
    b->next = binaries;
    binaries = b;
    pthread_mutex_unlock(&registry_lock);
    return (void**)b;
}

void rfrt___hipRegisterFunction(void** module, const void* host_function, char* device_function,
                                const char* device_name, unsigned thread_limit, void* tid,
                                void* bid, void* block, void* grid, int* wave_size) {
    pthread_mutex_lock(&registry_lock);
    if (!module || n_kernels == RF_MAX_KERNELS) {
        pool_overflow = 1;
        pthread_mutex_unlock(&registry_lock);
        return;
    }
    kernel_record* k = &kernel_pool[n_kernels++];
    *k = (kernel_record){(fat_binary*)module, host_function, device_function, device_name,
                         thread_limit, tid, bid, block, grid, wave_size, NULL};
    if (opened)
        runtime.register_function(k->binary->module, host_function, device_function, device_name,
                                  thread_limit, tid, bid, block, grid, wave_size);
    k->next = kernels;
    kernels = k;
    pthread_mutex_unlock(&registry_lock);
}

// Called at exit (or when our library is unloaded). Not forwarded: the runtime, opened after
// our constructors ran, has already run its own destructors by then, and unregistering from a
// torn-down runtime can crash. The process (or our code) is going away with the registration.
void rfrt___hipUnregisterFatBinary(void** module) { (void)module; }
