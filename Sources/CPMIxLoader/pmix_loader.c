// The one place that calls into libpmix: opened with dlopen, its
// functions found with dlsym, the structures it reads and writes declared
// here from the ABI of OpenPMIx 4 (libpmix.so.2).
#include "CPMIxLoader.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- The ABI, as OpenPMIx 4.2 lays it out on LP64 Linux ----
// Sizes were measured against the library's own headers (260, 32 and 552
// bytes); the static asserts below keep these declarations honest.

// A process: the job's namespace (NUL-terminated, at most 255 characters)
// and the rank within it.
typedef struct {
    char jobNamespace[FABRIC_PMIX_NAMESPACE_CAPACITY];
    uint32_t rank;
} PMIxProcess;

// A tagged value: a 16-bit type code, then a union whose widest member
// (two pointers and a byte) makes it 24 bytes, aligned to 8.
typedef struct {
    uint16_t type;
    union {
        bool flag;
        int integer;
        int32_t int32;
        uint32_t uint32;
        uint64_t uint64;
        size_t size;
        char *text;
        uint64_t widest[3];
    } data;
} PMIxValue;

// An attribute passed to a call: a key of up to 511 characters, flags,
// and the value.
typedef struct {
    char key[512];
    uint32_t flags;
    PMIxValue value;
} PMIxAttribute;

_Static_assert(sizeof(PMIxProcess) == 260, "pmix_proc_t is 260 bytes");
_Static_assert(sizeof(PMIxValue) == 32, "pmix_value_t is 32 bytes");
_Static_assert(sizeof(PMIxAttribute) == 552, "pmix_info_t is 552 bytes");

// Type codes of the values this file reads or writes.
enum {
    typeBool = 1,
    typeString = 3,
    typeSize = 4,
    typeInt = 6,
    typeInt32 = 9,
    typeUInt32 = 14,
    typeUInt64 = 15,
};

// Scope of a put: visible to processes on every node.
static const uint8_t scopeGlobal = 3;
// The rank that stands for the job as a whole (for job-level attributes
// such as its size).
static const uint32_t rankOfJob = UINT32_MAX - 1;

// Attribute keys.
static const char keyJobSize[] = "pmix.job.size";
static const char keyCollectData[] = "pmix.collect";
static const char keyTimeout[] = "pmix.timeout";
// Look only in what this process holds; do not ask the server.
static const char keyLocalOnly[] = "pmix.optional";

// ---- The functions, found by name ----
static struct {
    int (*init)(PMIxProcess *self, PMIxAttribute *attributes, size_t count);
    int (*finalize)(const PMIxAttribute *attributes, size_t count);
    int (*abort)(int status, const char *message, PMIxProcess *processes, size_t count);
    int (*put)(uint8_t scope, const char *key, PMIxValue *value);
    int (*commit)(void);
    int (*fence)(const PMIxProcess *processes, size_t processCount, const PMIxAttribute *attributes, size_t count);
    int (*get)(const PMIxProcess *process, const char *key, const PMIxAttribute *attributes, size_t count, PMIxValue **value);
    const char *(*errorString)(int status);
    void (*destructValue)(PMIxValue *value);
} pmix;

static bool loaded = false;

// What a call returns before fabric_pmix_load succeeded, instead of
// calling through a null pointer: PMIx's "not initialised" (PMIX_ERR_INIT).
static const int notLoaded = -31;

static bool find(void *library, const char *name, void **function, char *reason, size_t reasonCapacity) {
    dlerror();
    *function = dlsym(library, name);
    if (*function != NULL) return true;
    const char *why = dlerror();
    snprintf(reason, reasonCapacity, "%s", why != NULL ? why : name);
    return false;
}

int fabric_pmix_load(const char *library, char *reason, size_t reasonCapacity) {
    if (loaded) return 0;
    // RTLD_LOCAL: libpmix's own plugins link against it by name, so its
    // symbols need not be global.
    void *handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        const char *why = dlerror();
        snprintf(reason, reasonCapacity, "%s", why != NULL ? why : library);
        return -1;
    }
    bool found = find(handle, "PMIx_Init", (void **)&pmix.init, reason, reasonCapacity)
        && find(handle, "PMIx_Finalize", (void **)&pmix.finalize, reason, reasonCapacity)
        && find(handle, "PMIx_Abort", (void **)&pmix.abort, reason, reasonCapacity)
        && find(handle, "PMIx_Put", (void **)&pmix.put, reason, reasonCapacity)
        && find(handle, "PMIx_Commit", (void **)&pmix.commit, reason, reasonCapacity)
        && find(handle, "PMIx_Fence", (void **)&pmix.fence, reason, reasonCapacity)
        && find(handle, "PMIx_Get", (void **)&pmix.get, reason, reasonCapacity)
        && find(handle, "PMIx_Error_string", (void **)&pmix.errorString, reason, reasonCapacity)
        && find(handle, "PMIx_Value_destruct", (void **)&pmix.destructValue, reason, reasonCapacity);
    if (!found) {
        dlclose(handle);
        memset(&pmix, 0, sizeof pmix);
        return -1;
    }
    loaded = true;
    return 0;
}

static void nameJob(PMIxProcess *process, const char *jobNamespace, uint32_t rank) {
    memset(process, 0, sizeof *process);
    snprintf(process->jobNamespace, sizeof process->jobNamespace, "%s", jobNamespace);
    process->rank = rank;
}

