/* meminfo.c - how much memory this process can still allocate on the host (meminfo.h):
 * MemAvailable from /proc/meminfo, lowered to the headroom of the process's memory cgroups
 * (a container's limit is often far below the machine's free memory). */
#include "host/meminfo.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first line of path as an unsigned number; 0 when it is not one ("max" is no limit). */
static int read_number(const char *path, uint64_t *out)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[64];
    int ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    if (!ok || line[0] < '0' || line[0] > '9') return 0;
    char *end;
    unsigned long long v = strtoull(line, &end, 10);
    if (*end != '\n' && *end != '\0') return 0;
    *out = v;
    return 1;
}

/* The cgroup path of the v2 hierarchy ("0::/path") or of v1's memory controller
 * ("N:...memory...:/path") in the membership list at self_path; *v2 says which. */
static int own_cgroup(const char *self_path, char *out, size_t len, int *v2)
{
    FILE *f = fopen(self_path, "r");
    if (!f) return 0;
    char line[4096];
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2 || c2[1] != '/') continue;
        *c1 = *c2 = '\0';
        const char *controllers = c1 + 1;
        int is_v2 = strcmp(line, "0") == 0 && controllers[0] == '\0' ? 1 : 0;
        int is_memory = 0;
        for (const char *c = controllers; *c; c += strcspn(c, ",")) {
            if (*c == ',') c++;
            if (strncmp(c, "memory", 6) == 0 && (c[6] == ',' || c[6] == '\0')) is_memory = 1;
        }
        /* A v1 memory controller takes precedence: there the v2 hierarchy holds no memory limits. */
        if ((is_v2 && !found) || is_memory) {
            if ((size_t)snprintf(out, len, "%s", c2 + 1) >= len) continue;
            *v2 = is_v2;
            found = 1;
            if (is_memory) break;
        }
    }
    fclose(f);
    return found;
}

int meminfo_available(const char *meminfo_path, const char *cgroup_root, const char *self_cgroup_path, size_t *bytes,
                      char *source, size_t source_len)
{
    FILE *f = fopen(meminfo_path, "r");
    if (!f) {
        snprintf(source, source_len, "%s cannot be read", meminfo_path);
        return 0;
    }
    char line[256];
    uint64_t kib = 0;
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) found = sscanf(line, "MemAvailable: %" SCNu64 " kB", &kib) == 1;
    fclose(f);
    if (!found) {
        snprintf(source, source_len, "%s has no MemAvailable line", meminfo_path);
        return 0;
    }
    uint64_t avail = kib > UINT64_MAX / 1024 ? UINT64_MAX : kib * 1024;
    snprintf(source, source_len, "MemAvailable in %s", meminfo_path);

    char rel[2048];
    int v2 = 0;
    if (cgroup_root && self_cgroup_path && own_cgroup(self_cgroup_path, rel, sizeof rel, &v2)) {
        char dir[4096];
        int n = snprintf(dir, sizeof dir, "%s%s%s", cgroup_root, v2 ? "" : "/memory", strcmp(rel, "/") ? rel : "");
        size_t root_len = strlen(cgroup_root) + (v2 ? 0 : 7);
        while (n > 0 && (size_t)n < sizeof dir) {
            char limit_path[4200], usage_path[4200];
            snprintf(limit_path, sizeof limit_path, "%s/%s", dir, v2 ? "memory.max" : "memory.limit_in_bytes");
            snprintf(usage_path, sizeof usage_path, "%s/%s", dir, v2 ? "memory.current" : "memory.usage_in_bytes");
            uint64_t limit, usage;
            if (read_number(limit_path, &limit) && read_number(usage_path, &usage)) {
                uint64_t headroom = usage < limit ? limit - usage : 0;
                if (headroom < avail) {
                    avail = headroom;
                    snprintf(source, source_len, "the cgroup limit %s less %s", limit_path, usage_path);
                }
            }
            /* Up one level, never above the hierarchy's root. */
            char *slash = strrchr(dir, '/');
            if (!slash || (size_t)(slash - dir) < root_len) break;
            *slash = '\0';
            n = (int)(slash - dir);
        }
    }
    *bytes = avail > SIZE_MAX ? SIZE_MAX : (size_t)avail;
    return 1;
}
