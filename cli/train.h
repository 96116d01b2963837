/* train.h - the `poolprop train` command (train.c). */
#ifndef PP_CLI_TRAIN_H
#define PP_CLI_TRAIN_H

/* argv: the arguments after "train". Returns the exit status (130 after Ctrl-C). */
int train_main(int argc, char **argv);

#endif