static void setTimeout(PMIxAttribute *attribute, int seconds) {
    memset(attribute, 0, sizeof *attribute);
    snprintf(attribute->key, sizeof attribute->key, "%s", keyTimeout);
    attribute->value.type = typeInt;
    attribute->value.data.integer = seconds;
}

// The library frees what its values point to; the value itself came from
// malloc.
static void release(PMIxValue *value) {
    pmix.destructValue(value);
    free(value);
}

int fabric_pmix_init(uint32_t *rank, char jobNamespace[FABRIC_PMIX_NAMESPACE_CAPACITY]) {
    if (!loaded) return notLoaded;
    PMIxProcess self;
    memset(&self, 0, sizeof self);
    int status = pmix.init(&self, NULL, 0);
    if (status != 0) return status;
    *rank = self.rank;
    memcpy(jobNamespace, self.jobNamespace, FABRIC_PMIX_NAMESPACE_CAPACITY);
    jobNamespace[FABRIC_PMIX_NAMESPACE_CAPACITY - 1] = '\0';
    return 0;
}

int fabric_pmix_job_size(const char *jobNamespace, uint32_t *size) {
    if (!loaded) return notLoaded;
    PMIxProcess job;
    nameJob(&job, jobNamespace, rankOfJob);
    PMIxValue *value = NULL;
    int status = pmix.get(&job, keyJobSize, NULL, 0, &value);
    if (status != 0) return status;
    // The standard says uint32; accept the other integer types a server
    // might send rather than misread them.
    int64_t count = -1;
    switch (value->type) {
    case typeUInt32: count = value->data.uint32; break;
    case typeInt32: count = value->data.int32; break;
    case typeInt: count = value->data.integer; break;
    case typeSize: count = (int64_t)value->data.size; break;
    case typeUInt64: count = (int64_t)value->data.uint64; break;
    default: break;
    }
    release(value);
    if (count < 1 || count > UINT32_MAX) return FABRIC_PMIX_WRONG_TYPE;
    *size = (uint32_t)count;
    return 0;
}

int fabric_pmix_put_string(const char *key, const char *value) {
    if (!loaded) return notLoaded;
    PMIxValue tagged;
    memset(&tagged, 0, sizeof tagged);
    tagged.type = typeString;
    // PMIx copies the value; it does not keep this pointer.
    tagged.data.text = (char *)value;
    return pmix.put(scopeGlobal, key, &tagged);
}

int fabric_pmix_commit(void) { return loaded ? pmix.commit() : notLoaded; }

int fabric_pmix_fence_all(const char *jobNamespace, int timeoutSeconds) {
    if (!loaded) return notLoaded;
    PMIxProcess everyone;
    nameJob(&everyone, jobNamespace, rankOfJob);
    PMIxAttribute attributes[2];
    memset(attributes, 0, sizeof attributes);
    // Without this the fence only synchronises, and every later get asks
    // the server, which asks the owner's node.
    snprintf(attributes[0].key, sizeof attributes[0].key, "%s", keyCollectData);
    attributes[0].value.type = typeBool;
    attributes[0].value.data.flag = true;
    size_t count = 1;
    if (timeoutSeconds > 0) setTimeout(&attributes[count++], timeoutSeconds);
    return pmix.fence(&everyone, 1, attributes, count);
}

int fabric_pmix_get_string(const char *jobNamespace, uint32_t rank, const char *key, int localOnly, int timeoutSeconds, char **value) {
    if (!loaded) return notLoaded;
    PMIxProcess owner;
    nameJob(&owner, jobNamespace, rank);
    PMIxAttribute attributes[2];
    size_t count = 0;
    if (localOnly) {
        memset(&attributes[count], 0, sizeof attributes[count]);
        snprintf(attributes[count].key, sizeof attributes[count].key, "%s", keyLocalOnly);
        attributes[count].value.type = typeBool;
        attributes[count].value.data.flag = true;
        count++;
    }
    if (timeoutSeconds > 0) setTimeout(&attributes[count++], timeoutSeconds);
    PMIxValue *found = NULL;
    int status = pmix.get(&owner, key, count > 0 ? attributes : NULL, count, &found);
    if (status != 0) return status;
    if (found->type != typeString || found->data.text == NULL) {
        release(found);
        return FABRIC_PMIX_WRONG_TYPE;
    }
    *value = strdup(found->data.text);
    release(found);
    // PMIx's own code for "out of memory" (PMIX_ERR_NOMEM).
    return *value != NULL ? 0 : -32;
}

void fabric_pmix_free_string(char *value) { free(value); }

int fabric_pmix_abort(int status, const char *message, const char *jobNamespace) {
    if (!loaded) return notLoaded;
    PMIxProcess everyone;
    nameJob(&everyone, jobNamespace, rankOfJob);
    return pmix.abort(status, message, &everyone, 1);
}

int fabric_pmix_finalize(void) { return loaded ? pmix.finalize(NULL, 0) : notLoaded; }

const char *fabric_pmix_error_string(int status) {
    if (status == FABRIC_PMIX_WRONG_TYPE) return "the value is not of the expected type";
    if (!loaded) return "libpmix is not loaded";
    const char *text = pmix.errorString(status);
    return text != NULL ? text : "unknown PMIx status";
}
