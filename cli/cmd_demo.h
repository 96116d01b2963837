/* cmd_demo.h - `poolprop demo` (cmd_demo.c). */
#ifndef PP_CLI_CMD_DEMO_H
#define PP_CLI_CMD_DEMO_H

/* argv: the arguments after the command name. Returns the exit status. */
int cmd_demo(int argc, char **argv);

#endif
