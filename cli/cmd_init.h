/* cmd_init.h - `poolprop init` (cmd_init.c). */
#ifndef PP_CLI_CMD_INIT_H
#define PP_CLI_CMD_INIT_H

/* argv: the arguments after the command name. Returns the exit status. */
int cmd_init(int argc, char **argv);

#endif
