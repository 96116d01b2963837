/* cmd_policy.h - `poolprop policy` (cmd_policy.c). */
#ifndef PP_CLI_CMD_POLICY_H
#define PP_CLI_CMD_POLICY_H

/* argv: the arguments after the command name. Returns the exit status. */
int cmd_policy(int argc, char **argv);

#endif
