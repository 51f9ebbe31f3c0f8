/* Small C shims for what bindgen cannot express (thread-local macros). */
#include "wrapper.h"

int ferrolb_rte_errno(void) { return rte_errno; }
const char *ferrolb_rte_version(void) { return rte_version(); }
