/* cmd_layer.h - `poolprop layer` (cmd_layer.c). */
#ifndef PP_CLI_CMD_LAYER_H
#define PP_CLI_CMD_LAYER_H

/* argv: the arguments after the command name. Returns the exit status. */
int cmd_layer(int argc, char **argv);

#endif
