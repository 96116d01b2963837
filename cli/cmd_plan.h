/* cmd_plan.h - `poolprop plan` (cmd_plan.c). */
#ifndef PP_CLI_CMD_PLAN_H
#define PP_CLI_CMD_PLAN_H

/* argv: the arguments after the command name. Returns the exit status. */
int cmd_plan(int argc, char **argv);

#endif
