/* lua_gen.c - stub, to be written */
#include "context.h"
