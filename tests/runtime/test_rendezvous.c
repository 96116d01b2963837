/* test_rendezvous.c - the shared-file rendezvous (runtime/src/rendezvous.c): ranks in
 * fork()ed processes exchange a random 128-byte blob through a temporary directory; files
 * left by an earlier job are not taken; a missing rank 0 times out naming rank, world and
 * path; mismatched world sizes and foreign or damaged files are errors; bad arguments are
 * refused. The stale files are written here from the format rendezvous.c documents, so a
 * change of the format fails these tests. */
#include "hash.h"
#include "rendezvous.h"
#include "test_util.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

enum {
    blob_len = 128
};

/* What a rank's process reports back through its pipe. */
typedef struct rank_result {
    int status;
    unsigned char blob[blob_len];
    double seconds;
    char error[2048];
} rank_result;

typedef struct rank_job {
    pid_t pid;
    int fd;
} rank_job;

static pp_context *none_context(void)
{
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_NONE;
    pp_context *ctx = NULL;
    CHECK_OK(ctx, pp_context_create(&o, &ctx));
    return ctx;
}

/* Runs rendezvous_exchange in a child process; blob is what the rank passes in. */
static rank_job start_rank(const char *path, int rank, int world, size_t len, const unsigned char *blob,
                           double timeout_s)
{
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        close(p[0]);
        alarm(20); /* a hang kills the child, and the parent's check fails */
        rank_result r;
        memset(&r, 0, sizeof r);
        memcpy(r.blob, blob, len);
        pp_context *ctx = none_context();
        double t0 = test_now_s();
        r.status = rendezvous_exchange(ctx, path, rank, world, r.blob, len, timeout_s);
        r.seconds = test_now_s() - t0;
        snprintf(r.error, sizeof r.error, "%s", pp_last_error(ctx));
        pp_context_destroy(ctx);
        _exit(write(p[1], &r, sizeof r) == (ssize_t)sizeof r ? 0 : 3);
    }
    close(p[1]);
    return (rank_job){pid, p[0]};
}

static int still_running(rank_job j)
{
    int ws;
    return waitpid(j.pid, &ws, WNOHANG) == 0;
}

static rank_result finish_rank(rank_job j)
{
    rank_result r;
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t n = read(j.fd, (char *)&r + got, sizeof r - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(j.fd);
    int ws = 0;
    CHECK(waitpid(j.pid, &ws, 0) == j.pid, "waitpid");
    CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "rank process ended abnormally (status %d)", ws);
    CHECK(got == sizeof r, "rank process reported %zu of %zu bytes", got, sizeof r);
    return r;
}

static void random_blob(unsigned char *b, size_t n, uint64_t *state)
{
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)test_rand_u32(state);
}

/* Entries in dir other than . and .. */
static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL, "opendir %s", dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            printf("    left in %s: %s\n", dir, e->d_name);
            n++;
        }
    closedir(d);
    return n;
}

/* ---- the file format, as rendezvous.c documents it ---- */

static void le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t fnv64(const unsigned char *p, size_t n)
{
    pp_hash h;
    hash_init(&h);
    hash_bytes(&h, p, n);
    pp_hash_value v = hash_final(&h);
    uint64_t x = 0;
    for (int i = 0; i < 8; i++) x |= (uint64_t)v.bytes[i] << (8 * i);
    return x;
}

static void write_bytes(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(b, 1, n, f) == n && fclose(f) == 0, "cannot write %s", path);
}

/* A data file; state 1 offered, 2 committed. Returns its size (buf holds 40 + len). */
static size_t data_bytes(unsigned char *buf, uint32_t world, uint32_t len, uint32_t state, uint64_t nonce,
                         const unsigned char *blob)
{
    memcpy(buf, "PPRDVDAT", 8);
    le32(buf + 8, 1);
    le32(buf + 12, world);
    le32(buf + 16, len);
    le32(buf + 20, state);
    le64(buf + 24, nonce);
    memcpy(buf + 32, blob, len);
    le64(buf + 32 + len, fnv64(buf, 32 + len));
    return 40 + len;
}

