#include "launch/cli.h"
#include "core/check.h"
int cmd_init(int argc, char **argv) { CORE_DIE("init: not written yet"); }
