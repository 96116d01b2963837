/* cmd_step.h - `poolprop step` (cmd_step.c). */
#ifndef PP_CLI_CMD_STEP_H
#define PP_CLI_CMD_STEP_H

/* argv: the arguments after the command name. Returns the exit status. */
int cmd_step(int argc, char **argv);

#endif
