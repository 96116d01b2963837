/* poolprop.c - the poolprop command-line tool: the table of subcommands (one file each,
 * cmd_<name>.c, or train.c, bench.c, tune.c, report.c), which drives dispatch and the usage
 * text. Every failure prints one clear message (file:line for descriptions) and exits
 * non-zero. The tool is a client of poolprop.h; `verify` also runs the C reference
 * (reference/layer_check.h), since comparing with it is what that command does. */
#include "bench.h"
#include "cmd_demo.h"
#include "cmd_gen.h"
#include "cmd_init.h"
#include "cmd_layer.h"
#include "cmd_plan.h"
#include "cmd_policy.h"
#include "cmd_step.h"
#include "cmd_verify.h"
#include "options.h"
#include "poolprop.h"
#include "report.h"
#include "train.h"
#include "tune.h"

#include <stdio.h>
#include <string.h>

static const char usage_head[] = "usage: poolprop <command> [options]\n"
                                 "\n"
                                 "commands:\n";

static const char usage_foot[] =
    "\n"
    "Output files are written to a temporary name and renamed, so a failure (a full disk)\n"
    "leaves the earlier output as it was; gen replaces a previous bundle whole.\n"
    "\n"
    "--backend: auto (the default) runs on the GPU where a usable one and its driver are found,\n"
    "           else on the host emulation, and says which on stderr; host and cuda insist.\n"
    "environment: POOLPROP_CACHE_DIR (kernel cache), POOLPROP_TUNING_DIR (tuning databases),\n"
    "             POOLPROP_HOST_CXX (host compiler)\n";

static int cmd_version(int argc, char **argv)
{
    (void)argc, (void)argv;
    printf("poolprop %s\n", PP_VERSION_STRING);
    return 0;
}

/* The commands, in the order of the usage text: the name typed, what runs it (argv: the
 * arguments after the name; returns the exit status) and its part of the usage text. */