static void write_ack_file(const char *path, uint32_t rank, uint32_t world, uint32_t len, uint32_t phase,
                           uint64_t nonce)
{
    unsigned char buf[48] = {0};
    memcpy(buf, "PPRDVACK", 8);
    le32(buf + 8, 1);
    le32(buf + 12, rank);
    le32(buf + 16, world);
    le32(buf + 20, len);
    le32(buf + 24, phase);
    le64(buf + 32, nonce);
    le64(buf + 40, fnv64(buf, 40));
    write_bytes(path, buf, sizeof buf);
}

static void set_age(const char *path, double seconds)
{
    struct timeval now;
    gettimeofday(&now, NULL);
    struct timeval t[2] = {{now.tv_sec - (time_t)seconds, 0}, {now.tv_sec - (time_t)seconds, 0}};
    CHECK(utimes(path, t) == 0, "utimes %s", path);
}

/* ---- cases ---- */

static uint64_t rng = 0x5eed1234abcdULL;

/* Three ranks, starting in the given order with 50 ms between, exchange a fresh blob. */
static void exchange_once(const char *dir, const char *path, const int order[3])
{
    unsigned char sent[blob_len], zero[blob_len] = {0};
    random_blob(sent, blob_len, &rng);
    rank_job jobs[3];
    for (int i = 0; i < 3; i++) {
        int r = order[i];
        jobs[r] = start_rank(path, r, 3, blob_len, r == 0 ? sent : zero, 5.0);
        usleep(50000);
    }
    double slowest = 0;
    for (int r = 0; r < 3; r++) {
        rank_result res = finish_rank(jobs[r]);
        CHECK(res.status == PP_OK, "rank %d: %s", r, res.error);
        CHECK(memcmp(res.blob, sent, blob_len) == 0, "rank %d received other bytes than rank 0 sent", r);
        if (res.seconds > slowest) slowest = res.seconds;
    }
    CHECK(dir_entries(dir) == 0, "files left behind in %s", dir);
    printf("  order %d,%d,%d: 3 ranks hold rank 0's %d bytes exactly; slowest rank %.3f s; %s empty\n", order[0],
           order[1], order[2], blob_len, slowest, dir);
}

static void exchange(void)
{
    char dir[256], path[300];
    test_temp_dir(dir, sizeof dir, "rdv");
    snprintf(path, sizeof path, "%s/id", dir);
    exchange_once(dir, path, (const int[3]){1, 2, 0});
    exchange_once(dir, path, (const int[3]){0, 2, 1}); /* same path: the first job left it clean */
    exchange_once(dir, path, (const int[3]){2, 0, 1});
    CHECK(test_remove_dir(dir) == 0, "rm %s", dir);
}

/* Ranks 1 and 2 start first and find a stale state at path (set up by prepare); they must
 * still be waiting 200 ms later, and take rank 0's fresh blob, not the stale one. */
static void stale_case(const char *what, void (*prepare)(const char *path, const unsigned char *stale))
{
    char dir[256], path[300];
    test_temp_dir(dir, sizeof dir, "rdv");
    snprintf(path, sizeof path, "%s/id", dir);
    unsigned char stale[blob_len], fresh[blob_len], zero[blob_len] = {0};
    random_blob(stale, blob_len, &rng);
    random_blob(fresh, blob_len, &rng);
    prepare(path, stale);
    rank_job j1 = start_rank(path, 1, 3, blob_len, zero, 5.0);
    rank_job j2 = start_rank(path, 2, 3, blob_len, zero, 5.0);
    usleep(200000);
    CHECK(still_running(j1) && still_running(j2), "%s: a rank returned before rank 0 started", what);
    rank_job j0 = start_rank(path, 0, 3, blob_len, fresh, 5.0);
    rank_job jobs[3] = {j0, j1, j2};
    for (int r = 0; r < 3; r++) {
        rank_result res = finish_rank(jobs[r]);
        CHECK(res.status == PP_OK, "%s: rank %d: %s", what, r, res.error);
        CHECK(memcmp(res.blob, stale, blob_len) != 0, "%s: rank %d took the stale blob", what, r);
        CHECK(memcmp(res.blob, fresh, blob_len) == 0, "%s: rank %d received other bytes than rank 0 sent", what, r);
    }
    CHECK(dir_entries(dir) == 0, "%s: files left behind in %s", what, dir);
    printf("  %s: ranks 1, 2 waited, then took rank 0's fresh blob; nothing left\n", what);
    CHECK(test_remove_dir(dir) == 0, "rm %s", dir);
}

