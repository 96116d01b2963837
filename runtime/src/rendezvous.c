/* rendezvous.c - rank 0 hands a small blob (NCCL's unique id) to the other ranks of a job
 * through a file on a file system they all see (rendezvous.h).
 *
 * Why a file and not TCP: clusters that launch ranks themselves (SLURM, PBS, a script over
 * ssh) always give them a shared file system, while a port that every node may reach on
 * rank 0's host is not given (firewalls, several jobs on one node choosing ports); a file
 * needs no port choice, no listening socket and no host name resolution, and its failure
 * modes (no such directory, not shared) are easy to name in a message. The blob is written
 * once per job, so the cost of polling a file does not matter.
 *
 * Files, for path P and world size W:
 *   P            data: header, the blob, checksum; written by rank 0 only
 *   P.ack.<r>    acknowledgement of rank r (1 <= r < W); written by rank r only
 * Every file is written to a temporary name in the same directory and renamed, so a reader
 * sees a whole file or none. All integers are little-endian.
 *   data (40 + len bytes): "PPRDVDAT", u32 format, u32 world, u32 len, u32 state,
 *        u64 nonce, blob[len], u64 checksum
 *   ack (48 bytes):        "PPRDVACK", u32 format, u32 rank, u32 world, u32 len, u32 phase,
 *        u32 zero, u64 nonce, u64 checksum
 * checksum: FNV-1a (64 bits of hash.c's 128) over the bytes before it.
 *
 * Protocol (two phases, so that no stale file is ever taken for this job's):
 *   rank 0: removes P and P.ack.1 .. P.ack.(W-1) where they are rendezvous files (refuses
 *           to remove anything else); draws a random 64-bit nonce N; writes P with state
 *           OFFERED; waits until every P.ack.r carries N (phase 1); rewrites P with state
 *           COMMITTED; waits until every P.ack.r carries N with phase 2; removes P and the
 *           acks. On any failure it removes them too.
 *   rank r: polls P. OFFERED with a nonce it has not acknowledged: it acknowledges it
 *           (phase 1, remembering N). COMMITTED with the nonce it acknowledged: it copies
 *           the blob, writes phase 2 and returns. COMMITTED with any other nonce: left by an
 *           earlier job (this job's rank 0 commits only after this process acknowledged),
 *           so it waits for a fresh file.
 * Invariant: a rank returns a blob only after a live rank 0 confirmed (COMMITTED) the very
 * nonce this process acknowledged, and rank 0 draws the nonce in this call; a file left by
 * a crashed job (OFFERED or COMMITTED, whatever its acks) is at worst acknowledged and then
 * replaced by this job's rank 0, whose nonce differs. Stale acks carry another nonce and
 * are ignored. Every wait polls with a sleep of at most 20 ms and ends at timeout_s.
 * Mismatches: a data file for another world size, blob length or format is an error at
 * once, unless it was last modified more than timeout_s + 5 s ago (rank 0 of a live job
 * rewrites or removes it within its own timeout), then it is taken for stale and waited
 * past. An ack carrying rank 0's nonce but another world size or length is an error at
 * rank 0. A file at P or P.ack.r without the magic, or with it but malformed (truncated,
 * bad checksum), is an error at once, never waited past: rank 0's writes are atomic, so
 * such a file is not a write in progress but another program's file or damage. */
#include "rendezvous.h"

#include "context.h"
#include "file.h"
#include "hash.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
    format_version = 1,
    data_header = 32, /* bytes before the blob */
    ack_bytes = 48,
    state_offered = 1,
    state_committed = 2,
    poll_ms = 20,
    stale_slack_s = 5
};

static const char data_magic[8] = {'P', 'P', 'R', 'D', 'V', 'D', 'A', 'T'};
static const char ack_magic[8] = {'P', 'P', 'R', 'D', 'V', 'A', 'C', 'K'};

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static uint64_t checksum(const unsigned char *p, size_t n)
{
    pp_hash h;
    hash_init(&h);
    hash_bytes(&h, p, n);
    pp_hash_value v = hash_final(&h);
    return get_u64(v.bytes);
}