static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"verify", cmd_verify,
     "  verify [--layers FILE] [--arch sm_XY] [--schedule forward|reverse|shuffled]\n"
     "         [--threads N] [--no-cache]\n"
     "      Generate the kernels of every layer in FILE (default: the embedded layer set),\n"
     "      compile each with NVRTC (static check: registers, spills) and on the host\n"
     "      backend, run them and compare with the C reference. Prints a table.\n"},
    {"layer", cmd_layer,
     "  layer --x X.npy --w W.npy --dy DY.npy --stride S --pad P --pool F\n"
     "        [--pool-mode avg|max] [--backend auto|host|cuda] --out DIR\n"
     "      Run one convolution: writes DIR/y.npy, xp.npy, dx.npy, dw.npy. Arrays are\n"
     "      float32 C-order: X (N,C,H,W), W (K,C,R,S), DY (N,K,P,Q).\n"},
    {"gen", cmd_gen,
     "  gen [FILE] --out DIR\n"
     "      Write the generated kernels of every layer of a description file (default: the\n"
     "      embedded layer set) to DIR/kernels/*.cu and the plan to DIR/plan.lua.\n"
     "  gen --model M [--policy P] [--batch B] [--image HxW] [--classes N]\n"
     "      [--backend none|host|cuda] [--tuning-dir DIR] --out DIR\n"
     "      Write every kernel of one training step of model M, with the variants a model build\n"
     "      uses, and its plan (same kernel lines, plus the launches in order and the buffers).\n"
     "      Defaults: policy 1, batch 32 (as train), the model's image size and classes;\n"
     "      backend none: the policy's math-mode defaults (no device); host or cuda: that\n"
     "      device's tuning database where it has an entry, as a model build there does.\n"},
    {"plan", cmd_plan,
     "  plan MODEL --batch B [--image HxW] [--classes N] [--policy P] [--budget BYTES] [--json]\n"
     "       [--world W [--sync-bn]]\n"
     "      Plan the memory of a training step for the policy and for the uncompressed\n"
     "      baseline; with --budget, the largest batch that fits; with --world, each of W ranks'\n"
     "      share of the global batch, and synchronised BN's gather buffer.\n"},
    {"policy", cmd_policy,
     "  policy MODEL --batch B [--image HxW] [--classes N] --budget BYTES [--data synthetic|cifar10:DIR]\n"
     "         [--probe-steps N] [--probe-batch N] [--probe-image HxW] [--factors 1,2,4,8]\n"
     "         [--modes avg,max] [--allow bn=bf16] [--backend auto|host|cuda] [--seed S] [--out policy.lua]\n"
     "      Choose per-layer pooling factors whose planned peak fits the budget at the least total\n"
     "      weight-gradient error, measured on probe batches (default 2, synthetic data); print\n"
     "      them against the uniform policies and write a .lua policy file.\n"},
    {"init", cmd_init,
     "  init MODEL [--classes N] [--seed S] --out DIR\n"
     "      Write freshly initialised parameters (torchvision's initialisation), one .npy\n"
     "      per state_dict key (conv1.weight.npy, bn1.running_mean.npy, ...).\n"},
    {"step", cmd_step,
     "  step MODEL --params DIR --x X.npy --labels L.npy [--policy P] [--backend auto|host|cuda] --out DIR\n"
     "      One training step without the update: writes loss.npy, grad/<key>.npy and the\n"
     "      updated BN statistics running/<key>.npy. Labels: int64 or int32 class indices.\n"},
    {"demo", cmd_demo,
     "  demo [--model M] [--policy P] [--batch B] [--image HxW] [--steps S] [--backend auto|host|cuda]\n"
     "      Memory report and a few SGD steps of a CIFAR ResNet (default cifar_resnet20,\n"
     "      policy 2, batch 8, 16x16) on synthetic data.\n"},
    {"report", report_main,
     "  report RUN.csv [RUN.csv ...] -o CHART.svg\n"
     "      Draw the loss and accuracy curves of several runs on one SVG chart.\n"},
    {"train", train_main,
     "  train MODEL [--data synthetic|cifar10:DIR] [--policy P] [--epochs E] [--batch B] [--lr LR]\n"
     "        [--momentum M] [--weight-decay WD] [--schedule cosine|step] [--warmup EPOCHS]\n"
     "        [--backend auto|host|cuda] [--seed S] [--log RUN.csv] [--checkpoint DIR] [--resume DIR]\n"
     "        [--image HxW] [--steps N] [--train-size N] [--val-size N] [--sync-bn]\n"
     "        [--rank R --world-size W [--rendezvous file:PATH]]\n"
     "      Train with SGD; progress on the terminal, one CSV row per epoch, checkpoints that\n"
     "      resume exactly; Ctrl-C stops after writing a checkpoint. The log is rewritten whole\n"
     "      (atomically) after every epoch; a failed write is an error. --resume refuses a model\n"
     "      or policy file whose contents changed since the checkpoint.\n"
     "      Data parallel under mpirun (or --rank/--world-size/--rendezvous with NCCL): --batch\n"
     "      is the global batch, shared by the ranks; gradients averaged; --sync-bn for BN\n"
     "      statistics over the global batch; rank 0 writes the log and checkpoints.\n"},
    {"bench", bench_main,
     "  bench [MODEL] [--batch B] [--image HxW] [--policy P] [--backend auto|host|cuda] [--repeats N]\n"
     "        [--steps N] [--layers-only|--step-only] [--tuning-dir DIR] [--json OUT.json]\n"
     "      Time every distinct conv shape (forward+pool, input and weight gradients) and a\n"
     "      training step (images/s, peak memory). Default: resnet50, batch 64, policy 2.\n"},
    {"tune", tune_main,
     "  tune MODEL [--policy P] [--batch B] [--image HxW] [--budget-seconds T] [--max-variants N]\n"
     "       [--warmup N] [--repeats N] [--backend auto|host|cuda] [--tuning-dir DIR] [--quiet]\n"
     "      For every distinct conv kernel of the model: compile the variants the policy's\n"
     "      math mode allows (math=fp32|tf32|bf16), check each against the fp32 reference,\n"
     "      time the ones that pass, and keep the fastest in the device's tuning database,\n"
     "      which later model builds on that device use.\n"},
    {"version", cmd_version, "  version\n"},
};

static void usage(FILE *f)
{
    fputs(usage_head, f);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) fputs(commands[i].summary, f);
    fputs(usage_foot, f);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = strcmp(argv[1], "--version") == 0 ? "version" : argv[1];
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(cmd, commands[i].name) == 0) return commands[i].run(argc - 2, argv + 2);
    return cli_fail("unknown command '%s' (see poolprop --help)", cmd);
}