static void prepare_committed(const char *path, const unsigned char *stale)
{
    unsigned char buf[40 + blob_len];
    const uint64_t nonce = 0x1111222233334444ULL;
    write_bytes(path, buf, data_bytes(buf, 3, blob_len, 2, nonce, stale));
    char ap[400];
    for (int r = 1; r < 3; r++) {
        snprintf(ap, sizeof ap, "%s.ack.%d", path, r);
        write_ack_file(ap, (uint32_t)r, 3, blob_len, 2, nonce);
    }
}

static void prepare_offered(const char *path, const unsigned char *stale)
{
    unsigned char buf[40 + blob_len];
    const uint64_t nonce = 0x5555666677778888ULL;
    write_bytes(path, buf, data_bytes(buf, 3, blob_len, 1, nonce, stale));
    char ap[400];
    snprintf(ap, sizeof ap, "%s.ack.1", path);
    write_ack_file(ap, 1, 3, blob_len, 1, nonce); /* the crashed job's rank 1 had answered */
}

static void prepare_old_other_world(const char *path, const unsigned char *stale)
{
    unsigned char buf[40 + blob_len];
    write_bytes(path, buf, data_bytes(buf, 5, blob_len, 1, 0x9999aaaabbbbccccULL, stale));
    set_age(path, 3600);
}

static void stale_files(void)
{
    stale_case("committed file with complete acks from a crashed job", prepare_committed);
    stale_case("offered file of a crashed job, fresh mtime, rank 1's old ack", prepare_offered);
    stale_case("hour-old file for world size 5", prepare_old_other_world);
}

static void timeouts(void)
{
    char dir[256], path[300];
    test_temp_dir(dir, sizeof dir, "rdv");
    snprintf(path, sizeof path, "%s/id", dir);
    unsigned char blob[blob_len] = {0};
    pp_context *ctx = none_context();

    double t0 = test_now_s();
    pp_status st = rendezvous_exchange(ctx, path, 1, 2, blob, blob_len, 0.3);
    double took = test_now_s() - t0;
    const char *msg = pp_last_error(ctx);
    printf("  rank 1 alone: %.3f s: %s\n", took, msg);
    CHECK(st == PP_ERR_IO, "status %s", pp_status_string(st));
    CHECK(took >= 0.3 && took < 1.5, "waited %.3f s for a 0.3 s timeout", took);
    CHECK(strstr(msg, "rank 1 of 2") && strstr(msg, path) && strstr(msg, "is rank 0 running"), "message: %s", msg);

    random_blob(blob, blob_len, &rng);
    t0 = test_now_s();
    st = rendezvous_exchange(ctx, path, 0, 3, blob, blob_len, 0.3);
    took = test_now_s() - t0;
    msg = pp_last_error(ctx);
    printf("  rank 0 alone: %.3f s: %s\n", took, msg);
    CHECK(st == PP_ERR_IO, "status %s", pp_status_string(st));
    CHECK(took >= 0.3 && took < 1.5, "waited %.3f s for a 0.3 s timeout", took);
    CHECK(strstr(msg, "rank 0 of 3") && strstr(msg, path) && strstr(msg, "rank(s) 1, 2"), "message: %s", msg);
    CHECK(dir_entries(dir) == 0, "rank 0 left files behind after its timeout");
    pp_context_destroy(ctx);
    CHECK(test_remove_dir(dir) == 0, "rm %s", dir);
}

