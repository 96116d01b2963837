/* npy.c - stub, to be written */
#include "context.h"
