/* cmd_step.c - `poolprop step`: one training step without the update on the user's parameters and
 * batch: loss, gradients and updated BN statistics as .npy files, written as one output set. */
#include "cmd_step.h"

#include "npy.h"
#include "options.h"
#include "outfile.h"
#include "poolprop.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every DIR/<name>.npy must be a key of the model: a parameter set of another model (extra
 * keys) is an error that names them, not something to ignore. */
static int check_param_files(pp_model *m, const char *model, const char *dir)
{
    struct dirent **entries;
    int count = scandir(dir, &entries, NULL, alphasort); /* sorted: the message is the same every run */
    if (count < 0) return cli_fail("--params: cannot open the folder %s: %s", dir, strerror(errno));
    int n = 0, extra = 0;
    pp_model_param_count(m, &n);
    char names[512] = "";
    for (int k = 0; k < count; k++) {
        const struct dirent *e = entries[k];
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len <= 4 || strcmp(e->d_name + len - 4, ".npy") != 0) continue;
        int known = 0;
        for (int i = 0; i < n && !known; i++) {
            pp_param_info info;
            pp_model_param_info(m, i, &info);
            known = strlen(info.key) == len - 4 && strncmp(info.key, e->d_name, len - 4) == 0;
        }
        if (known) continue;
        size_t used = strlen(names);
        if (extra < 8)
            snprintf(names + used, sizeof names - used, "%s%.*s", extra ? ", " : "", (int)(len - 4), e->d_name);
        extra++;
    }
    for (int k = 0; k < count; k++) free(entries[k]);
    free(entries);
    if (extra)
        return cli_fail("--params: %s holds %d array%s that %s does not have: %s%s (parameters of another model?)", dir,
                        extra, extra == 1 ? "" : "s", model, names, extra > 8 ? ", ..." : "");
    return 0;
}

/* What one step holds; released by step_close. */
typedef struct step_run {
    const char *model, *params_dir, *out_dir, *x_path, *labels_path, *policy;
    pp_context_options co;
    pp_context *ctx;
    pp_model *m;
    npy_array x;
    int32_t *labels; /* one per image */
    float loss;
} step_run;

static int step_parse(int argc, char **argv, step_run *r)
{
    cli_option opts[] = {{"params", 0, 0, 0},  {"x", 0, 0, 0},   {"labels", 0, 0, 0},  {"policy", 0, 0, 0},
                         {"backend", 0, 0, 0}, {"out", 0, 0, 0}, {"schedule", 0, 0, 0}};
    int nopts = sizeof opts / sizeof opts[0];
    if (cli_parse_options(argc, argv, opts, nopts, &r->model)) return 1;
    if (!r->model) return cli_fail("step: which model? e.g. poolprop step cifar_resnet20 --params p/ --x x.npy ...");
    r->params_dir = cli_opt(opts, nopts, "params"), r->out_dir = cli_opt(opts, nopts, "out");
    r->x_path = cli_opt(opts, nopts, "x"), r->labels_path = cli_opt(opts, nopts, "labels");
    r->policy = cli_opt(opts, nopts, "policy");
    if (!r->params_dir) return cli_fail("missing --params DIR");
    if (!r->out_dir) return cli_fail("missing --out DIR");
    if (!r->labels_path) return cli_fail("missing --labels L.npy");
    return cli_run_options(opts, nopts, &r->co);
}

/* The batch (x, labels), then the model, sized by x and by the classifier's weight. */
static int step_load(step_run *r)
{
    char err[1024], path[4300];
    if (npy_read_option("x", r->x_path, 4, &r->x)) return 1;
    npy_labels labels = {0};
    if (npy_read_labels(r->labels_path, &labels, err, sizeof err) != PP_OK) return cli_fail("--labels: %s", err);
    int rc = 0;
    if (r->x.shape[1] != 3)
        rc = cli_fail("--x: expected images of shape (N, 3, H, W), got %zu channels", r->x.shape[1]);
    else if (labels.count != r->x.shape[0])
        rc = cli_fail("--labels: %zu labels for a batch of %zu images", labels.count, r->x.shape[0]);
    if (!rc && !(r->labels = malloc(labels.count * sizeof *r->labels + 1))) rc = cli_fail("out of memory");
    for (size_t i = 0; !rc && i < labels.count; i++)
        r->labels[i] = labels.data[i] < INT32_MIN || labels.data[i] > INT32_MAX ? -1 : (int32_t)labels.data[i];
    npy_labels_free(&labels);
    if (rc) return rc;
    /* The class count comes from the classifier's weight (classes, features). */
    npy_array fc = {0};
    snprintf(path, sizeof path, "%s/fc.weight.npy", r->params_dir);
    if (npy_read_f32(path, 2, &fc, err, sizeof err) != PP_OK) return cli_fail("--params: %s", err);
    pp_model_options mo;
    pp_model_options_init(&mo);
    mo.model = r->model;
    mo.policy = r->policy;
    mo.batch = (int)r->x.shape[0];
    mo.height = (int)r->x.shape[2];
    mo.width = (int)r->x.shape[3];
    mo.classes = (int)fc.shape[0];
    npy_array_free(&fc);
    if (!(r->ctx = cli_context(&r->co))) return 1;
    pp_status st = pp_model_create(r->ctx, &mo, &r->m);
    return st == PP_OK ? 0 : cli_fail_ctx(r->ctx, st);
}

