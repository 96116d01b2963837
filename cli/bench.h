/* bench.h - the `poolprop bench` command (bench.c). */
#ifndef PP_CLI_BENCH_H
#define PP_CLI_BENCH_H

/* argv: the arguments after "bench". Returns the exit status. */
int bench_main(int argc, char **argv);

#endif
