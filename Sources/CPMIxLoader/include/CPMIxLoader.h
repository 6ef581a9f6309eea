// PMIx through a library opened at run time: the few client calls the
// bootstrap needs, as plain C functions Swift can call. Nothing here links
// against libpmix; fabric_pmix_load opens libpmix.so.2 (Debian: libpmix2)
// when a launcher asks for PMIx, so a build and a program that never meet
// PMIx need no libpmix at all.
//
// Every function but load and error_string returns a PMIx status: 0 is
// success, negative values are PMIx's error codes (named by
// fabric_pmix_error_string). One client per process; not thread-safe.
#ifndef CPMIX_LOADER_H
#define CPMIX_LOADER_H
#include <stddef.h>
#include <stdint.h>

/// The longest namespace PMIx names a job with, plus its terminating NUL.
#define FABRIC_PMIX_NAMESPACE_CAPACITY 256

/// PMIx's status for "no such key" (PMIX_ERR_NOT_FOUND).
#define FABRIC_PMIX_NOT_FOUND (-46)
/// PMIx's status for "the time allowed ran out" (PMIX_ERR_TIMEOUT).
#define FABRIC_PMIX_TIMEOUT (-24)
/// Ours, outside PMIx's range: a value was found but of another type.
#define FABRIC_PMIX_WRONG_TYPE (-1000)

/// Opens `library` (a name for dlopen, such as "libpmix.so.2") and finds
/// the functions below in it. Returns 0, or -1 with the reason (dlerror's
/// words) in `reason`. Loading twice is harmless; the library stays open
/// for the life of the process.
int fabric_pmix_load(const char *library, char *reason, size_t reasonCapacity);

/// Connects to the local PMIx server named by the PMIX_ environment
/// variables; stores this process's rank and its job's namespace.
int fabric_pmix_init(uint32_t *rank, char jobNamespace[FABRIC_PMIX_NAMESPACE_CAPACITY]);

/// The number of processes in the job (its PMIx job size).
int fabric_pmix_job_size(const char *jobNamespace, uint32_t *size);

/// Publishes a string under `key` for every process of the job.
int fabric_pmix_put_string(const char *key, const char *value);

/// Sends what was put to the local server.
int fabric_pmix_commit(void);

/// Waits for every process of the job, collecting everything each one
/// committed so that later gets are answered locally. `timeoutSeconds`
/// 0 waits without limit.
int fabric_pmix_fence_all(const char *jobNamespace, int timeoutSeconds);

/// The string the process `rank` of the job put under `key`. With
/// `localOnly`, only what this process already holds (after a collecting
/// fence) is searched and the server is not asked. On success *value is a malloc'ed copy the
/// caller frees with fabric_pmix_free_string. A value that is not a string
/// returns FABRIC_PMIX_WRONG_TYPE.
int fabric_pmix_get_string(const char *jobNamespace, uint32_t rank, const char *key, int localOnly, int timeoutSeconds, char **value);

/// Frees a value fabric_pmix_get_string returned.
void fabric_pmix_free_string(char *value);

/// Asks the server to end every process of the job with `status`.
int fabric_pmix_abort(int status, const char *message, const char *jobNamespace);

/// Disconnects from the server.
int fabric_pmix_finalize(void);

/// PMIx's words for a status, or a fixed text when the library is not
/// loaded. Never NULL.
const char *fabric_pmix_error_string(int status);

#endif