/* Every parameter and statistic from --params, each checked against the model's shape. */
static int step_read_params(step_run *r)
{
    if (check_param_files(r->m, r->model, r->params_dir)) return 1;
    int n = 0, rc = 0;
    pp_model_param_count(r->m, &n);
    char err[1024], path[4300];
    for (int i = 0; i < n && !rc; i++) {
        pp_param_info info;
        pp_model_param_info(r->m, i, &info);
        npy_array a = {0};
        snprintf(path, sizeof path, "%s/%s.npy", r->params_dir, info.key);
        if (npy_read_f32(path, info.rank, &a, err, sizeof err) != PP_OK) rc = cli_fail("--params: %s", err);
        for (int d = 0; d < info.rank && !rc; d++)
            if (a.shape[d] != info.shape[d])
                rc = cli_fail("--params: %s: dimension %d is %zu, the model needs %zu", path, d, a.shape[d],
                              info.shape[d]);
        pp_status st;
        if (!rc && (st = pp_model_param_write(r->m, info.key, a.data, a.count)) != PP_OK) rc = cli_fail_ctx(r->ctx, st);
        npy_array_free(&a);
    }
    return rc;
}

static int step_run_once(step_run *r)
{
    pp_status st = pp_model_set_batch(r->m, r->x.data, r->labels);
    if (st != PP_OK) return cli_fail("--labels: %s", pp_last_error(r->ctx));
    st = pp_model_train_step(r->m, NULL, &r->loss);
    return st == PP_OK ? 0 : cli_fail_ctx(r->ctx, st);
}

/* loss.npy, grad/<key>.npy and running/<key>.npy as one output set (outfile.h). */
static int step_write(step_run *r)
{
    char grad_dir[4200], stat_dir[4200], path[4300];
    snprintf(grad_dir, sizeof grad_dir, "%s/grad", r->out_dir);
    snprintf(stat_dir, sizeof stat_dir, "%s/running", r->out_dir);
    outfile_set set = {0};
    int rc = outfile_set_dir(&set, r->out_dir) || outfile_set_dir(&set, grad_dir) || outfile_set_dir(&set, stat_dir);
    snprintf(path, sizeof path, "%s/loss.npy", r->out_dir);
    if (!rc) rc = npy_stage(&set, path, 0, NULL, &r->loss);
    int n = 0;
    pp_model_param_count(r->m, &n);
    for (int i = 0; i < n && !rc; i++) {
        pp_param_info info;
        pp_model_param_info(r->m, i, &info);
        float *buf = malloc(info.count * sizeof *buf + 1);
        if (!buf) {
            rc = cli_fail("out of memory");
            break;
        }
        pp_status st = info.is_statistic ? pp_model_param_read(r->m, info.key, buf, info.count)
                                         : pp_model_grad_read(r->m, info.key, buf, info.count);
        if (st != PP_OK) rc = cli_fail_ctx(r->ctx, st);
        if (!rc) rc = npy_stage_param(&set, info.is_statistic ? stat_dir : grad_dir, &info, buf);
        free(buf);
    }
    return rc ? (outfile_set_discard(&set), rc) : outfile_set_commit(&set);
}

int cmd_step(int argc, char **argv)
{
    step_run r = {0};
    int rc = step_parse(argc, argv, &r) || step_load(&r) || step_read_params(&r) || step_run_once(&r) || step_write(&r);
    if (!rc)
        printf("poolprop step: %s, batch %zu, loss %.6f; wrote %s/loss.npy, %s/grad/<key>.npy and the updated BN "
               "statistics in %s/running/\n",
               r.model, r.x.shape[0], r.loss, r.out_dir, r.out_dir, r.out_dir);
    free(r.labels);
    npy_array_free(&r.x);
    pp_model_destroy(r.m);
    pp_context_destroy(r.ctx);
    return rc;
}
