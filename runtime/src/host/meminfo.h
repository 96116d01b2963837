/* meminfo.h - how much memory this process can still allocate on the host: what the host
 * backend checks a model's planned peak against before allocating it. */
#ifndef PP_HOST_MEMINFO_H
#define PP_HOST_MEMINFO_H

#include <stddef.h>

/* MemAvailable of meminfo_path (normally /proc/meminfo), lowered to the headroom (limit
 * minus usage) of every memory cgroup from the process's own up to its hierarchy's root:
 * cgroup v2 (memory.max, memory.current) under cgroup_root, else v1 (memory.limit_in_bytes,
 * memory.usage_in_bytes) under cgroup_root/memory. self_cgroup_path is the process's
 * membership list (normally /proc/self/cgroup); NULL or missing: no cgroup limit. Returns 1
 * with *bytes set and source naming the file the figure comes from, or 0 (source says why)
 * when meminfo_path cannot be read or has no MemAvailable line. */
int meminfo_available(const char *meminfo_path, const char *cgroup_root, const char *self_cgroup_path, size_t *bytes,
                      char *source, size_t source_len);

#endif