static void world_mismatch(void)
{
    char dir[256], path[300];
    test_temp_dir(dir, sizeof dir, "rdv");
    snprintf(path, sizeof path, "%s/id", dir);
    unsigned char blob[blob_len], zero[blob_len] = {0};
    random_blob(blob, blob_len, &rng);
    rank_job j0 = start_rank(path, 0, 2, blob_len, blob, 1.0);
    /* Rank 1 starts once rank 0's file exists, so that it meets the mismatch at once. */
    struct stat sb;
    for (double t0 = test_now_s(); stat(path, &sb) != 0 && test_now_s() - t0 < 5;) usleep(2000);
    CHECK(stat(path, &sb) == 0, "rank 0 wrote no %s", path);
    rank_job j1 = start_rank(path, 1, 3, blob_len, zero, 1.0);
    rank_result r1 = finish_rank(j1), r0 = finish_rank(j0);
    printf("  rank 1 (world 3), %.3f s: %s\n  rank 0 (world 2), %.3f s: %s\n", r1.seconds, r1.error, r0.seconds,
           r0.error);
    CHECK(r1.status == PP_ERR_IO && strstr(r1.error, path) && strstr(r1.error, "world size 2") &&
              strstr(r1.error, "world size 3"),
          "rank 1: %s", r1.error);
    CHECK(r1.seconds < 0.5, "rank 1 found the mismatch only after %.3f s", r1.seconds);
    CHECK(memcmp(r1.blob, zero, blob_len) == 0, "rank 1 wrote into its blob on failure");
    CHECK(r0.status == PP_ERR_IO && strstr(r0.error, "rank 0 of 2") && strstr(r0.error, path), "rank 0: %s", r0.error);
    CHECK(dir_entries(dir) == 0, "files left behind in %s", dir);
    CHECK(test_remove_dir(dir) == 0, "rm %s", dir);
}

/* A foreign or damaged file at path is an error at once for a waiting rank (never waited
 * past); rank 0 refuses to remove a foreign file and removes a damaged rendezvous file. */
static void malformed(void)
{
    char dir[256], path[300];
    test_temp_dir(dir, sizeof dir, "rdv");
    snprintf(path, sizeof path, "%s/id", dir);
    unsigned char blob[blob_len] = {0};
    pp_context *ctx = none_context();

    const unsigned char garbage[] = "results of an important experiment\n";
    write_bytes(path, garbage, sizeof garbage - 1);
    double t0 = test_now_s();
    pp_status st = rendezvous_exchange(ctx, path, 1, 2, blob, blob_len, 2.0);
    double took = test_now_s() - t0;
    printf("  garbage, rank 1, %.3f s: %s\n", took, pp_last_error(ctx));
    CHECK(st == PP_ERR_IO && strstr(pp_last_error(ctx), path) && strstr(pp_last_error(ctx), "not a poolprop"), "%s",
          pp_last_error(ctx));
    CHECK(took < 1.0, "rank 1 waited %.3f s on a foreign file", took);
    st = rendezvous_exchange(ctx, path, 0, 2, blob, blob_len, 2.0);
    printf("  garbage, rank 0: %s\n", pp_last_error(ctx));
    CHECK(st == PP_ERR_IO && strstr(pp_last_error(ctx), path) && strstr(pp_last_error(ctx), "does not remove"), "%s",
          pp_last_error(ctx));
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && sb.st_size == (off_t)(sizeof garbage - 1), "rank 0 touched a foreign file");

    /* Truncated, and a flipped blob byte (checksum). */
    unsigned char buf[40 + blob_len];
    size_t n = data_bytes(buf, 2, blob_len, 1, 0x1234, blob);
    for (int variant = 0; variant < 2; variant++) {
        if (variant == 0)
            write_bytes(path, buf, 20);
        else {
            buf[40] ^= 1;
            write_bytes(path, buf, n);
        }
        st = rendezvous_exchange(ctx, path, 1, 2, blob, blob_len, 2.0);
        printf("  %s, rank 1: %s\n", variant ? "flipped byte" : "truncated", pp_last_error(ctx));
        CHECK(st == PP_ERR_IO && strstr(pp_last_error(ctx), path) && strstr(pp_last_error(ctx), "malformed"), "%s",
              pp_last_error(ctx));
    }
    /* Rank 0 takes the damaged file for its own format's and removes it; alone, it times out. */
    st = rendezvous_exchange(ctx, path, 0, 2, blob, blob_len, 0.2);
    CHECK(st == PP_ERR_IO && strstr(pp_last_error(ctx), "rank(s) 1"), "%s", pp_last_error(ctx));
    CHECK(dir_entries(dir) == 0, "files left behind in %s", dir);
    pp_context_destroy(ctx);
    CHECK(test_remove_dir(dir) == 0, "rm %s", dir);
}

