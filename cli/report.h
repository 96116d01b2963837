/* report.h - `poolprop report`: the CSV logs of several `poolprop train` runs -> one SVG
 * chart of their loss and accuracy curves. */
#ifndef PP_CLI_REPORT_H
#define PP_CLI_REPORT_H

/* argv: the arguments after the word "report" (RUN.csv ... -o CHART.svg [--title TEXT]).
 * Returns 0 on success; on failure prints "poolprop: ..." to stderr, writes nothing and
 * returns non-zero. Never calls exit(). */
int report_main(int argc, char **argv);

#endif
