/* model.h - what model.c offers the rest of the library besides the pp_model API. */
#ifndef PP_MODEL_H
#define PP_MODEL_H

#include "plan.h"

/* The request for a model's plan; sources as in gen_plan_request, no tuning. */
void model_plan_request(const pp_model_options *o, int sources, gen_plan_request *req);

#endif
