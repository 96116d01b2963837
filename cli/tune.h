/* tune.h - the `poolprop tune` command (tune.c). */
#ifndef PP_CLI_TUNE_H
#define PP_CLI_TUNE_H

/* argv: the arguments after "tune". Returns the exit status. */
int tune_main(int argc, char **argv);

#endif