static double monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Sleeps poll_ms, or less where the deadline comes sooner. */
static void pause_until(double deadline)
{
    double left = deadline - monotonic_s();
    double s = left < poll_ms * 1e-3 ? left : poll_ms * 1e-3;
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* A read file: 0 absent, 1 read (n bytes in buf, age_s since its last modification), -1
 * error (errno). A file longer than cap reads as cap + 1 bytes. */
static int read_small(const char *path, unsigned char *buf, size_t cap, size_t *n, double *age_s)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    *age_s = (double)(now.tv_sec - sb.st_mtim.tv_sec) + (now.tv_nsec - sb.st_mtim.tv_nsec) * 1e-9;
    size_t got = 0;
    while (got < cap + 1) {
        ssize_t r = read(fd, buf + got, cap + 1 - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    *n = got;
    return 1;
}

typedef struct data_file {
    uint32_t format, world, len, state;
    uint64_t nonce;
    const unsigned char *blob;
} data_file;

typedef struct ack_file {
    uint32_t format, rank, world, len, phase;
    uint64_t nonce;
} ack_file;

/* Reads path as a data file: 0 absent, 1 read into *d, or a failure recorded in ctx (-1). */
static int read_data(pp_context *ctx, pp_status *st, const char *path, unsigned char *buf, size_t cap, data_file *d,
                     double *age_s)
{
    size_t n = 0;
    int r = read_small(path, buf, cap, &n, age_s);
    if (r == 0) return 0;
    if (r < 0) {
        *st = ctx_fail(ctx, PP_ERR_IO, "rendezvous: cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    if (n < sizeof data_magic || memcmp(buf, data_magic, sizeof data_magic) != 0) {
        *st = ctx_fail(ctx, PP_ERR_IO,
                       "rendezvous: %s is not a poolprop rendezvous file (%zu bytes, no PPRDVDAT magic); remove it or "
                       "give another rendezvous path",
                       path, n);
        return -1;
    }
    if (n < data_header + 8 || n > cap || n != data_header + (size_t)get_u32(buf + 16) + 8 ||
        get_u64(buf + n - 8) != checksum(buf, n - 8)) {
        *st = ctx_fail(
            ctx, PP_ERR_IO,
            "rendezvous: %s is malformed (%zu bytes: truncated, damaged or with a wrong checksum); remove it", path, n);
        return -1;
    }
    d->format = get_u32(buf + 8);
    d->world = get_u32(buf + 12);
    d->len = get_u32(buf + 16);
    d->state = get_u32(buf + 20);
    d->nonce = get_u64(buf + 24);
    d->blob = buf + data_header;
    return 1;
}

/* Reads path as an ack file: as read_data. */
static int read_ack(pp_context *ctx, pp_status *st, const char *path, ack_file *a)
{
    unsigned char buf[ack_bytes + 1];
    size_t n = 0;
    double age_s;
    int r = read_small(path, buf, ack_bytes, &n, &age_s);
    if (r == 0) return 0;
    if (r < 0) {
        *st = ctx_fail(ctx, PP_ERR_IO, "rendezvous: cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    if (n < sizeof ack_magic || memcmp(buf, ack_magic, sizeof ack_magic) != 0) {
        *st = ctx_fail(ctx, PP_ERR_IO,
                       "rendezvous: %s is not a poolprop rendezvous acknowledgement (%zu bytes, no PPRDVACK magic); "
                       "remove it or give another rendezvous path",
                       path, n);
        return -1;
    }
    if (n != ack_bytes || get_u64(buf + 40) != checksum(buf, 40)) {
        *st = ctx_fail(ctx, PP_ERR_IO, "rendezvous: %s is malformed (%zu bytes, expected %d with a valid checksum)",
                       path, n, ack_bytes);
        return -1;
    }
    a->format = get_u32(buf + 8);
    a->rank = get_u32(buf + 12);
    a->world = get_u32(buf + 16);
    a->len = get_u32(buf + 20);
    a->phase = get_u32(buf + 24);
    a->nonce = get_u64(buf + 32);
    return 1;
}

static pp_status write_data(pp_context *ctx, const char *path, int world, const unsigned char *blob, size_t len,
                            uint32_t state, uint64_t nonce)
{
    size_t n = data_header + len + 8;
    unsigned char *buf = malloc(n);
    if (!buf) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "rendezvous: out of memory writing %s", path);
    memcpy(buf, data_magic, sizeof data_magic);
    put_u32(buf + 8, format_version);
    put_u32(buf + 12, (uint32_t)world);
    put_u32(buf + 16, (uint32_t)len);
    put_u32(buf + 20, state);
    put_u64(buf + 24, nonce);
    memcpy(buf + data_header, blob, len);
    put_u64(buf + n - 8, checksum(buf, n - 8));
    pp_status st = file_write_atomic(ctx, path, buf, n);
    free(buf);
    return st == PP_OK ? PP_OK : ctx_wrap(ctx, st, "rendezvous: writing the rank 0 file");
}

static pp_status write_ack(pp_context *ctx, const char *path, int rank, int world, size_t len, uint32_t phase,
                           uint64_t nonce)
{
    unsigned char buf[ack_bytes] = {0};
    memcpy(buf, ack_magic, sizeof ack_magic);
    put_u32(buf + 8, format_version);
    put_u32(buf + 12, (uint32_t)rank);
    put_u32(buf + 16, (uint32_t)world);
    put_u32(buf + 20, (uint32_t)len);
    put_u32(buf + 24, phase);
    put_u64(buf + 32, nonce);
    put_u64(buf + 40, checksum(buf, 40));
    pp_status st = file_write_atomic(ctx, path, buf, sizeof buf);
    return st == PP_OK ? PP_OK : ctx_wrap(ctx, st, "rendezvous: rank %d acknowledging", rank);
}

static void ack_path(char *out, size_t size, const char *path, int rank)
{
    snprintf(out, size, "%s.ack.%d", path, rank);
}

/* Removes path if it is a rendezvous file of either kind (by its magic); refuses to remove
 * anything else. */
static pp_status remove_stale(pp_context *ctx, const char *path)
{
    unsigned char buf[16];
    size_t n = 0;
    double age_s;
    int r = read_small(path, buf, 8, &n, &age_s);
    if (r == 0) return PP_OK;
    if (r < 0) return ctx_fail(ctx, PP_ERR_IO, "rendezvous: cannot read %s: %s", path, strerror(errno));
    if (n < 8 || (memcmp(buf, data_magic, 8) != 0 && memcmp(buf, ack_magic, 8) != 0))
        return ctx_fail(ctx, PP_ERR_IO,
                        "rendezvous: %s exists and is not a poolprop rendezvous file; rank 0 does not remove it: "
                        "remove it or give another rendezvous path",
                        path);
    if (unlink(path) != 0 && errno != ENOENT)
        return ctx_fail(ctx, PP_ERR_IO, "rendezvous: cannot remove the stale %s: %s", path, strerror(errno));
    return PP_OK;
}

/* A nonzero random 64-bit job tag. */
static pp_status draw_nonce(pp_context *ctx, uint64_t *out)
{
    uint64_t v = 0;
    for (int tries = 0; v == 0 && tries < 4; tries++) {
        ssize_t r = getrandom(&v, sizeof v, 0);
        if (r != (ssize_t)sizeof v) {
            if (r < 0 && errno == EINTR) continue;
            return ctx_fail(ctx, PP_ERR_IO, "rendezvous: getrandom failed: %s", r < 0 ? strerror(errno) : "short read");
        }
    }
    if (v == 0) return ctx_fail(ctx, PP_ERR_INTERNAL, "rendezvous: getrandom gave only zeros");
    *out = v;
    return PP_OK;
}

/* "1, 2, 5" from the ranks 1 .. world-1 whose done[r] is 0, ending in " ..." where out_len
 * bytes do not hold them all. */
static void list_missing(const unsigned char *done, int world, char *out, size_t out_len)
{
    size_t used = 0;
    out[0] = '\0';
    for (int r = 1; r < world; r++) {
        if (done[r]) continue;
        if (used + 32 > out_len) {
            snprintf(out + used, out_len - used, " ...");
            return;
        }
        used += (size_t)snprintf(out + used, out_len - used, "%s%d", used ? ", " : "", r);
    }
}

/* Waits until every ack of ranks 1..world-1 carries nonce with at least phase. */
static pp_status wait_acks(pp_context *ctx, const char *path, int world, size_t len, uint64_t nonce, uint32_t phase,
                           double deadline, double timeout_s)
{
    unsigned char *done = calloc((size_t)world, 1);
    if (!done) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "rendezvous: out of memory waiting at %s", path);
    char ap[4200];
    int missing = world - 1;
    pp_status st = PP_OK;
    for (;;) {
        for (int r = 1; r < world; r++) {
            if (done[r]) continue;
            ack_path(ap, sizeof ap, path, r);
            ack_file a;
            int got = read_ack(ctx, &st, ap, &a);
            if (got < 0) goto out;
            if (got == 0 || a.nonce != nonce) continue; /* absent, or left by an earlier job */
            if (a.format != format_version || a.rank != (uint32_t)r || a.world != (uint32_t)world ||
                a.len != (uint32_t)len) {
                st = ctx_fail(ctx, PP_ERR_IO,
                              "rendezvous: %s: rank %u answered with world size %u, blob length %u and format %u; "
                              "rank 0 has world size %d, blob length %zu and format %d: give every rank the same "
                              "world size",
                              ap, a.rank, a.world, a.len, a.format, world, len, format_version);
                goto out;
            }
            if (a.phase >= phase) done[r] = 1, missing--;
        }
        if (missing == 0) goto out;
        if (monotonic_s() >= deadline) {
            char list[256];
            list_missing(done, world, list, sizeof list);
            st = ctx_fail(ctx, PP_ERR_IO,
                          "rendezvous: rank 0 of %d waited %g s at %s for rank(s) %s (no %s.ack.<rank> %s); are "
                          "they running with the same rendezvous path and world size, and do all ranks see the same "
                          "file system?",
                          world, timeout_s, path, list, path,
                          phase == 1 ? "acknowledging the id" : "confirming they took it");
            goto out;
        }
        pause_until(deadline);
    }
out:
    free(done);
    return st;
}

static void remove_all(const char *path, int world)
{
    char ap[4200];
    unlink(path);
    for (int r = 1; r < world; r++) {
        ack_path(ap, sizeof ap, path, r);
        unlink(ap);
    }
}

static pp_status run_rank0(pp_context *ctx, const char *path, int world, const unsigned char *blob, size_t len,
                           double deadline, double timeout_s)
{
    char ap[4200];
    PP_TRY(remove_stale(ctx, path));
    for (int r = 1; r < world; r++) {
        ack_path(ap, sizeof ap, path, r);
        PP_TRY(remove_stale(ctx, ap));
    }
    uint64_t nonce = 0;
    PP_TRY(draw_nonce(ctx, &nonce));
    pp_status st = write_data(ctx, path, world, blob, len, state_offered, nonce);
    if (st == PP_OK) st = wait_acks(ctx, path, world, len, nonce, 1, deadline, timeout_s);
    if (st == PP_OK) st = write_data(ctx, path, world, blob, len, state_committed, nonce);
    if (st == PP_OK) st = wait_acks(ctx, path, world, len, nonce, 2, deadline, timeout_s);
    remove_all(path, world);
    return st;
}

static pp_status run_other(pp_context *ctx, const char *path, int rank, int world, unsigned char *blob, size_t len,
                           double deadline, double timeout_s)
{
    size_t cap = data_header + RENDEZVOUS_MAX_BLOB + 8;
    unsigned char *buf = malloc(cap + 1);
    if (!buf) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "rendezvous: out of memory reading %s", path);
    char ap[4200];
    ack_path(ap, sizeof ap, path, rank);
    uint64_t acked = 0; /* the nonce this call acknowledged; 0: none */
    int stale_seen = 0;
    pp_status st = PP_OK;
    for (;;) {
        data_file d;
        double age_s = 0;
        int got = read_data(ctx, &st, path, buf, cap, &d, &age_s);
        if (got < 0) break;
        if (got == 1 && (d.format != format_version || d.world != (uint32_t)world || d.len != (uint32_t)len)) {
            if (age_s <= timeout_s + stale_slack_s) {
                st = ctx_fail(ctx, PP_ERR_IO,
                              "rendezvous: %s is for world size %u, blob length %u, format %u; rank %d has world "
                              "size %d, blob length %zu, format %d: give every rank the same world size (if the "
                              "file is left from another job, remove it)",
                              path, d.world, d.len, d.format, rank, world, len, format_version);
                break;
            }
            stale_seen = 1;
        } else if (got == 1 && d.state == state_offered && d.nonce != acked) {
            st = write_ack(ctx, ap, rank, world, len, 1, d.nonce);
            if (st != PP_OK) break;
            acked = d.nonce;
        } else if (got == 1 && d.state == state_committed && d.nonce == acked) {
            memcpy(blob, d.blob, len);
            st = write_ack(ctx, ap, rank, world, len, 2, d.nonce);
            break;
        } else if (got == 1 && d.state == state_committed) {
            stale_seen = 1; /* committed without this process: an earlier job's */
        } else if (got == 1 && d.state != state_offered) {
            st = ctx_fail(ctx, PP_ERR_IO, "rendezvous: %s has an unknown state %u", path, d.state);
            break;
        }
        if (monotonic_s() >= deadline) {
            if (acked)
                st = ctx_fail(ctx, PP_ERR_IO,
                              "rendezvous: rank %d of %d acknowledged the id at %s but rank 0 did not confirm it "
                              "within %g s; is rank 0 running (the file may be left by an earlier job), and did "
                              "every rank 1 .. %d start with the same rendezvous path?",
                              rank, world, path, timeout_s, world - 1);
            else
                st = ctx_fail(ctx, PP_ERR_IO,
                              "rendezvous: rank %d of %d waited %g s for rank 0 at %s%s; is rank 0 running, and do "
                              "all ranks see the same file system?",
                              rank, world, timeout_s, path,
                              stale_seen ? " (only a file left by an earlier job was there)" : "");
            break;
        }
        pause_until(deadline);
    }
    /* On failure, this rank's ack (of this call or a stale nonce) is removed: rank 0 ignores
     * it either way, and it would be left behind. */
    if (st != PP_OK && acked) unlink(ap);
    free(buf);
    return st;
}

pp_status rendezvous_exchange(pp_context *ctx, const char *path, int rank, int world, unsigned char *blob, size_t len,
                              double timeout_s)
{
    if (world < 1 || rank < 0 || rank >= world)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "rendezvous: rank %d and world size %d: need 0 <= rank < world",
                        rank, world);
    if (!blob || len == 0 || len > RENDEZVOUS_MAX_BLOB)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "rendezvous: a blob of %zu bytes%s: need 1 .. %d bytes", len,
                        blob ? "" : " (NULL)", RENDEZVOUS_MAX_BLOB);
    if (!(timeout_s > 0) || !isfinite(timeout_s))
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "rendezvous: timeout %g s: need a positive finite number",
                        timeout_s);
    if (world == 1) return PP_OK;
    if (!path || !path[0] || strlen(path) > 4000)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "rendezvous: %s path: need a file name of 1 .. 4000 bytes",
                        path ? "too long a" : "no");
    double deadline = monotonic_s() + timeout_s;
    pp_status st = rank == 0 ? run_rank0(ctx, path, world, blob, len, deadline, timeout_s)
                             : run_other(ctx, path, rank, world, blob, len, deadline, timeout_s);
    return st;
}
