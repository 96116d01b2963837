/* cmd_gen.h - `poolprop gen` (cmd_gen.c). */
#ifndef PP_CLI_CMD_GEN_H
#define PP_CLI_CMD_GEN_H

/* argv: the arguments after the command name. Returns the exit status. */
int cmd_gen(int argc, char **argv);

#endif