static void bad_arguments(void)
{
    char dir[256], path[300];
    test_temp_dir(dir, sizeof dir, "rdv");
    snprintf(path, sizeof path, "%s/id", dir);
    unsigned char blob[blob_len];
    random_blob(blob, blob_len, &rng);
    unsigned char copy[blob_len];
    memcpy(copy, blob, blob_len);
    pp_context *ctx = none_context();
    const struct {
        int rank, world;
        size_t len;
        double timeout;
        int null_blob, null_path;
        const char *expect;
    } bad[] = {
        {-1, 2, blob_len, 1, 0, 0, "rank -1"},     {2, 2, blob_len, 1, 0, 0, "rank 2"},
        {0, 0, blob_len, 1, 0, 0, "world size 0"}, {0, 2, 0, 1, 0, 0, "0 bytes"},
        {0, 2, 65537, 1, 0, 0, "65537 bytes"},     {1, 2, blob_len, 1, 1, 0, "(NULL)"},
        {1, 2, blob_len, 0, 0, 0, "timeout 0"},    {1, 2, blob_len, -1, 0, 0, "timeout -1"},
        {1, 2, blob_len, NAN, 0, 0, "timeout"},    {1, 2, blob_len, INFINITY, 0, 0, "timeout"},
        {1, 2, blob_len, 1, 0, 1, "no path"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double t0 = test_now_s();
        pp_status st = rendezvous_exchange(ctx, bad[i].null_path ? NULL : path, bad[i].rank, bad[i].world,
                                           bad[i].null_blob ? NULL : blob, bad[i].len, bad[i].timeout);
        CHECK(st == PP_ERR_INVALID_ARGUMENT && strstr(pp_last_error(ctx), bad[i].expect),
              "case %zu: %s: %s (expected '%s')", i, pp_status_string(st), pp_last_error(ctx), bad[i].expect);
        CHECK(test_now_s() - t0 < 0.1, "case %zu waited", i);
        printf("  refused: %s\n", pp_last_error(ctx));
    }
    CHECK(memcmp(blob, copy, blob_len) == 0, "a refused call changed the blob");
    double t0 = test_now_s();
    CHECK_OK(ctx, rendezvous_exchange(ctx, NULL, 0, 1, blob, blob_len, 1.0));
    CHECK(test_now_s() - t0 < 0.05 && memcmp(blob, copy, blob_len) == 0, "world 1 waited or changed the blob");
    CHECK(dir_entries(dir) == 0, "files left behind in %s", dir);
    printf("  world size 1 returned at once, touching nothing\n");
    pp_context_destroy(ctx);
    CHECK(test_remove_dir(dir) == 0, "rm %s", dir);
}

static const test_case tests[] = {
    TEST_CASE(exchange, "3 processes exchange a random blob in 3 start orders; nothing is left behind"),
    TEST_CASE(stale_files, "files left by a crashed earlier job are never taken for this job's"),
    TEST_CASE(timeouts, "a rank alone times out after 0.3 s, naming rank, world and path"),
    TEST_CASE(world_mismatch, "ranks given different world sizes fail with clear errors"),
    TEST_CASE(malformed, "foreign and damaged files at the path are errors, and a foreign one is kept"),
    TEST_CASE(bad_arguments, "bad ranks, world sizes, lengths, timeouts and pointers are refused"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    signal(SIGPIPE, SIG_IGN);
    return TEST_RUN(tests, only);
}
