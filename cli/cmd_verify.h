/* cmd_verify.h - `poolprop verify` (cmd_verify.c). */
#ifndef PP_CLI_CMD_VERIFY_H
#define PP_CLI_CMD_VERIFY_H

/* argv: the arguments after the command name. Returns the exit status. */
int cmd_verify(int argc, char **argv);

#endif
